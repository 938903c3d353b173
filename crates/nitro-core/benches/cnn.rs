//! Criterion benches for the convolutional path: conv forward and weight gradient of VGG8B's
//! first two layers at batch 64 on 1×28×28, the weight gradient of VGG8B's block 2 behind its
//! max-pool head (dense vs sparse), the max pooling of VGG8B's block outputs (its heads' padded
//! windows and the stack's 2×2 pools), and one full VGG8B training step (batch 64).
//! The step takes tens of seconds on a small machine: run it alone with
//! `cargo bench -p nitro-core --bench cnn -- vgg8b`. `NITROD_ISA=avx2` (or `portable`,
//! `avx-vnni`, `avx512-vnni`) caps the kernels' instruction set for all of them.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array4;
use nitro_core::block::head_geometry;
use nitro_core::layers::{Activation, ActivationKind, Conv2d, Pool2d, PoolKind};
use nitro_core::rng::Pcg32;
use nitro_core::{Cnn, CnnPreset, Compat};
use std::hint::black_box;

fn rand4<T: TryFrom<i32>>(r: &mut Pcg32, d: (usize, usize, usize, usize), b: u32) -> Array4<T>
where
    T::Error: core::fmt::Debug,
{
    Array4::from_shape_fn(d, |_| T::try_from(r.symmetric(b)).unwrap())
}

fn conv(c: &mut Criterion) {
    let mut r = Pcg32::new(1, 1);
    let mut g = c.benchmark_group("conv");
    g.sample_size(10);
    // (name, C, F, d): VGG8B's first layer and a 128→256 layer at 14×14.
    for (name, ch, f, d) in [
        ("1x28x28->128", 1, 128, 28),
        ("128x14x14->256", 128, 256, 14),
    ] {
        let x: Array4<i8> = rand4(&mut r, (64, ch, d, d), 127);
        let w: Array4<i32> = rand4(&mut r, (f, ch, 3, 3), 64);
        let mut layer = Conv2d::new("conv", w, None, 1, 1).unwrap();
        g.bench_function(format!("forward {name} b64"), |b| {
            b.iter(|| black_box(layer.infer(x.view()).unwrap()))
        });
        layer.forward(x.view(), true).unwrap();
        let delta: Array4<i32> = rand4(&mut r, (64, f, d, d), 2000);
        g.bench_function(format!("weight gradient {name} b64"), |b| {
            b.iter(|| black_box(layer.gradients(delta.view()).unwrap()))
        });
        // Errors wider than i16 (as training produces): the exact high/low split.
        let wide: Array4<i32> = rand4(&mut r, (64, f, d, d), 1 << 20);
        g.bench_function(format!("weight gradient {name} b64 wide errors"), |b| {
            b.iter(|| black_box(layer.gradients(wide.view()).unwrap()))
        });
    }
    g.finish();
}

/// VGG8B block 2 (`128×28×28 → 256`, k3 p1, batch 64): its head pools 8×8 windows (16 per
/// channel), so its conv error has at most 16 non-zero entries per image and filter. Measured
/// with the errors training produces (VGG8B on Fashion-MNIST: `|δ|` up to a few hundred, so every
/// entry fits `i16`) and with errors up to 2²⁰, which take the wide path.
fn sparse_gradient(c: &mut Criterion) {
    let mut r = Pcg32::new(3, 3);
    let (n, ch, f, d) = (64, 128, 256, 28);
    let geom = head_geometry(f, d, 4096);
    let x: Array4<i8> = rand4(&mut r, (n, ch, d, d), 127);
    let w: Array4<i32> = rand4(&mut r, (f, ch, 3, 3), 64);
    let mut conv = Conv2d::new("conv", w, None, 1, 1).unwrap();
    conv.forward(x.view(), true).unwrap();
    let mut act = Activation::new(ActivationKind::default()).unwrap();
    let h = act.forward(rand4::<i8>(&mut r, (n, f, d, d), 127), true);
    let mut pool = Pool2d::new(PoolKind::Max, geom.kernel, geom.padding).unwrap();
    let pooled = pool.forward(h.view(), true, Compat::Exact).unwrap();
    let mut g = c.benchmark_group("conv");
    g.sample_size(10);
    for (errors, bound) in [("training errors", 1 << 10), ("errors to 2^20", 1 << 20)] {
        let delta: Array4<i32> = rand4(&mut r, pooled.dim(), bound);
        let (mut pool_s, mut act_s) = (pool.clone(), act.clone());
        let dense = act_s
            .backward(pool_s.backward(delta.view()).unwrap())
            .unwrap();
        let (mut pool_s, mut act_s) = (pool.clone(), act.clone());
        let mut sparse = pool_s.backward_sparse(delta.view()).unwrap();
        act_s.backward_sparse(&mut sparse).unwrap();
        assert_eq!(
            conv.gradients(dense.view()).unwrap(),
            conv.gradients_sparse(&sparse).unwrap()
        );
        g.bench_function(
            format!("weight gradient vgg8b block 2 b64 max-pool head dense, {errors}"),
            |b| b.iter(|| black_box(conv.gradients(dense.view()).unwrap())),
        );
        g.bench_function(
            format!("weight gradient vgg8b block 2 b64 max-pool head sparse, {errors}"),
            |b| b.iter(|| black_box(conv.gradients_sparse(&sparse).unwrap())),
        );
    }
    g.finish();
}

/// The training forward of max pooling on VGG8B's block outputs at batch 64: block 2's head
/// (`256×28×28`, 8×8 windows with 4 padding rows and columns: 12 of a plane's 16 hang over
/// the padding), block 1's head (`128×28×28`, 8×4 with 4 padding rows) and the 2×2 pool after
/// block 2.
fn max_pooling(c: &mut Criterion) {
    let mut r = Pcg32::new(4, 4);
    let mut g = c.benchmark_group("pool");
    g.sample_size(20);
    for (name, ch, d, kernel, padding) in [
        (
            "head vgg8b block 2 256x28x28 k8x8 p4x4",
            256,
            28,
            (8, 8),
            (4, 4),
        ),
        (
            "head vgg8b block 1 128x28x28 k8x4 p4x0",
            128,
            28,
            (8, 4),
            (4, 0),
        ),
        ("stack 256x28x28 k2x2", 256, 28, (2, 2), (0, 0)),
    ] {
        let x: Array4<i8> = rand4(&mut r, (64, ch, d, d), 127);
        let mut pool = Pool2d::new(PoolKind::Max, kernel, padding).unwrap();
        g.bench_function(format!("max {name} b64"), |b| {
            b.iter(|| black_box(pool.forward(x.view(), true, Compat::Exact).unwrap()))
        });
    }
    // What the model runs for the pool after block 2 (i16 between blocks, no arg-max kept).
    let x: Array4<i16> = rand4(&mut r, (64, 256, 28, 28), 127);
    let pool = Pool2d::new(PoolKind::Max, (2, 2), (0, 0)).unwrap();
    g.bench_function("max values stack 256x28x28 k2x2 i16 b64", |b| {
        b.iter(|| black_box(pool.values(x.view(), Compat::Exact).unwrap()))
    });
    g.bench_function("max stack 256x28x28 k2x2 i16 b64", |b| {
        b.iter(|| black_box(pool.apply(x.view(), Compat::Exact).unwrap()))
    });
    g.finish();
}

fn vgg8b_step(c: &mut Criterion) {
    let spec = CnnPreset::Vgg8b.spec("fashion-mnist").unwrap();
    let mut model = Cnn::new(spec.config).unwrap();
    let mut r = Pcg32::new(2, 2);
    let x: Array4<i8> = rand4(&mut r, (64, 1, 28, 28), 127);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut g = c.benchmark_group("vgg8b");
    g.sample_size(10);
    // The preset's initial weights (|w| ≤ 9): `examples/bench_cnn` times steps with
    // trained-size weights, which is what a run spends its time on (BENCHMARKS.md).
    g.bench_function("train step b64 1x28x28", |b| {
        b.iter(|| black_box(model.train_step(x.view(), &y, &spec.hyper).unwrap()))
    });
    g.finish();
}

/// Not a benchmark: the instruction-set cap from `NITROD_ISA`, before the others run.
fn isa_cap(_: &mut Criterion) {
    nitro_core::kernels::cap_from_env().expect("NITROD_ISA names an instruction set");
}

criterion_group!(
    benches,
    isa_cap,
    conv,
    sparse_gradient,
    max_pooling,
    vgg8b_step
);
criterion_main!(benches);
