//! Every GEMM path × every operand width against a naive `i64` oracle (algorithm.md §10), on random
//! shapes and edge magnitudes; and whole training runs that must give the same bits on every
//! kernel path and thread count.
//!
//! Accums: the packed `i16` engine (AVX2 micro-kernel and portable), the exact high/low split of
//! a wide A or B, the `i32` kernels (whole reduction or chunked), the `i64` fallback, forced
//! chunk lengths, and the row-source entry points used by convolutions. Widths: `i8`, `i16`,
//! `i32` for each operand, with values at the type's extremes (`−128`, `−32768`, `i32::MIN`),
//! at the `i16` boundary (32767 / 32768), at the largest splittable magnitude
//! (`32767·32768`) and beyond it.

mod common;

use ndarray::{Array2, Array4, ArrayView2};
use nitro_core::kernels::im2col::{im2col, im2col_t, pad, Patches};
use nitro_core::kernels::{
    engine_counts, gemm_nt, gemm_nt_rows, gemm_nt_with, gemm_rows_nt, set_dispatch, Accum,
    Dispatch, Int, Isa, RowSource,
};
use nitro_core::rng::Pcg32;
use nitro_core::{Cnn, CnnConfig, Feature};
use nitro_core::{Error, Hyper, Mlp, MlpConfig};
use proptest::prelude::*;
use std::sync::Mutex;

/// Tests that switch the process-wide dispatch run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The exact product in `i128`, or `None` if the proof's bound `max|A|·max|B|·k` exceeds `i64`
/// (then the kernels must refuse with `Error::Overflow`).
fn oracle<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Option<Array2<i64>> {
    let k = a.ncols();
    let ma = a
        .iter()
        .map(|&v| Into::<i64>::into(v).unsigned_abs())
        .max()
        .unwrap_or(0);
    let mb = b
        .iter()
        .map(|&v| Into::<i64>::into(v).unsigned_abs())
        .max()
        .unwrap_or(0);
    if u128::from(ma) * u128::from(mb) * k as u128 > i64::MAX as u128 {
        return None;
    }
    Some(Array2::from_shape_fn((a.nrows(), b.nrows()), |(i, j)| {
        (0..k)
            .map(|t| Into::<i64>::into(a[[i, t]]) * Into::<i64>::into(b[[j, t]]))
            .sum()
    }))
}

/// Magnitude bounds to draw from, per width (each includes the type's extreme).
fn bounds_for(width: u8) -> &'static [i64] {
    match width {
        8 => &[1, 127, 128],
        16 => &[127, 32_767, 32_768],
        _ => &[
            127,
            32_767,
            32_768,
            40_000,
            1 << 20,
            32_767 * 32_768,
            32_767 * 32_768 + 1,
            i32::MAX as i64,
            1 << 31,
        ],
    }
}

/// A random `rows×cols` matrix within `±bound`, with the extremes `−bound` and `bound` (clamped
/// to the type) planted at two positions so the edge values are always exercised.
fn matrix(r: &mut Pcg32, rows: usize, cols: usize, bound: i64, width: u8) -> Array2<i64> {
    let (lo, hi) = match width {
        8 => (i8::MIN as i64, i8::MAX as i64),
        16 => (i16::MIN as i64, i16::MAX as i64),
        _ => (i32::MIN as i64, i32::MAX as i64),
    };
    let mut m = Array2::from_shape_fn((rows, cols), |_| {
        let span = (2 * bound + 1).min(u32::MAX as i64) as u32;
        (i64::from(r.below(span)) - bound).clamp(lo, hi)
    });
    if rows * cols >= 2 {
        let n = m.len();
        let (p, q) = (r.below(n as u32) as usize, r.below(n as u32) as usize);
        m.as_slice_mut().unwrap()[p] = (-bound).clamp(lo, hi);
        m.as_slice_mut().unwrap()[q] = bound.clamp(lo, hi);
    }
    m
}

fn cast<T: TryFrom<i64>>(m: &Array2<i64>) -> Array2<T>
where
    T::Error: core::fmt::Debug,
{
    m.mapv(|v| T::try_from(v).unwrap())
}

/// Check one product on every dispatch and forced path, plain and through transposed views.
fn check_all<A: Int, B: Int>(a: &Array2<A>, b: &Array2<B>, what: &str) {
    let want = oracle(a.view(), b.view());
    let k = a.ncols();
    let forced = [
        None,
        Some(Accum::I32),
        Some(Accum::Chunked(1)),
        Some(Accum::Chunked(2)),
        Some(Accum::Chunked(7)),
        Some(Accum::Chunked(513)),
        Some(Accum::I64),
    ];
    for d in common::dispatches() {
        for p in forced {
            let got = gemm_nt_with(a.view(), b.view(), p, d);
            match &want {
                Some(w) => assert_eq!(&got.unwrap(), w, "{what} {d:?} {p:?} k={k}"),
                None => assert!(
                    matches!(got, Err(Error::Overflow { .. })),
                    "{what} {d:?} {p:?}: unprovable sum must be an overflow error"
                ),
            }
        }
        // Transposed storage of both operands (the layouts of δᵀ·x and δ·W).
        let (at, bt) = (
            a.t().as_standard_layout().into_owned(),
            b.t().as_standard_layout().into_owned(),
        );
        let got = gemm_nt_with(at.t(), bt.t(), None, d);
        match &want {
            Some(w) => assert_eq!(&got.unwrap(), w, "{what} {d:?} transposed"),
            None => assert!(got.is_err()),
        }
    }
}

#[test]
fn every_path_and_width_matches_the_oracle() {
    let mut r = Pcg32::new(2024, 6);
    let widths = [8u8, 16, 32];
    let mut cases = 0;
    for wa in widths {
        for wb in widths {
            for &ba in bounds_for(wa) {
                for &bb in bounds_for(wb) {
                    let m = 1 + r.below(13) as usize;
                    let n = 1 + r.below(37) as usize;
                    let k = 1 + r.below(70) as usize;
                    let a = matrix(&mut r, m, k, ba, wa);
                    let b = matrix(&mut r, n, k, bb, wb);
                    let what = format!("A i{wa} ≤{ba}, B i{wb} ≤{bb}, {m}x{k}x{n}");
                    match (wa, wb) {
                        (8, 8) => check_all(&cast::<i8>(&a), &cast::<i8>(&b), &what),
                        (8, 16) => check_all(&cast::<i8>(&a), &cast::<i16>(&b), &what),
                        (8, _) => check_all(&cast::<i8>(&a), &cast::<i32>(&b), &what),
                        (16, 8) => check_all(&cast::<i16>(&a), &cast::<i8>(&b), &what),
                        (16, 16) => check_all(&cast::<i16>(&a), &cast::<i16>(&b), &what),
                        (16, _) => check_all(&cast::<i16>(&a), &cast::<i32>(&b), &what),
                        (_, 8) => check_all(&cast::<i32>(&a), &cast::<i8>(&b), &what),
                        (_, 16) => check_all(&cast::<i32>(&a), &cast::<i16>(&b), &what),
                        _ => check_all(&cast::<i32>(&a), &cast::<i32>(&b), &what),
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 15 * 15);
}

#[test]
fn blocked_shapes_cross_every_tile_and_block_edge() {
    // More rows than one L2 group of A panels (24·6), K longer than two K blocks (2·256 pairs),
    // odd K, columns not a multiple of the 16-lane tile; direct and split operands.
    let mut r = Pcg32::new(77, 2);
    for (m, k, n, ba, bb) in [
        (151, 1031, 35, 127, 30_000),
        (7, 1537, 17, 1 << 20, 127),
        (150, 3, 1, 32_767, 32_767),
        (1, 2049, 33, 127, 1_073_709_056),
        (145, 65, 16, 32_768, 127),
    ] {
        let a = cast::<i32>(&matrix(&mut r, m, k, ba, 32));
        let b = cast::<i32>(&matrix(&mut r, n, k, bb, 32));
        let want = oracle(a.view(), b.view()).unwrap();
        for d in common::dispatches() {
            assert_eq!(
                gemm_nt_with(a.view(), b.view(), None, d).unwrap(),
                want,
                "{m}x{k}x{n} {d:?}"
            );
        }
    }
}

#[test]
fn empty_and_degenerate_shapes() {
    for (m, k, n) in [(0, 5, 3), (4, 0, 3), (4, 5, 0), (1, 1, 1)] {
        let a = Array2::<i32>::from_elem((m, k), -7);
        let b = Array2::<i8>::from_elem((n, k), -128);
        let c = gemm_nt(a.view(), b.view()).unwrap();
        assert_eq!(c.dim(), (m, n));
        assert!(c.iter().all(|&v| v == 7 * 128 * k as i64));
    }
}

/// A row source over a stored matrix (to test the row entry points on arbitrary data).
struct Stored(Array2<i16>);

impl RowSource for Stored {
    fn rows(&self) -> usize {
        self.0.nrows()
    }
    fn cols(&self) -> usize {
        self.0.ncols()
    }
    fn bound(&self) -> u64 {
        self.0
            .iter()
            .map(|&v| i64::from(v).unsigned_abs())
            .max()
            .unwrap_or(0)
    }
    fn row(&self, r: usize, out: &mut [i16]) {
        out.copy_from_slice(self.0.row(r).as_slice().unwrap());
    }
}

/// The row-source products (convolutions) on every dispatch: implicit patches equal the stored
/// patch matrices, and both orientations equal the oracle — with the other operand narrow,
/// wide (split) and too wide to split. Dispatch is process-wide, so every switch happens here.
#[test]
fn row_sources_match_stored_matrices_on_every_dispatch() {
    let mut r = Pcg32::new(5, 9);
    let x = Array4::from_shape_fn((3, 4, 6, 5), |_| r.symmetric(128).clamp(-128, 127) as i16);
    let xp = pad(x.view(), 1);
    let k = 3;
    let (p, pt) = (
        im2col(xp.view(), k).unwrap(),
        im2col_t(xp.view(), k).unwrap(),
    );
    let rows_src = Patches::new(xp.view(), k).unwrap();
    let rows_src_t = Patches::transposed(xp.view(), k).unwrap();
    let wide16 = Stored(Array2::from_shape_fn((40, 37), |_| {
        r.symmetric(32_767) as i16
    }));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for d in common::dispatches() {
        set_dispatch(d);
        for bound in [64i64, 40_000, 1 << 29, i32::MAX as i64] {
            // Weights F × CKK against patches (both orientations).
            let w = cast::<i32>(&matrix(&mut r, 5, 36, bound, 32));
            let want = oracle(p.view(), w.view());
            let got = gemm_rows_nt(&rows_src, w.view());
            match &want {
                Some(want) => assert_eq!(&got.unwrap(), want, "rows_nt {d:?} ≤{bound}"),
                None => assert!(got.is_err()),
            }
            let got_t = gemm_nt_rows(w.view(), &rows_src);
            match &want {
                Some(want) => assert_eq!(got_t.unwrap(), want.t(), "nt_rows {d:?} ≤{bound}"),
                None => assert!(got_t.is_err()),
            }
            // Errors F × (N·Ho·Wo) against transposed patches (the weight gradient).
            let delta = cast::<i32>(&matrix(&mut r, 5, pt.ncols(), bound, 32));
            let want = oracle(delta.view(), pt.view());
            let got = gemm_nt_rows(delta.view(), &rows_src_t);
            match &want {
                Some(want) => assert_eq!(&got.unwrap(), want, "wgrad {d:?} ≤{bound}"),
                None => assert!(got.is_err()),
            }
        }
        // A source with values at the i16 limit, both orientations.
        let b = Array2::from_shape_fn((9, 37), |_| r.symmetric(1 << 20));
        let want = oracle(wide16.0.view(), b.view()).unwrap();
        assert_eq!(gemm_rows_nt(&wide16, b.view()).unwrap(), want, "{d:?}");
        assert_eq!(gemm_nt_rows(b.view(), &wide16).unwrap(), want.t(), "{d:?}");
        assert!(gemm_rows_nt(&wide16, Array2::<i32>::zeros((2, 36)).view()).is_err());
    }
    set_dispatch(Dispatch::default());
}

fn mlp_run() -> Vec<Array2<i32>> {
    common::train_mlp(11, 123, 12)
}

/// An MLP whose forward layers' errors are wider than `i16` from the first step, as real
/// training's are within its first epoch: the heads' initial weights times 64. Its weight
/// gradients are split along K on the pair engine and take three-digit tiles where AMX runs.
fn mlp_wide_run() -> Vec<Array2<i32>> {
    let mut cfg = MlpConfig::new(784, &[200, 100, 50], 10);
    cfg.seed = 5;
    let mut model = Mlp::new(cfg).unwrap();
    for (name, _) in model.config.linear_shapes() {
        if name.contains("pred") {
            let head = model.linear_mut(&name).unwrap();
            head.weight.mapv_inplace(|w| w * 64);
        }
    }
    let hyper = Hyper::default();
    let mut r = Pcg32::new(31, 0);
    for _ in 0..4 {
        let x = Array2::from_shape_fn((64, 784), |_| r.symmetric(127) as i8);
        let y: Vec<usize> = (0..64).map(|_| r.below(10) as usize).collect();
        model.train_step(x.view(), &y, &hyper).unwrap();
    }
    model.linears().iter().map(|l| l.weight.clone()).collect()
}

fn cnn_run() -> Vec<Vec<i32>> {
    // 32 channels into a second convolution of 32 filters, batch 32: a product of 2048 × 288
    // × 32 (19 M multiply-adds), large enough for the AMX tile engine where it runs (it leaves
    // smaller ones to the pair engine).
    let conv = |f| Feature::Conv {
        filters: f,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let mut cfg = CnnConfig::new(
        (1, 16, 16),
        &[conv(32), Feature::MaxPool(2), conv(32), Feature::AvgPool(2)],
        &[24],
        10,
    );
    cfg.seed = 3;
    let mut model = Cnn::new(cfg).unwrap();
    let hyper = Hyper::default();
    let mut r = Pcg32::new(8, 8);
    for _ in 0..4 {
        let x = Array4::from_shape_fn((32, 1, 16, 16), |_| r.symmetric(127) as i8);
        let y: Vec<usize> = (0..32).map(|_| r.below(10) as usize).collect();
        model.train_step(x.view(), &y, &hyper).unwrap();
    }
    let mut w: Vec<Vec<i32>> = model
        .convs()
        .iter()
        .map(|c| c.weight.iter().copied().collect())
        .collect();
    w.extend(
        model
            .linears()
            .iter()
            .map(|l| l.weight.iter().copied().collect()),
    );
    w
}

/// Whole training runs (MLP with dropout, CNN) give the same bits on every kernel path and on
/// 1 and 2 threads.
#[test]
fn training_is_bit_identical_across_dispatch_paths_and_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    type Run = (
        Dispatch,
        usize,
        Vec<Array2<i32>>,
        Vec<Array2<i32>>,
        Vec<Vec<i32>>,
    );
    let runs: Vec<Run> = common::dispatches()
        .into_iter()
        .flat_map(|d| [(d, 1usize), (d, 2)])
        .map(|(d, threads)| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            set_dispatch(d);
            let before = engine_counts();
            let (mlp, wide) = pool.install(|| (mlp_run(), mlp_wide_run()));
            // Where AMX runs, the wide errors' weight gradients really went to tiles (the
            // MLPs' other products are too small for the tile engine; without i16 pairs the
            // gradients take the i32 engine).
            let after_mlps = engine_counts();
            if d.isa == Isa::Amx && d.allow_i16 {
                assert!(after_mlps.tiles > before.tiles, "no MLP gradient on tiles");
            }
            let cnn = pool.install(cnn_run);
            // Where AMX runs, the tile engine really took part of these trainings.
            if d.isa == Isa::Amx {
                assert!(
                    engine_counts().tiles > after_mlps.tiles,
                    "no CNN product on tiles"
                );
            }
            (d, threads, mlp, wide, cnn)
        })
        .collect();
    set_dispatch(Dispatch::default());
    let (_, _, mlp0, wide0, cnn0) = &runs[0];
    for (d, t, mlp, wide, cnn) in &runs[1..] {
        assert_eq!(mlp, mlp0, "MLP weights differ on {d:?}, {t} threads");
        assert_eq!(
            wide, wide0,
            "wide-error MLP weights differ on {d:?}, {t} threads"
        );
        assert_eq!(cnn, cnn0, "CNN weights differ on {d:?}, {t} threads");
    }
    // Training changed the weights (the comparison is not vacuous).
    let mut cfg = MlpConfig::new(784, &[200, 100, 50], 10);
    cfg.seed = 11;
    let init = Mlp::new(cfg).unwrap();
    assert_ne!(&init.linears()[0].weight, &mlp0[0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random shapes and magnitudes (i8 inputs × i32 weights or errors), default dispatch.
    #[test]
    fn random_products_match_oracle(
        m in 1usize..20, n in 1usize..40, k in 1usize..600,
        bound in prop_oneof![Just(127i64), Just(32_767), Just(32_768), Just(1 << 24),
                             Just(32_767 * 32_768), Just(i32::MAX as i64)],
        seed in any::<u64>(),
    ) {
        let mut r = Pcg32::new(seed, 1);
        let a = cast::<i8>(&matrix(&mut r, m, k, 128, 8));
        let b = cast::<i32>(&matrix(&mut r, n, k, bound, 32));
        let want = oracle(a.view(), b.view()).unwrap();
        prop_assert_eq!(gemm_nt(a.view(), b.view()).unwrap(), want.clone());
        prop_assert_eq!(gemm_nt(b.view(), a.view()).unwrap(), want.t().to_owned());
    }
}

/// Products large enough to be split across threads (above the parallel threshold): equal to
/// the oracle on every dispatch, on 1 and 2 threads, narrow and split operands.
#[test]
fn products_split_across_threads_match_the_oracle() {
    let mut r = Pcg32::new(77, 7);
    // 262×1031×70 ≈ 18.9 M multiply-adds (well above the threshold, 2²¹ ≈ 2.1 M); odd sizes cross
    // tile edges.
    let a = cast::<i8>(&matrix(&mut r, 262, 1031, 127, 8));
    let narrow = cast::<i32>(&matrix(&mut r, 70, 1031, 32_767, 32));
    let wide = cast::<i32>(&matrix(&mut r, 70, 1031, 1 << 22, 32));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for b in [&narrow, &wide] {
        let want = oracle(a.view(), b.view()).expect("provable");
        for d in common::dispatches() {
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| gemm_nt_with(a.view(), b.view(), None, d).unwrap());
                assert_eq!(got, want, "{d:?} on {threads} threads");
            }
        }
    }
}
