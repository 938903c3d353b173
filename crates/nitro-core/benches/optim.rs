//! Criterion bench of the IntegerSGD update on MLP2's largest layer (784×200 = 156 800 weights):
//! `Sgd::apply` with the forward-layer settings (lr_inv 512 · amp 640, decay 10 000) and the
//! head settings (lr_inv 512, decay 8 000), and `Sgd::apply_layer` with a bias.
//! `cargo bench -p nitro-core --bench optim`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use nitro_core::rng::Pcg32;
use nitro_core::Sgd;
use std::hint::black_box;

const N: usize = 784 * 200;

/// Weights and gradients of the magnitudes measured in an MLP2 Fashion-MNIST run: weights up to
/// ~15 000, forward-layer gradients up to ~2^26, head gradients up to ~2^15.
fn data(grad_bits: u32) -> (Vec<i32>, Vec<i64>) {
    let mut r = Pcg32::new(7, 3);
    let p = (0..N).map(|_| r.symmetric(15_000)).collect();
    let g = (0..N)
        .map(|_| {
            // A spread of magnitudes: most gradients are far below the maximum.
            let shift = r.below(grad_bits - 8);
            i64::from(r.symmetric(255)) << shift
        })
        .collect();
    (p, g)
}

fn sgd(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgd");
    for (name, sgd, bits) in [
        ("apply 784x200 fwd", Sgd::new(512, 640, 10_000).unwrap(), 26),
        ("apply 784x200 head", Sgd::new(512, 1, 8_000).unwrap(), 15),
        ("apply 784x200 no decay", Sgd::new(512, 640, 0).unwrap(), 26),
    ] {
        let (p, g) = data(bits);
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || p.clone(),
                |p| sgd.apply(black_box(p), black_box(&g), "bench").unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    let sgd = Sgd::new(512, 640, 10_000).unwrap();
    let (p, g) = data(26);
    let bias: Vec<i32> = vec![5; 200];
    let bias_grad: Vec<i64> = (0..200).map(|i| (i - 100) * 400_000).collect();
    group.bench_function("apply_layer 784x200 + bias", |b| {
        b.iter_batched_ref(
            || (p.clone(), bias.clone()),
            |(p, bv)| {
                sgd.apply_layer(
                    black_box(p),
                    black_box(&g),
                    Some((bv.as_mut_slice(), &bias_grad)),
                    "bench",
                )
                .unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, sgd);
criterion_main!(benches);
