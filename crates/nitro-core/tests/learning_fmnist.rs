//! Learning on real data: MLP2 on the first 20,000 Fashion-MNIST training images, 3 epochs,
//! test accuracy above 70 % (the reference reaches 75.9 % after one epoch of all 60,000).

mod common;

use ndarray::s;
use nitro_core::data::idx::load_mnist_like;
use nitro_core::train::{fit, Control, Sets, TrainConfig};
use nitro_core::{Dataset, Mlp, Normalization, Preset};

#[test]
fn mlp2_learns_fashion_mnist() {
    let Some(dir) = common::fmnist_dir() else {
        return;
    };
    let raw = load_mnist_like(&dir).unwrap();
    assert_eq!((raw.train_x.nrows(), raw.test_x.nrows()), (60_000, 10_000));
    let norm = Normalization::fit(raw.train_x.view(), 1).unwrap();
    // algorithm.md §2 check values on the full training set: mean ≈ −54, MAD ≈ 82 (±1).
    assert!(
        (norm.mean[0] + 54).abs() <= 1 && (norm.mad[0] - 82).abs() <= 1,
        "{norm:?}"
    );
    let n = 20_000;
    let train = Dataset::new(
        norm.apply(raw.train_x.slice(s![..n, ..])).unwrap(),
        raw.train_y[..n].to_vec(),
        (1, 28, 28),
    )
    .unwrap();
    let test = Dataset::new(
        norm.apply(raw.test_x.view()).unwrap(),
        raw.test_y.clone(),
        (1, 28, 28),
    )
    .unwrap();
    let spec = Preset::Mlp2.spec("fashion-mnist");
    let mut model = Mlp::new(spec.config).unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        hyper: spec.hyper,
        ..TrainConfig::default()
    };
    let h = fit(
        &mut model,
        &Sets::new(&train, Some(&test)),
        &cfg,
        &mut |_| Control::Continue,
        &mut |_| Ok(Control::Continue),
    )
    .unwrap();
    let acc = h.epochs.last().unwrap().test.unwrap();
    assert!(acc.correct * 100 > acc.total * 70, "test accuracy {acc:?}");
    // Every block head learns too.
    for b in &h.epochs.last().unwrap().blocks {
        assert!(b.correct * 100 > b.total * 60, "block accuracy {b:?}");
    }
}

#[test]
fn cancelling_stops_after_the_current_batch() {
    let mut r = nitro_core::rng::Pcg32::new(0, 0);
    let x = ndarray::Array2::from_shape_fn((640, 16), |_| r.symmetric(100) as i8);
    let y = (0..640).map(|i| i % 2).collect();
    let data = Dataset::new(x, y, (1, 4, 4)).unwrap();
    let mut model = Mlp::new(nitro_core::MlpConfig::new(16, &[8], 2)).unwrap();
    let cfg = TrainConfig {
        epochs: 5,
        ..TrainConfig::default()
    };
    let mut calls = 0;
    let h = fit(
        &mut model,
        &Sets::new(&data, None),
        &cfg,
        &mut |p| {
            calls += 1;
            if p.epoch == 2 && p.batch == 3 {
                Control::Stop
            } else {
                Control::Continue
            }
        },
        &mut |_| Ok(Control::Continue),
    )
    .unwrap();
    assert!(h.cancelled);
    assert_eq!(calls, 10 + 3);
    assert_eq!(h.epochs.len(), 2);
    assert_eq!(h.epochs[1].train.total, 3 * 64);
}
