//! Criterion benches: the exact GEMM on the shapes MLP2 training uses, and one MLP2 step.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::Array2;
use nitro_core::kernels::gemm::{gemm_nt_with, Dispatch, Path};
use nitro_core::rng::Pcg32;
use nitro_core::{Hyper, Mlp, Preset};
use std::hint::black_box;

fn random(r: &mut Pcg32, rows: usize, cols: usize, bound: u32) -> Array2<i32> {
    Array2::from_shape_fn((rows, cols), |_| r.symmetric(bound))
}

fn gemm(c: &mut Criterion) {
    let mut r = Pcg32::new(1, 1);
    // MLP2 first layer forward: x (64×784, i8 range) · Wᵀ (200×784, weights ~ 2^14).
    let x = random(&mut r, 64, 784, 127);
    let w = random(&mut r, 200, 784, 16_000);
    let mut g = c.benchmark_group("gemm_64x784x200");
    g.throughput(Throughput::Elements(64 * 784 * 200));
    let variants = [
        (
            "i16_avx2",
            Dispatch {
                allow_i16: true,
                allow_simd: true,
            },
            None,
        ),
        (
            "i32_avx2",
            Dispatch {
                allow_i16: false,
                allow_simd: true,
            },
            None,
        ),
        (
            "i32_portable",
            Dispatch {
                allow_i16: false,
                allow_simd: false,
            },
            None,
        ),
        (
            "chunked64_i16",
            Dispatch::default(),
            Some(Path::Chunked(64)),
        ),
        ("i64", Dispatch::default(), Some(Path::I64)),
    ];
    for (name, d, p) in variants {
        g.bench_function(name, |b| {
            b.iter(|| gemm_nt_with(black_box(x.view()), w.view(), p, d).unwrap())
        });
    }
    g.finish();
}

fn mlp2_step(c: &mut Criterion) {
    let spec = Preset::Mlp2.spec("fashion-mnist");
    let mut model = Mlp::new(spec.config).unwrap();
    let hyper = Hyper { ..spec.hyper };
    let mut r = Pcg32::new(2, 2);
    let x = Array2::from_shape_fn((64, 784), |_| r.symmetric(127) as i8);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    c.bench_function("mlp2_train_step_batch64", |b| {
        b.iter(|| model.train_step(x.view(), &y, &hyper).unwrap())
    });
}

criterion_group!(benches, gemm, mlp2_step);
criterion_main!(benches);
