//! algorithm.md §3.2, §3.5, §4.1, §10: convolution and pooling against naive oracles, head sizing.

use ndarray::{Array4, ArrayView4};
use nitro_core::block::head_geometry;
use nitro_core::kernels::Accum;
use nitro_core::layers::{Conv2d, Pool2d, PoolKind};
use nitro_core::model::Stage;
use nitro_core::rng::Pcg32;
use nitro_core::CnnPreset;
use nitro_core::{Cnn, Compat, Error};
use std::sync::Mutex;

/// The tests that set the process-wide dispatch (and read the engine counters) run one at a
/// time: another test's `set_dispatch` between this one's and its product would move it to
/// another path.
static SERIAL: Mutex<()> = Mutex::new(());

/// `f` on every dispatch path this CPU has, each set in turn (a visible skip line for each
/// one it lacks), then the default dispatch again.
fn on_every_path(mut f: impl FnMut(nitro_core::kernels::Isa)) {
    use nitro_core::kernels::{set_dispatch, Dispatch, Isa};
    for isa in [
        Isa::Portable,
        Isa::Avx2,
        Isa::AvxVnni,
        Isa::Avx512Vnni,
        Isa::Amx,
    ] {
        if !isa.detected() {
            eprintln!("SKIPPED: {isa}: this CPU lacks {}", isa.cpu_flags());
            continue;
        }
        set_dispatch(Dispatch::new(true, isa));
        f(isa);
    }
    set_dispatch(Dispatch::default());
}

fn rand4(r: &mut Pcg32, dim: (usize, usize, usize, usize), bound: u32) -> Array4<i32> {
    Array4::from_shape_fn(dim, |_| r.symmetric(bound))
}

fn padded(x: ArrayView4<'_, i64>, ph: usize, pw: usize, fill: i64) -> Array4<i64> {
    let (n, c, h, w) = x.dim();
    Array4::from_shape_fn((n, c, h + 2 * ph, w + 2 * pw), |(m, ch, i, j)| {
        if i >= ph && i < h + ph && j >= pw && j < w + pw {
            x[[m, ch, i - ph, j - pw]]
        } else {
            fill
        }
    })
}

fn conv_oracle(x: &Array4<i64>, w: &Array4<i64>, p: usize) -> Array4<i64> {
    let xp = padded(x.view(), p, p, 0);
    let (n, c, hp, wp) = xp.dim();
    let (f, _, k, _) = w.dim();
    let (ho, wo) = (hp - k + 1, wp - k + 1);
    Array4::from_shape_fn((n, f, ho, wo), |(m, fi, i, j)| {
        let mut s = 0i64;
        for ch in 0..c {
            for u in 0..k {
                for v in 0..k {
                    s += w[[fi, ch, u, v]] * xp[[m, ch, i + u, j + v]];
                }
            }
        }
        s
    })
}

fn grad_oracle(x: &Array4<i64>, d: &Array4<i64>, p: usize, k: usize) -> Array4<i64> {
    let xp = padded(x.view(), p, p, 0);
    let (n, c, _, _) = xp.dim();
    let (_, f, ho, wo) = d.dim();
    Array4::from_shape_fn((f, c, k, k), |(fi, ch, u, v)| {
        let mut s = 0i64;
        for m in 0..n {
            for i in 0..ho {
                for j in 0..wo {
                    s += d[[m, fi, i, j]] * xp[[m, ch, i + u, j + v]];
                }
            }
        }
        s
    })
}

/// Conv forward and weight/bias gradient vs. the i64 oracle over random shapes (k 1/3/5,
/// p 0/1/2, channels 1–8, batch 1–4), with magnitudes that force every accumulator path.
#[test]
fn conv_forward_and_gradient_match_oracle() {
    let mut r = Pcg32::new(42, 7);
    // (max |x|, max |w|, max |δ|): narrow, chunked, and i64 accumulations.
    let mags = [
        (127u32, 64u32, 300u32),
        (127, 1 << 17, 1 << 17),
        (32_767, 1 << 20, 1 << 24),
    ];
    let mut paths = Vec::new();
    for case in 0..36 {
        let k = [1, 3, 5][case % 3];
        let p = [0, 1, 2][(case / 3) % 3];
        let (xm, wm, dm) = mags[case % mags.len()];
        let n = 1 + r.below(4) as usize;
        let c = 1 + r.below(8) as usize;
        let f = 1 + r.below(8) as usize;
        let h = k.max(3) + r.below(6) as usize;
        let wd = k.max(3) + r.below(6) as usize;
        let x = rand4(&mut r, (n, c, h, wd), xm).mapv(|v| v as i16);
        let w = rand4(&mut r, (f, c, k, k), wm);
        let bias = (case % 2 == 0).then(|| ndarray::Array1::from_shape_fn(f, |i| i as i32 - 3));
        let mut conv = Conv2d::new("conv", w.clone(), bias.clone(), 1, p).unwrap();
        let z = conv.forward(x.view(), true).unwrap();
        let x64 = x.mapv(i64::from);
        let mut want = conv_oracle(&x64, &w.mapv(i64::from), p);
        if let Some(b) = &bias {
            for ((_, fi, _, _), v) in want.indexed_iter_mut() {
                *v += i64::from(b[fi]);
            }
        }
        assert_eq!(z, want, "forward, case {case}");
        let (ho, wo) = conv.output_size(h, wd).unwrap();
        let d = rand4(&mut r, (n, f, ho, wo), dm);
        let (g, gb) = conv.gradients(d.view()).unwrap();
        assert_eq!(
            g,
            grad_oracle(&x64, &d.mapv(i64::from), p, k),
            "gradient, case {case}"
        );
        if bias.is_some() {
            let want_b: Vec<i64> = (0..f)
                .map(|fi| {
                    d.index_axis(ndarray::Axis(1), fi)
                        .iter()
                        .map(|&v| i64::from(v))
                        .sum()
                })
                .collect();
            assert_eq!(gb.unwrap().to_vec(), want_b, "bias gradient, case {case}");
        }
        paths.push(Accum::prove(u64::from(dm), u64::from(xm), n * ho * wo));
        paths.push(Accum::prove(u64::from(wm), u64::from(xm), c * k * k));
    }
    assert!(paths.contains(&Accum::I32));
    assert!(paths.iter().any(|p| matches!(p, Accum::Chunked(_))));
    assert!(paths.contains(&Accum::I64));
}

/// Two layers whose padded inputs have one size (14×14 unpadded, 12×12 padded by 1): each
/// forward takes the buffers the other's last forward gave back (kernels/buffers.rs) — the
/// padded copy with values where the next one has padding, the reordered weights, the output —
/// and must still equal the oracle.
#[test]
fn forwards_reusing_buffers_match_the_oracle() {
    let mut r = Pcg32::new(5, 9);
    let w = rand4(&mut r, (32, 16, 3, 3), 64);
    let mut layers = [
        (Conv2d::new("p0", w.clone(), None, 1, 0).unwrap(), 14, 0),
        (Conv2d::new("p1", w.clone(), None, 1, 1).unwrap(), 12, 1),
    ];
    for round in 0..6 {
        let (conv, d, p) = &mut layers[round % 2];
        // Non-zero values only, so that a stale value where padding belongs changes the sums.
        let x = rand4(&mut r, (2, 16, *d, *d), 127).mapv(|v| if v == 0 { 1 } else { v as i16 });
        let z = conv.forward(x.view(), false).unwrap();
        let want = conv_oracle(&x.mapv(i64::from), &w.mapv(i64::from), *p);
        assert_eq!(z, want, "round {round}");
        nitro_core::kernels::recycle(z);
    }
}

/// The weight gradient of a 64×28×28 batch reduces over 50176 terms: with δ large enough it
/// takes the chunked path and stays exact (algorithm.md §10).
#[test]
fn conv_gradient_long_reduction_is_exact() {
    let (n, c, h) = (64, 1, 28);
    let x = Array4::from_elem((n, c, h, h), 127i8);
    let mut conv = Conv2d::new("conv", Array4::zeros((2, 1, 3, 3)), None, 1, 1).unwrap();
    conv.forward(x.view(), true).unwrap();
    let d = Array4::from_elem((n, 2, h, h), 20_000i32);
    assert!(matches!(
        Accum::prove(20_000, 127, n * h * h),
        Accum::Chunked(_)
    ));
    let (g, _) = conv.gradients(d.view()).unwrap();
    // Centre tap sees every position: 50176 · 20000 · 127 ≫ 2³¹.
    assert_eq!(g[[0, 0, 1, 1]], 50_176i64 * 20_000 * 127);
    // Corner tap (u=0,v=0) misses the first row and column: 64·27·27 terms.
    assert_eq!(g[[1, 0, 0, 0]], 64 * 27 * 27 * 20_000i64 * 127);
}

#[test]
fn conv_rejects_other_strides() {
    let e = Conv2d::new("c", Array4::zeros((1, 1, 3, 3)), None, 2, 1).unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("stride 2")),
        "{e}"
    );
}

/// The value padding takes in max pooling: −128 exactly, 0 in the original's mode.
fn pad_fill(compat: Compat) -> i64 {
    match compat {
        Compat::Exact => i64::from(i8::MIN),
        Compat::Reference => 0,
    }
}

/// `y` (the pool's forward) and the pool's backward of `d` equal the oracle's `want`.
fn check_pool(
    pool: &mut Pool2d,
    y: &Array4<i8>,
    d: &Array4<i32>,
    want: (Array4<i64>, Array4<i64>),
    what: &str,
) {
    assert_eq!(y.mapv(i64::from), want.0, "forward {what}");
    let b = pool.backward(d.view()).unwrap();
    assert_eq!(b.mapv(i64::from), want.1, "backward {what}");
}

fn pool_oracle(
    x: &Array4<i64>,
    kind: PoolKind,
    k: (usize, usize),
    p: (usize, usize),
    fill: i64,
    d: &Array4<i64>,
) -> (Array4<i64>, Array4<i64>) {
    let (n, c, h, w) = x.dim();
    let xp = padded(
        x.view(),
        p.0,
        p.1,
        if kind == PoolKind::Max { fill } else { 0 },
    );
    let (ho, wo) = ((h + 2 * p.0 - k.0) / k.0 + 1, (w + 2 * p.1 - k.1) / k.1 + 1);
    let mut y = Array4::zeros((n, c, ho, wo));
    let mut back = Array4::zeros((n, c, h, w));
    for m in 0..n {
        for ch in 0..c {
            for oi in 0..ho {
                for oj in 0..wo {
                    let cells: Vec<(usize, usize)> = (0..k.0)
                        .flat_map(|u| (0..k.1).map(move |v| (oi * k.0 + u, oj * k.1 + v)))
                        .collect();
                    let vals: Vec<i64> = cells.iter().map(|&(i, j)| xp[[m, ch, i, j]]).collect();
                    let dv = d[[m, ch, oi, oj]];
                    let area = (k.0 * k.1) as i64;
                    match kind {
                        PoolKind::Max => {
                            let mx = *vals.iter().max().unwrap();
                            let at = vals.iter().position(|&v| v == mx).unwrap();
                            y[[m, ch, oi, oj]] = mx;
                            let (i, j) = cells[at];
                            let inside = i >= p.0 && i < h + p.0 && j >= p.1 && j < w + p.1;
                            if inside {
                                back[[m, ch, i - p.0, j - p.1]] = dv;
                            }
                        }
                        PoolKind::Avg => {
                            y[[m, ch, oi, oj]] = vals.iter().sum::<i64>() / area;
                            for &(i, j) in &cells {
                                if i >= p.0 && i < h + p.0 && j >= p.1 && j < w + p.1 {
                                    back[[m, ch, i - p.0, j - p.1]] = dv / area;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (y, back)
}

/// Max/avg pooling forward and backward vs. oracles: non-square kernels, padding, ties (values
/// from a tiny range), the type-minimum pad (exact) and the 0 pad (reference).
#[test]
fn pooling_matches_oracle() {
    let mut r = Pcg32::new(5, 9);
    for case in 0..120 {
        let kind = if case % 2 == 0 {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        let compat = if case % 4 < 2 {
            Compat::Exact
        } else {
            Compat::Reference
        };
        let k = (1 + r.below(4) as usize, 1 + r.below(4) as usize);
        let p = (
            r.below(k.0 as u32 / 2 + 1) as usize,
            r.below(k.1 as u32 / 2 + 1) as usize,
        );
        let n = 1 + r.below(3) as usize;
        let c = 1 + r.below(3) as usize;
        let h = k.0 + r.below(7) as usize;
        let w = k.1 + r.below(7) as usize;
        // Small ranges force ties; include −128 in exact mode to tie with the pad value.
        let bound = if case % 3 == 0 { 2 } else { 127 };
        let x = Array4::from_shape_fn((n, c, h, w), |_| {
            if case % 5 == 0 && r.below(4) == 0 {
                i8::MIN
            } else {
                r.symmetric(bound) as i8
            }
        });
        let mut pool = Pool2d::new(kind, k, p).unwrap();
        let y = pool.forward(x.view(), true, compat).unwrap();
        // The values alone (the pools between blocks) are the same, for i8 and i16 alike.
        assert_eq!(
            pool.values(x.view(), compat).unwrap(),
            y,
            "values, case {case}"
        );
        let x16 = x.mapv(i16::from);
        assert_eq!(pool.values(x16.view(), compat).unwrap(), y.mapv(i16::from));
        let d = Array4::from_shape_fn(y.raw_dim(), |_| r.symmetric(1000));
        let want = pool_oracle(
            &x.mapv(i64::from),
            kind,
            k,
            p,
            pad_fill(compat),
            &d.mapv(i64::from),
        );
        check_pool(
            &mut pool,
            &y,
            &d,
            want,
            &format!("case {case} {kind:?} {k:?} {p:?}"),
        );
    }
}

/// Max pooling with a learning head's geometry (the row-at-a-time path and its edges): tall
/// windows, padding rows above and below the input and columns at its sides, down to windows
/// that hang over both edges at once; ties with the pad value in both compat modes.
#[test]
fn max_pooling_with_padded_rows_matches_oracle() {
    let mut r = Pcg32::new(17, 3);
    let mut ran = 0;
    for case in 0..160 {
        let compat = if case % 2 == 0 {
            Compat::Exact
        } else {
            Compat::Reference
        };
        let kh = [2, 4, 8][r.below(3) as usize];
        let kw = [1, 2, 4, 8][r.below(4) as usize];
        let ph = r.below(kh as u32 / 2 + 1) as usize;
        let pw = r.below(kw as u32 / 2 + 1) as usize;
        let h = (kh / 2).max(1) + r.below(2 * kh as u32) as usize;
        let w = kw * (1 + r.below(5) as usize) + r.below(kw as u32) as usize;
        let (n, c) = (1 + r.below(2) as usize, 1 + r.below(3) as usize);
        let bound = if case % 3 == 0 { 1 } else { 127 };
        let x = Array4::from_shape_fn((n, c, h, w), |_| match r.below(6) {
            0 => i8::MIN,
            1 => 0,
            _ => r.symmetric(bound) as i8,
        });
        let Ok(mut pool) = Pool2d::new(PoolKind::Max, (kh, kw), (ph, pw)) else {
            continue;
        };
        let Ok(y) = pool.forward(x.view(), true, compat) else {
            continue;
        };
        assert_eq!(
            pool.values(x.view(), compat).unwrap(),
            y,
            "values, case {case}"
        );
        let d = Array4::from_shape_fn(y.raw_dim(), |_| r.symmetric(1000));
        let k = (kh, kw);
        let want = pool_oracle(
            &x.mapv(i64::from),
            PoolKind::Max,
            k,
            (ph, pw),
            pad_fill(compat),
            &d.mapv(i64::from),
        );
        let what = format!("case {case} {k:?} padding {ph},{pw} {h}×{w}");
        check_pool(&mut pool, &y, &d, want, &what);
        ran += 1;
    }
    assert!(ran >= 120, "only {ran} geometries were valid");
}

#[test]
fn max_pool_ties_and_reference_padding() {
    // One 1×1×2×3 plane, kernel (2,2), padding (0,1): windows [pad,a,pad,d] and [b,c,e,f].
    let x = Array4::from_shape_vec((1, 1, 2, 3), vec![-5i8, 7, 7, -9, 3, 7]).unwrap();
    let mut pool = Pool2d::new(PoolKind::Max, (2, 2), (0, 1)).unwrap();
    let d = Array4::from_shape_vec((1, 1, 1, 2), vec![11, 22]).unwrap();
    // Exact: pad = −128; first window max −5 (at (0,0)); second: 7 at (0,1) wins the tie.
    let y = pool.forward(x.view(), true, Compat::Exact).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![-5, 7]);
    let b = pool.backward(d.view()).unwrap();
    assert_eq!(
        b.iter().copied().collect::<Vec<_>>(),
        vec![11, 22, 0, 0, 0, 0]
    );
    // Reference: pad = 0 beats −5 and −9, so the first window's error is dropped.
    let y = pool.forward(x.view(), true, Compat::Reference).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![0, 7]);
    let b = pool.backward(d.view()).unwrap();
    assert_eq!(
        b.iter().copied().collect::<Vec<_>>(),
        vec![0, 22, 0, 0, 0, 0]
    );
    assert!(Pool2d::new(PoolKind::Max, (2, 2), (2, 0)).is_err());
}

/// A window with padding only at its right: its first pad element is in its first row, so in
/// the original's mode (pad = 0) it ties with, and comes before, a 0 in the second row.
#[test]
fn max_pool_right_padding_comes_before_later_rows() {
    // One 1×1×2×2 plane, kernel (2,2), padding (0,1): windows [pad,a,pad,c] and [b,pad,d,pad].
    let x = Array4::from_shape_vec((1, 1, 2, 2), vec![-5i8, -3, -7, 0]).unwrap();
    let mut pool = Pool2d::new(PoolKind::Max, (2, 2), (0, 1)).unwrap();
    let d = Array4::from_shape_vec((1, 1, 1, 2), vec![11, 22]).unwrap();
    let y = pool.forward(x.view(), true, Compat::Reference).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![0, 0]);
    // Both maxima are padding (the second's pad at (0,1) precedes d = 0 at (1,0)): no error.
    let b = pool.backward(d.view()).unwrap();
    assert_eq!(b.iter().copied().collect::<Vec<_>>(), vec![0, 0, 0, 0]);
    // Exact (pad = −128): d = 0 is the second window's maximum and takes its error.
    let y = pool.forward(x.view(), true, Compat::Exact).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![-5, 0]);
    let b = pool.backward(d.view()).unwrap();
    assert_eq!(b.iter().copied().collect::<Vec<_>>(), vec![11, 0, 0, 22]);
}

#[test]
fn head_sizing_spec_example() {
    let g = head_geometry(128, 28, 4096);
    assert_eq!(g.kernel, (8, 4));
    assert_eq!(g.padding, (4, 0));
    assert_eq!(g.features, 3584);
    // The fixture's heads: decoder 784.
    assert_eq!(head_geometry(8, 28, 784).kernel, (4, 2));
    assert_eq!(head_geometry(16, 14, 784).kernel, (2, 2));
    // No pooling when the output already fits.
    let g = head_geometry(4, 7, 784);
    assert_eq!((g.kernel, g.padding, g.features), ((1, 1), (0, 0), 196));
}

/// (kernel, padding, D) of every conv head, from the model builder.
type Head = ((usize, usize), (usize, usize), usize);

fn heads(preset: CnnPreset, dataset: &str) -> Vec<Head> {
    let spec = preset.spec(dataset).unwrap();
    let m = Cnn::new(spec.config).unwrap();
    m.stages
        .iter()
        .filter_map(|s| match s {
            Stage::Block(b) => {
                let pooled = b.pool.as_ref().map(|p| (p.kernel, p.padding));
                assert_eq!(pooled.is_some(), b.geometry.kernel != (1, 1));
                Some((b.geometry.kernel, b.geometry.padding, b.head.in_features()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn vgg_head_shapes_28_and_32() {
    // VGG8B on 28×28: blocks at d = 28, 28, 14, 14, 7, 3.
    assert_eq!(
        heads(CnnPreset::Vgg8b, "fashion-mnist"),
        vec![
            ((8, 4), (4, 0), 3584),
            ((8, 8), (4, 4), 4096),
            ((4, 4), (2, 2), 4096),
            ((8, 4), (4, 2), 4096),
            ((4, 2), (2, 1), 4096),
            ((2, 1), (1, 0), 3072),
        ]
    );
    // VGG8B on 32×32: d = 32, 32, 16, 16, 8, 4.
    assert_eq!(
        heads(CnnPreset::Vgg8b, "cifar10"),
        vec![
            ((8, 4), (0, 0), 4096),
            ((8, 8), (0, 0), 4096),
            ((4, 4), (0, 0), 4096),
            ((8, 4), (0, 0), 4096),
            ((4, 2), (0, 0), 4096),
            ((2, 1), (0, 0), 4096),
        ]
    );
    // VGG11B on 28×28: d = 28 ×4, 14 ×2, 7 ×2, 3.
    let h = heads(CnnPreset::Vgg11b, "mnist");
    assert_eq!(h.len(), 9);
    assert_eq!(h[0], ((8, 4), (4, 0), 3584));
    assert_eq!(h[2], ((8, 4), (4, 0), 3584));
    assert_eq!(h[3], ((8, 8), (4, 4), 4096));
    assert_eq!(h[4], ((4, 4), (2, 2), 4096));
    assert_eq!(h[5], ((8, 4), (4, 2), 4096));
    assert_eq!(h[6], ((4, 2), (2, 1), 4096));
    assert_eq!(h[8], ((2, 1), (1, 0), 3072));
    // VGG11B on 32×32.
    let h = heads(CnnPreset::Vgg11b, "cifar10");
    assert_eq!(h[0], ((8, 4), (0, 0), 4096));
    assert_eq!(h[3], ((8, 8), (0, 0), 4096));
    assert_eq!(h[8], ((2, 1), (0, 0), 4096));
}

/// The fused conv + scaling epilogue gives exactly `Scaling::forward` of the convolution, with
/// and without bias, for sums below and above 2³¹ (the reciprocal and the plain division).
#[test]
fn fused_scaled_forward_equals_conv_then_scaling() {
    use ndarray::Array1;
    use nitro_core::layers::Scaling;
    let mut r = Pcg32::new(31, 4);
    for (wb, bias) in [(64u32, false), (64, true), (30_000, true), (1 << 29, false)] {
        let x = rand4(&mut r, (3, 4, 7, 6), 127).mapv(|v| v as i8);
        let w = rand4(&mut r, (5, 4, 3, 3), wb);
        let b = bias.then(|| Array1::from_shape_fn(5, |_| r.symmetric(1 << 20)));
        let mut conv = Conv2d::new("c", w, b, 1, 1).unwrap();
        let scale = Scaling::for_fan_in(conv.fan_in()).unwrap();
        let want = scale.forward(&conv.forward(x.view(), true).unwrap());
        assert_eq!(conv.infer_scaled(x.view(), &scale).unwrap(), want, "≤{wb}");
        assert_eq!(
            conv.forward_scaled(x.view(), true, &scale).unwrap(),
            want,
            "≤{wb} train"
        );
        // Training mode saved the input: a gradient is available.
        let delta = rand4(&mut r, (3, 5, 7, 6), 100);
        assert!(conv.gradients(delta.view()).is_ok());
        if wb > 30_000 {
            // Some sums exceed 2^31: the fallback division was exercised.
            let z = conv.infer(x.view()).unwrap();
            assert!(z.iter().any(|&v| v.unsigned_abs() >= 1 << 31));
        }
    }
}

/// The convolution product from the weights `F×C×k×k` as they are (the tile engine reorders
/// each filter into the channels-last column order while packing it): the same values as the
/// product with the reordered matrix, on every dispatch path this CPU has, for weights of one,
/// two and three digits, odd channel counts, 1×1 and 3×3 kernels, and weights in a
/// column-major array (not reordered in place: written out first).
#[test]
fn convolution_product_from_filters_equals_product_with_their_hwc_matrix() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use ndarray::ShapeBuilder;
    use nitro_core::kernels::channels_last::ChannelsLast;
    use nitro_core::kernels::filters::hwc_weights;
    use nitro_core::kernels::im2col::PatchesHwc;
    use nitro_core::kernels::nchw::rows_to_nchw;
    use nitro_core::kernels::{conv_rows_nt_nchw, engine_counts, gemm_rows_nt, Isa};
    let mut r = Pcg32::new(43, 8);
    // (channels, kernel, filters, |w|): every product is above the tile engine's 2²⁴.
    for &(c, k, f, bound) in &[
        (32usize, 3usize, 48usize, 127u32),
        (37, 3, 40, 3000),
        (5, 3, 300, 200_000),
        (200, 1, 64, 30_000),
    ] {
        let x = Array4::from_shape_fn((7, c, 14, 14), |_| r.symmetric(127) as i8);
        let xp = ChannelsLast::padded(x.view(), k / 2).unwrap();
        let rows = PatchesHwc::new(&xp, k).unwrap();
        let w = Array4::from_shape_fn((f, c, k, k), |_| r.symmetric(bound));
        let mut wf = Array4::<i32>::zeros((f, c, k, k).f());
        wf.assign(&w);
        let bias: Vec<i64> = (0..f).map(|_| i64::from(r.symmetric(500))).collect();
        let scale = |v: i64| (v >> 14).clamp(-127, 127) as i8;
        let z = gemm_rows_nt(&rows, hwc_weights(w.view()).view()).unwrap();
        let want = rows_to_nchw(z.as_slice().unwrap(), (7, f, 196), &bias, scale);
        on_every_path(|isa| {
            let what = format!("{isa}, C {c}, k {k}, F {f}, |w| ≤ {bound}");
            let tiles = engine_counts().tiles;
            let got = conv_rows_nt_nchw(&rows, w.view(), (7, 196), &bias, scale).unwrap();
            assert_eq!(got, want, "{what}");
            if isa == Isa::Amx {
                assert!(engine_counts().tiles > tiles, "{what}: not on tiles");
            }
            let got = conv_rows_nt_nchw(&rows, wf.view(), (7, 196), &bias, scale).unwrap();
            assert_eq!(got, want, "{what}, column-major weights");
        });
    }
}

/// The convolution product with its epilogue in one call: the same values as the product
/// followed by `rows_to_nchw`, on every dispatch path this CPU has (the tile engine's banded
/// form where AMX runs: a product large enough for it), and a shape error naming the sizes for
/// rows or biases that do not match.
#[test]
fn convolution_product_with_epilogue_equals_product_then_epilogue() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use nitro_core::kernels::channels_last::ChannelsLast;
    use nitro_core::kernels::im2col::PatchesHwc;
    use nitro_core::kernels::nchw::rows_to_nchw;
    use nitro_core::kernels::{engine_counts, gemm_rows_nt, gemm_rows_nt_nchw, Isa};
    let mut r = Pcg32::new(41, 6);
    // 7 images of 14×14 positions (images share 16-row blocks), 32 channels, 48 filters:
    // K = 288 and 7·196·48·288 = 19.0 M multiply-adds, above the tile engine's 2²⁴.
    let x = Array4::from_shape_fn((7, 32, 14, 14), |_| r.symmetric(127) as i8);
    let xp = ChannelsLast::padded(x.view(), 1).unwrap();
    let rows = PatchesHwc::new(&xp, 3).unwrap();
    let w = ndarray::Array2::from_shape_fn((48, 288), |_| r.symmetric(3000) as i16);
    let bias: Vec<i64> = (0..48).map(|_| i64::from(r.symmetric(500))).collect();
    let scale = |v: i64| (v >> 10).clamp(-127, 127) as i8;
    on_every_path(|isa| {
        let z = gemm_rows_nt(&rows, w.view()).unwrap();
        let want = rows_to_nchw(z.as_slice().unwrap(), (7, 48, 196), &bias, scale);
        let tiles = engine_counts().tiles;
        let got = gemm_rows_nt_nchw(&rows, w.view(), (7, 196), &bias, scale).unwrap();
        assert_eq!(got, want, "{isa}");
        if isa == Isa::Amx {
            assert!(
                engine_counts().tiles > tiles,
                "the banded product did not run on tiles"
            );
        }
        for (shape, b) in [((6, 196), &bias[..]), ((7, 196), &bias[1..])] {
            let e = gemm_rows_nt_nchw(&rows, w.view(), shape, b, scale).unwrap_err();
            assert!(matches!(e, Error::Shape(_)), "{e}");
            assert!(e.to_string().contains("patch rows"), "{e}");
        }
    });
}

/// A block's inference, whose activation is looked up on each tile of the convolution's scaled
/// output as it is written (kernels/lookup.rs `Then`), equals the layers one after the other —
/// the scaled output written out, then the activation over it — for table activations and a
/// bipolar one (which keeps the separate pass), on every dispatch path this CPU has (the tile
/// engine's fused epilogue where AMX runs: a product above its 2²⁴ multiply-adds).
#[test]
fn block_inference_with_the_activation_in_the_epilogue_equals_the_layers_in_turn() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use ndarray::Array2;
    use nitro_core::block::LocalConv2dBlock;
    use nitro_core::kernels::{engine_counts, Isa};
    use nitro_core::layers::{ActivationKind, Linear};
    let mut r = Pcg32::new(47, 2);
    let (n, c, f, d) = (8, 32, 64, 14);
    for kind in [
        ActivationKind::NitroRelu { a: 4 },
        ActivationKind::PocketTanh,
        ActivationKind::PocketLeakyRelu { a: 5 },
        ActivationKind::BipolarPocketRelu,
    ] {
        let w = Array4::from_shape_fn((f, c, 3, 3), |_| r.symmetric(8000));
        let conv = Conv2d::new("conv", w, None, 1, 1).unwrap();
        let geom = head_geometry(f, d, 1000);
        let hw = Array2::from_shape_fn((10, geom.features), |_| r.symmetric(64));
        let head = Linear::new("head", hw, None).unwrap();
        let block =
            LocalConv2dBlock::from_layers(conv, head, d, 1000, PoolKind::Max, kind).unwrap();
        let x = Array4::from_shape_fn((n, c, d, d), |_| r.symmetric(127) as i8);
        let scaled = block
            .conv
            .infer_scaled(x.view(), &block.conv_scale)
            .unwrap();
        let want = block.act.infer(&scaled);
        // Outputs across the table: saturated, zero and in between.
        assert!(scaled.iter().any(|&v| v == 127) && scaled.iter().any(|&v| v == -127));
        assert!(scaled.iter().filter(|&&v| v.abs() < 100).count() > scaled.len() / 4);
        on_every_path(|isa| {
            let tiles = engine_counts().tiles;
            assert_eq!(block.infer(x.view()).unwrap(), want, "{kind:?} on {isa}");
            if isa == Isa::Amx {
                assert!(engine_counts().tiles > tiles, "{kind:?}: not on tiles");
            }
        });
    }
}
