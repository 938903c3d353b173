//! Probe (not committed): MLP2 epochs of random data, timed.
use ndarray::Array2;
use nitro_core::rng::Pcg32;
use nitro_core::{Hyper, Mlp, Preset};
use std::time::Instant;
fn main() {
    let epochs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(3);
    let spec = Preset::Mlp2.spec("fashion-mnist");
    let mut model = Mlp::new(spec.config).unwrap();
    let hyper = Hyper { ..spec.hyper };
    let mut r = Pcg32::new(4, 4);
    let x = Array2::from_shape_fn((60_000, 784), |_| r.symmetric(127) as i8);
    let y: Vec<usize> = (0..60_000).map(|_| r.below(10) as usize).collect();
    for _ in 0..epochs {
        let t = Instant::now();
        for s in 0..60_000 / 64 {
            let rows = x.slice(ndarray::s![s * 64..(s + 1) * 64, ..]);
            model
                .train_step(rows, &y[s * 64..(s + 1) * 64], &hyper)
                .unwrap();
        }
        println!("epoch {:?}", t.elapsed());
    }
}
