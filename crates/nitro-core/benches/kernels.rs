//! Criterion benches: the exact GEMM on the shapes training uses (every kernel path), and one
//! MLP2 training step.
//!
//! Shapes (algorithm.md §3; the shapes `BENCHMARKS.md` reports): MLP2's first layer forward `(M=64,
//! K=784, N=200)`; its weight gradient `δᵀ·x` `(M=200, K=64, N=784)` with errors wider than `i16`
//! (the exact high/low split); that layer's forward and update with the errors real training
//! gives it (the gradient consumed by IntegerSGD block by block); and the im2col shape of a VGG8B
//! 3×3 convolution with 128 input and 256 output channels on a 28×28 map at batch 64
//! `(M=64·28·28, K=1152, N=256)`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use nitro_core::kernels::gemm::{gemm_nt_with, Accum};
use nitro_core::kernels::{set_dispatch, Dispatch, Isa};
use nitro_core::layers::Linear;
use nitro_core::rng::Pcg32;
use nitro_core::{Hyper, Mlp, Preset, Sgd};
use std::hint::black_box;

fn random(r: &mut Pcg32, rows: usize, cols: usize, bound: u32) -> Array2<i32> {
    Array2::from_shape_fn((rows, cols), |_| r.symmetric(bound))
}

fn random_i8(r: &mut Pcg32, rows: usize, cols: usize) -> Array2<i8> {
    Array2::from_shape_fn((rows, cols), |_| r.symmetric(127) as i8)
}

/// The tile engine (`tiles_amx`) and the pair engine on every instruction set this CPU has
/// (named `i16_<isa>`), plus the `i32` engine with and without AVX2; instruction sets the CPU
/// lacks are listed as skipped.
fn variants() -> Vec<(String, Dispatch)> {
    let mut out = Vec::new();
    for isa in Isa::ALL.into_iter().rev() {
        let engine = if isa == Isa::Amx { "tiles" } else { "i16" };
        if isa.detected() {
            out.push((format!("{engine}_{isa}"), Dispatch::new(true, isa)));
        } else {
            println!(
                "skipped: {engine}_{isa} (this CPU lacks {})",
                isa.cpu_flags()
            );
        }
    }
    out.push(("i32_avx2".into(), Dispatch::new(false, Isa::Avx2)));
    out.push(("i32_portable".into(), Dispatch::new(false, Isa::Portable)));
    out
}

const BEST: Dispatch = Dispatch::DEFAULT;

fn gemm_mlp(c: &mut Criterion) {
    let mut r = Pcg32::new(1, 1);
    // MLP2 first layer forward: x (64×784, i8) · Wᵀ (200×784, weights that fit i16).
    let x = random_i8(&mut r, 64, 784);
    let w = random(&mut r, 200, 784, 16_000);
    let mut g = c.benchmark_group("gemm_64x784x200");
    g.throughput(Throughput::Elements(64 * 784 * 200));
    let mut all: Vec<(String, Dispatch, Option<Accum>)> =
        variants().into_iter().map(|(n, d)| (n, d, None)).collect();
    all.push(("i16_best_chunked64".into(), BEST, Some(Accum::Chunked(64))));
    all.push(("i64".into(), BEST, Some(Accum::I64)));
    for (name, d, p) in all {
        g.bench_function(&name, |b| {
            b.iter(|| gemm_nt_with(black_box(x.view()), w.view(), p, d).unwrap())
        });
    }
    g.finish();

    // Weight gradient δᵀ·x: errors up to 2^20 (split into two i16 halves) × i8 inputs, K = 64.
    let delta = random(&mut r, 64, 200, 1 << 20);
    let mut g = c.benchmark_group("gemm_wgrad_200x64x784");
    g.throughput(Throughput::Elements(64 * 784 * 200));
    for (name, d) in variants() {
        g.bench_function(format!("split_{name}"), |b| {
            b.iter(|| gemm_nt_with(black_box(delta.t()), x.t(), None, d).unwrap())
        });
    }
    g.finish();

    // The same shape with the errors MLP2 really has (|δ| ≤ 2^17, measured up to 127,519):
    // short enough i32 blocks for the split along K (one pair per term, C unsplit).
    let delta = random(&mut r, 64, 200, 1 << 17);
    let mut g = c.benchmark_group("gemm_wgrad_200x64x784_mlp2_errors");
    g.throughput(Throughput::Elements(64 * 784 * 200));
    // (the i32 engine's variants do not split at all: left out)
    for (name, d) in variants()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("i32"))
    {
        g.bench_function(format!("split_k_{name}"), |b| {
            b.iter(|| gemm_nt_with(black_box(delta.t()), x.t(), None, d).unwrap())
        });
    }
    g.finish();
}

/// MLP2's first layer in training with the errors real training gives it (|δ| up to 2¹⁸: three
/// 8-bit digits, past `i16`), forward then update (`Linear::backward`: the weight gradient
/// consumed block by block by IntegerSGD), on each path: AMX tiles for the gradient
/// (`tiles_amx`), the pair engine's split along K otherwise.
fn linear_update(c: &mut Criterion) {
    let mut r = Pcg32::new(6, 2);
    let x = random_i8(&mut r, 64, 784);
    let delta = random(&mut r, 64, 200, 1 << 18);
    let sgd = Sgd::new(512, 640, 10_000).unwrap();
    let layer = Linear::new("bench", random(&mut r, 200, 784, 16_000), None).unwrap();
    let mut g = c.benchmark_group("linear_784x200_b64_real_errors");
    g.throughput(Throughput::Elements(64 * 784 * 200));
    for (name, d) in variants()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("i32") && n != "i16_portable")
    {
        set_dispatch(d);
        // Each iteration updates a fresh copy: the weights stay those of the first step.
        g.bench_function(format!("forward_update_{name}"), |b| {
            b.iter_batched_ref(
                || layer.clone(),
                |l| {
                    l.forward(black_box(x.view()), true).unwrap();
                    l.backward(delta.view(), false, &sgd).unwrap()
                },
                BatchSize::LargeInput,
            )
        });
    }
    set_dispatch(Dispatch::DEFAULT);
    g.finish();
}

fn gemm_conv(c: &mut Criterion) {
    let mut r = Pcg32::new(3, 1);
    let (m, k, n) = (64 * 28 * 28, 1152, 256);
    let cols = random_i8(&mut r, m, k);
    let w = random(&mut r, n, k, 16_000);
    let mut g = c.benchmark_group("gemm_conv");
    g.sample_size(10);
    g.throughput(Throughput::Elements((m * k * n) as u64));
    for (name, d) in variants().into_iter().filter(|(n, _)| n != "i32_portable") {
        g.bench_with_input(BenchmarkId::new(name, "50176x1152x256"), &d, |b, &d| {
            b.iter(|| gemm_nt_with(black_box(cols.view()), w.view(), None, d).unwrap())
        });
    }
    g.finish();
}

fn mlp2_step(c: &mut Criterion) {
    let spec = Preset::Mlp2.spec("fashion-mnist");
    let mut model = Mlp::new(spec.config).unwrap();
    let hyper = Hyper { ..spec.hyper };
    let mut r = Pcg32::new(2, 2);
    let x = random_i8(&mut r, 64, 784);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    c.bench_function("mlp2_train_step_batch64", |b| {
        b.iter(|| model.train_step(x.view(), &y, &hyper).unwrap())
    });
}

/// One MLP2 epoch: 60,000 images (synthetic, same work as Fashion-MNIST), batch 64, no shuffle.
fn mlp2_epoch(c: &mut Criterion) {
    let spec = Preset::Mlp2.spec("fashion-mnist");
    let mut model = Mlp::new(spec.config).unwrap();
    let hyper = Hyper { ..spec.hyper };
    let mut r = Pcg32::new(4, 4);
    let x = random_i8(&mut r, 60_000, 784);
    let y: Vec<usize> = (0..60_000).map(|_| r.below(10) as usize).collect();
    let mut g = c.benchmark_group("mlp2_epoch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(60_000));
    g.bench_function("60000_images_batch64", |b| {
        b.iter(|| {
            for s in 0..60_000 / 64 {
                let rows = x.slice(ndarray::s![s * 64..(s + 1) * 64, ..]);
                model
                    .train_step(rows, &y[s * 64..(s + 1) * 64], &hyper)
                    .unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    gemm_mlp,
    linear_update,
    gemm_conv,
    mlp2_step,
    mlp2_epoch
);
criterion_main!(benches);
