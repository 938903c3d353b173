//! The sparse backward of a max-pool head (`Pool2d::backward_sparse` → `Activation::backward_sparse`
//! → `Conv2d::gradients_sparse`, [`nitro_core::kernels::sparse`]) against the dense one
//! (`Pool2d::backward` → `Activation::backward` → `Conv2d::gradients`): equal bits on random
//! blocks — shapes, paddings, kernels 1/3/5, ties, padding maxima, zero/negative/wide errors,
//! both compat modes, every kernel path — and a whole local update of a `LocalConv2dBlock`
//! against the same update spelled out densely.

use ndarray::{Array1, Array2, Array4};
use nitro_core::kernels::sparse::SparseDelta;
use nitro_core::kernels::{set_dispatch, Dispatch};
use nitro_core::layers::{
    flatten, unflatten, Activation, ActivationKind, Conv2d, Linear, Pool2d, PoolKind,
};
use nitro_core::loss::{one_hot, output_error};
use nitro_core::rng::Pcg32;
use nitro_core::Compat;
use nitro_core::{Error, LocalConv2dBlock, Sgd};
use proptest::prelude::*;
use std::sync::Mutex;

/// `set_dispatch` is process-wide: tests that change it take turns.
static SERIAL: Mutex<()> = Mutex::new(());

const KINDS: [ActivationKind; 6] = [
    ActivationKind::NitroRelu { a: 4 },
    ActivationKind::PocketLeakyRelu { a: 7 },
    ActivationKind::PocketRelu,
    ActivationKind::PocketTanh,
    ActivationKind::BipolarPocketRelu,
    ActivationKind::BipolarPocketLeakyRelu { a: 3 },
];

/// An error value of one of several kinds: zero, small, `i16`-sized, near the `i32` run bound
/// `(2³¹−1)/max|x|` (so runs of 0, 1 and 2 entries occur), or anywhere in `i32`.
fn delta_value(r: &mut Pcg32, mode: u32, max_x: i32) -> i32 {
    match (mode + r.below(3)) % 6 {
        0 => 0,
        1 => r.symmetric(3),
        2 => r.symmetric(40_000),
        3 => {
            let edge = i32::MAX / max_x.max(1);
            (edge + r.symmetric(2)) * if r.coin() { 1 } else { -1 }
        }
        4 => [i32::MIN, i32::MAX, i32::MIN + 1, i32::MAX - 1][r.below(4) as usize],
        _ => r.next_u32() as i32,
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    f: usize,
    k: usize,
    pad: usize,
    extra: usize,
    pool: (usize, usize),
    pool_pad: (bool, bool),
    ties: bool,
    wide_x: bool,
    bias: bool,
    kind: usize,
    mode: u32,
    compat: Compat,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            1usize..4,
            1usize..6,
            1usize..7,
            prop_oneof![Just(1usize), Just(3), Just(5)],
        ),
        (
            0usize..3,
            0usize..7,
            (1usize..5, 1usize..5),
            (any::<bool>(), any::<bool>()),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0usize..KINDS.len(),
        ),
        (0u32..6, any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (n, c, f, k),
                (pad, extra, pool, pool_pad),
                (ties, wide_x, bias, kind),
                (mode, reference, seed),
            )| Case {
                n,
                c,
                f,
                k,
                pad,
                extra,
                pool,
                pool_pad,
                ties,
                wide_x,
                bias,
                kind,
                mode,
                compat: if reference {
                    Compat::Reference
                } else {
                    Compat::Exact
                },
                seed,
            },
        )
}

/// Dense and sparse gradients of one random block, on every kernel path.
fn check(cs: Case) -> Result<(), TestCaseError> {
    let mut r = Pcg32::new(cs.seed, 3);
    // Output size at least the pooling kernel.
    let d_out = cs.pool.0.max(cs.pool.1) + cs.extra;
    // d_out = d_in + 2·pad − k + 1 with d_in ≥ 1.
    let pad = cs.pad.min((d_out + cs.k - 2) / 2);
    let d_in = d_out + cs.k - 1 - 2 * pad;
    let x_bound = if cs.wide_x { 32_767 } else { 127 };
    let x = Array4::from_shape_fn((cs.n, cs.c, d_in, d_in), |_| {
        // Some exact extremes, including i16::MIN.
        match r.below(16) {
            0 => i16::MIN,
            1 => i16::MAX,
            _ => r.symmetric(x_bound) as i16,
        }
    });
    let x = if cs.wide_x {
        x
    } else {
        x.mapv(|v| v.clamp(-128, 127))
    };
    let w = Array4::from_shape_fn((cs.f, cs.c, cs.k, cs.k), |_| r.symmetric(64));
    let bias = cs
        .bias
        .then(|| Array1::from_shape_fn(cs.f, |_| r.symmetric(100)));
    let mut conv = Conv2d::new("conv", w, bias, 1, pad).unwrap();
    conv.forward(x.view(), true).unwrap();
    let max_x = i32::from(x.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0));
    // The activation input: few distinct values make ties in the max likely.
    let (ho, wo) = conv.output_size(d_in, d_in).unwrap();
    assert_eq!((ho, wo), (d_out, d_out));
    let z = Array4::from_shape_fn((cs.n, cs.f, ho, wo), |_| {
        if cs.ties {
            [-127i8, -3, 0, 0, 2, 127][r.below(6) as usize]
        } else {
            r.symmetric(127) as i8
        }
    });
    let mut act = Activation::new(KINDS[cs.kind]).unwrap();
    let h = act.forward(z, true);
    let pp = (
        if cs.pool_pad.0 { cs.pool.0 / 2 } else { 0 },
        if cs.pool_pad.1 { cs.pool.1 / 2 } else { 0 },
    );
    let mut pool = Pool2d::new(PoolKind::Max, cs.pool, pp).unwrap();
    let pooled = pool.forward(h.view(), true, cs.compat).unwrap();
    let delta = pooled.mapv(|_| delta_value(&mut r, cs.mode, max_x));

    let (mut pool_s, mut act_s) = (pool.clone(), act.clone());
    let dense_pool = pool.backward(delta.view()).unwrap();
    let dense_act = act.backward(dense_pool.clone()).unwrap();
    let (g, gb) = conv.gradients(dense_act.view()).unwrap();

    let mut sparse = pool_s.backward_sparse(delta.view()).unwrap();
    prop_assert_eq!(&sparse.to_dense().unwrap(), &dense_pool);
    act_s.backward_sparse(&mut sparse).unwrap();
    prop_assert_eq!(&sparse.to_dense().unwrap(), &dense_act);
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for d in Dispatch::all_detected() {
        set_dispatch(d);
        let (gs, gbs) = conv.gradients_sparse(&sparse).unwrap();
        prop_assert_eq!(&gs, &g, "weight gradient on {:?}", d);
        prop_assert_eq!(&gbs, &gb, "bias gradient on {:?}", d);
    }
    set_dispatch(Dispatch::default());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn sparse_gradient_equals_dense(cs in case()) {
        check(cs)?;
    }
}

/// Blocks large enough that the pooled arg-max, the sparse entries, the activation input, the
/// channels-last copy and the gradient's accumulators come from the kernels' free list: run
/// three times at one size, each run reads buffers the previous one left with its values, and
/// must still equal the dense chain (nothing stale leaks in).
#[test]
fn repeated_blocks_of_one_size_equal_the_dense_chain() {
    for seed in 0..3 {
        let cs = Case {
            n: 3,
            c: 32,
            f: 64,
            k: 3,
            pad: 1,
            extra: 12,
            pool: (2, 2),
            pool_pad: (false, false),
            ties: false,
            wide_x: false,
            bias: true,
            kind: 0,
            mode: 1,
            compat: Compat::Exact,
            seed,
        };
        check(cs).unwrap();
    }
}

#[test]
fn padding_maxima_and_ties_route_like_the_dense_backward() {
    // 1×1×2×2 input, 2×2 windows padded by 1: every window has 3 padding entries. In reference
    // mode the padding value 0 beats the negative inputs, so those windows route nothing; ties
    // (two equal maxima) go to the first in row-major order.
    let h = Array4::from_shape_vec((1, 1, 2, 2), vec![-5i8, -5, 7, 7]).unwrap();
    for compat in [Compat::Exact, Compat::Reference] {
        let mut p = Pool2d::new(PoolKind::Max, (2, 2), (1, 1)).unwrap();
        p.forward(h.view(), true, compat).unwrap();
        let mut q = p.clone();
        let delta = Array4::from_shape_vec((1, 1, 2, 2), vec![1, 2, 3, 4]).unwrap();
        let dense = p.backward(delta.view()).unwrap();
        let sparse = q.backward_sparse(delta.view()).unwrap();
        assert_eq!(sparse.to_dense().unwrap(), dense, "{compat:?}");
        let expect = match compat {
            Compat::Exact => vec![1, 2, 3, 4],
            Compat::Reference => vec![0, 0, 3, 4],
        };
        assert_eq!(dense.iter().copied().collect::<Vec<_>>(), expect);
    }
    // A tie inside one window: the first maximum takes the error.
    let h = Array4::from_shape_vec((1, 1, 2, 2), vec![3i8, 9, 9, 9]).unwrap();
    let mut p = Pool2d::new(PoolKind::Max, (2, 2), (0, 0)).unwrap();
    p.forward(h.view(), true, Compat::Exact).unwrap();
    let s = p
        .backward_sparse(Array4::from_elem((1, 1, 1, 1), -6).view())
        .unwrap();
    assert_eq!(
        s.to_dense().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![0, -6, 0, 0]
    );
}

#[test]
fn average_pooling_is_refused() {
    let mut p = Pool2d::new(PoolKind::Avg, (2, 2), (0, 0)).unwrap();
    p.forward(
        Array4::<i8>::zeros((1, 1, 2, 2)).view(),
        true,
        Compat::Exact,
    )
    .unwrap();
    assert!(p
        .backward_sparse(Array4::<i32>::zeros((1, 1, 1, 1)).view())
        .is_err());
}

#[test]
fn both_paths_refuse_the_same_i64_overflow() {
    // N·Ho·Wo = 400·400 > 2¹⁷ products of |δ| = 2³¹ and |x| = 2¹⁵ may exceed i64: the dense product
    // refuses, and so does the sparse one even with a single entry.
    let x = Array4::from_elem((1, 1, 400, 400), i16::MIN);
    let mut conv = Conv2d::new("big", Array4::from_elem((1, 1, 1, 1), 1), None, 1, 0).unwrap();
    conv.forward(x.view(), true).unwrap();
    let mut delta = Array4::<i32>::zeros((1, 1, 400, 400));
    delta[(0, 0, 7, 9)] = i32::MIN;
    let dense = conv.gradients(delta.view());
    let sparse = SparseDelta::new(
        (1, 1, 400, 400),
        vec![0, 1],
        vec![7 * 400 + 9],
        vec![i32::MIN],
    )
    .unwrap();
    let sp = conv.gradients_sparse(&sparse);
    assert!(matches!(dense, Err(Error::Overflow { .. })), "{dense:?}");
    assert!(matches!(sp, Err(Error::Overflow { .. })), "{sp:?}");
    // One step below the bound both succeed, with equal bits.
    delta[(0, 0, 7, 9)] = 1 << 20;
    let sparse = SparseDelta::new(
        (1, 1, 400, 400),
        vec![0, 1],
        vec![7 * 400 + 9],
        vec![1 << 20],
    )
    .unwrap();
    assert_eq!(
        conv.gradients(delta.view()).unwrap(),
        conv.gradients_sparse(&sparse).unwrap()
    );
}

/// A block's local update (sparse inside) against the same update written out with the dense
/// layer backwards, over several steps, in both compat modes and with and without bias.
#[test]
fn local_update_matches_the_dense_chain() {
    for (compat, bias, kind) in [
        (Compat::Exact, false, ActivationKind::NitroRelu { a: 4 }),
        (
            Compat::Reference,
            true,
            ActivationKind::BipolarPocketLeakyRelu { a: 5 },
        ),
        (Compat::Exact, true, ActivationKind::PocketTanh),
    ] {
        let mut r = Pcg32::new(11, 5);
        let (c, f, d, classes, batch) = (3, 12, 12, 10, 8);
        let w = Array4::from_shape_fn((f, c, 3, 3), |_| r.symmetric(64));
        let b = bias.then(|| Array1::from_shape_fn(f, |_| r.symmetric(64)));
        let conv = Conv2d::new("conv", w, b, 1, 1).unwrap();
        // decoder_dim 300 < 12·12·12: a pooled head.
        let geom = nitro_core::block::head_geometry(f, d, 300);
        let hw = Array2::from_shape_fn((classes, geom.features), |_| r.symmetric(64));
        let head = Linear::new("head", hw, None).unwrap();
        let mut block =
            LocalConv2dBlock::from_layers(conv, head, d, 300, PoolKind::Max, kind).unwrap();
        assert!(block.pool.is_some());
        let mut dense = block.clone();
        let fwd = Sgd::new(512, 4, 30_000).unwrap();
        let head_sgd = Sgd::new(512, 1, 3_000).unwrap();
        for step in 0..6 {
            let x = Array4::from_shape_fn((batch, c, d, d), |_| r.symmetric(127) as i8);
            let labels: Vec<usize> = (0..batch)
                .map(|_| r.below(classes as u32) as usize)
                .collect();
            let target = one_hot(&labels, classes).unwrap();
            block.forward(x.view(), true).unwrap();
            block
                .local_update(&target, &labels, &fwd, &head_sgd, compat)
                .unwrap();
            // The same update, dense.
            let scaled = dense
                .conv
                .forward_scaled(x.view(), true, &dense.conv_scale)
                .unwrap();
            let h = dense.act.forward(scaled, true);
            let pool = dense.pool.as_mut().unwrap();
            let pooled = pool.forward(h.view(), true, compat).unwrap();
            let (_, pf, dh, dw) = pooled.dim();
            let flat = flatten(pooled);
            let pred = dense
                .head_scale
                .forward(&dense.head.forward(flat.view(), true).unwrap());
            let delta = output_error(&pred, &target, compat);
            let back = dense
                .head
                .backward(delta.view(), true, &head_sgd)
                .unwrap()
                .unwrap();
            let back = unflatten(back, (pf, dh, dw)).unwrap();
            let back = pool.backward(back.view()).unwrap();
            let d_act = dense.act.backward(back).unwrap();
            dense.conv.backward(d_act.view(), &fwd).unwrap();
            assert_eq!(
                block.conv.weight, dense.conv.weight,
                "{compat:?} step {step}"
            );
            assert_eq!(block.conv.bias, dense.conv.bias, "{compat:?} step {step}");
            assert_eq!(
                block.head.weight, dense.head.weight,
                "{compat:?} step {step}"
            );
        }
    }
}
