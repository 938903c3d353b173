//! Criterion benches for the convolutional path: conv forward and weight gradient of VGG8B's
//! first two layers at batch 64 on 1×28×28, and one full VGG8B training step (batch 64).
//! The step takes tens of seconds on a small machine: run it alone with
//! `cargo bench -p nitro-core --bench cnn -- vgg8b`.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array4;
use nitro_core::layers::Conv2d;
use nitro_core::rng::Pcg32;
use nitro_core::{Cnn, CnnPreset};
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

fn vgg8b_step(c: &mut Criterion) {
    let spec = CnnPreset::Vgg8b.spec("fashion-mnist").unwrap();
    let mut model = Cnn::new(spec.config).unwrap();
    let mut r = Pcg32::new(2, 2);
    let x: Array4<i8> = rand4(&mut r, (64, 1, 28, 28), 127);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut g = c.benchmark_group("vgg8b");
    g.sample_size(10);
    g.bench_function("train step b64 1x28x28", |b| {
        b.iter(|| black_box(model.train_step(x.view(), &y, &spec.hyper).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, conv, vgg8b_step);
criterion_main!(benches);
