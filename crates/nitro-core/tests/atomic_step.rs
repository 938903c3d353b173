//! A training step is all-or-nothing for the whole model: when any layer's update fails (an
//! IntegerSGD update whose new value would leave `i32`, algorithm.md §1/§10), no parameter of any
//! layer has changed and the dropout generators are where they were — MLP and CNN, exact and
//! reference compatibility (algorithm.md §12, where a classifier block's update runs twice).

use ndarray::{Array2, ArrayD, Dimension};
mod common;
use common::params;
use nitro_core::rng::Pcg32;
use nitro_core::{
    fit, Cnn, CnnConfig, Compat, Dataset, Error, Feature, Hyper, LocalLinearBlock, Mlp, MlpConfig,
    NamedParams, Sets, TrainConfig,
};

/// Big steps: every quotient of the update is the gradient itself.
fn hyper(compat: Compat) -> Hyper {
    Hyper {
        lr_inv: 1,
        lr_amp_factor: 1,
        fwd_decay_inv: 0,
        subnet_decay_inv: 0,
        compat,
    }
}

/// Replace parameter `name` by `±i32::MAX` in a checkerboard: whatever the sign of an entry's
/// gradient, about half of the entries' updates leave `i32`.
fn poison(m: &mut impl NamedParams, name: &str) {
    let p = m.parameter(name).unwrap();
    let bad = ArrayD::from_shape_fn(p.raw_dim(), |ix| {
        if ix.slice().iter().sum::<usize>() % 2 == 0 {
            i32::MAX
        } else {
            -i32::MAX
        }
    });
    m.load(&[(name, bad.view())]).unwrap();
}

fn batch(n: usize, features: usize, classes: usize, seed: u64) -> (Array2<i8>, Vec<usize>) {
    let mut r = Pcg32::new(seed, 1);
    let x = Array2::from_shape_fn((n, features), |_| r.symmetric(127) as i8);
    let y = (0..n).map(|_| r.below(classes as u32) as usize).collect();
    (x, y)
}

fn assert_overflow_in(e: &Error, want: &str) {
    match e {
        Error::Overflow { layer, .. } => assert_eq!(layer, want, "{e}"),
        other => panic!("expected an overflow in {want}, got {other}"),
    }
}

fn mlp() -> Mlp {
    let mut c = MlpConfig::new(20, &[16, 12], 4);
    c.bias = true;
    c.dropout_pct = 10;
    c.seed = 5;
    Mlp::new(c).unwrap()
}

#[test]
fn failed_mlp_step_changes_no_parameter() {
    for compat in [Compat::Exact, Compat::Reference] {
        // The last block's forward layer: the output layer and every other block's layers
        // (and this block's head) are updated before it in the step.
        for target in ["linear_encoder_01", "linear_pred_01"] {
            let mut m = mlp();
            poison(&mut m, target);
            let before = params(&m);
            let rngs = m.dropout_rngs();
            let (x, y) = batch(32, 20, 4, 1);
            let e = m.train_step(x.view(), &y, &hyper(compat)).unwrap_err();
            assert_overflow_in(&e, target);
            assert_eq!(
                params(&m),
                before,
                "{compat:?}, {target}: parameters changed"
            );
            assert_eq!(
                m.dropout_rngs(),
                rngs,
                "{compat:?}: dropout generators moved"
            );
        }
    }
}

/// After a failed step the model trains exactly as one that never attempted it.
#[test]
fn failed_step_leaves_no_trace() {
    let (x, y) = batch(32, 20, 4, 2);
    let mut a = mlp();
    let fresh = a.clone();
    let good = a.parameter("linear_encoder_01").unwrap();
    poison(&mut a, "linear_encoder_01");
    assert!(a.train_step(x.view(), &y, &hyper(Compat::Exact)).is_err());
    a.load(&[("linear_encoder_01", good.view())]).unwrap();
    let mut b = fresh;
    let h = Hyper::default();
    for _ in 0..3 {
        let sa = a.train_step(x.view(), &y, &h).unwrap();
        let sb = b.train_step(x.view(), &y, &h).unwrap();
        assert_eq!(sa, sb);
    }
    assert_eq!(params(&a), params(&b));
    assert_eq!(a.dropout_rngs(), b.dropout_rngs());
}

fn cnn() -> Cnn {
    let conv = |filters| Feature::Conv {
        filters,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let mut c = CnnConfig::new(
        (1, 8, 8),
        &[conv(4), Feature::MaxPool(2), conv(6), Feature::MaxPool(2)],
        &[10, 8],
        3,
    );
    c.bias = true;
    c.decoder_dim = 64; // pooled heads: the sparse path
    c.dropout_pct = 10;
    c.seed = 3;
    Cnn::new(c).unwrap()
}

#[test]
fn failed_cnn_step_changes_no_parameter() {
    let names: Vec<String> = cnn().parameter_shapes().into_iter().map(|p| p.0).collect();
    // The last classifier block's forward layer and the second convolution.
    let last_fwd = names
        .iter()
        .filter(|n| n.starts_with("linear_encoder_") && !n.ends_with(".bias"))
        .max()
        .unwrap()
        .clone();
    for compat in [Compat::Exact, Compat::Reference] {
        for target in [last_fwd.as_str(), "conv_encoder_02"] {
            let mut m = cnn();
            poison(&mut m, target);
            let before = params(&m);
            let rngs = m.dropout_rngs();
            let (x, y) = batch(16, 64, 3, 4);
            let imgs = x.into_shape_with_order((16, 1, 8, 8)).unwrap();
            let e = m.train_step(imgs.view(), &y, &hyper(compat)).unwrap_err();
            assert_overflow_in(&e, target);
            assert_eq!(
                params(&m),
                before,
                "{compat:?}, {target}: parameters changed"
            );
            assert_eq!(
                m.dropout_rngs(),
                rngs,
                "{compat:?}: dropout generators moved"
            );
        }
    }
}

/// In reference compatibility a classifier block's update runs twice (algorithm.md §12 item 1), the
/// second on top of the first: when the first fits and the second does not, the block is back
/// at its parameters from before the step.
#[test]
fn failed_second_run_restores_the_first() {
    let (x, y) = batch(8, 6, 3, 7);
    let target = nitro_core::loss::one_hot(&y, 3).unwrap();
    let sgd = nitro_core::Sgd::new(1, 1, 0).unwrap();
    let fresh = LocalLinearBlock::new(
        0,
        6,
        4,
        3,
        nitro_core::ActivationKind::default(),
        nitro_core::Init::Kaiming,
        true,
        9,
    )
    .unwrap();
    let layers = |b: &LocalLinearBlock| {
        (
            b.fwd.weight.clone(),
            b.fwd.bias.clone(),
            b.head.weight.clone(),
            b.head.bias.clone(),
        )
    };
    // Forward weights at i32::MAX − margin: find a margin the first update fits and the
    // second does not.
    let mut found = 0;
    for margin in (0..40).map(|k| 1i32 << (k / 2) | (k & 1)) {
        let mut b = fresh.clone();
        b.fwd.weight.fill(i32::MAX - margin);
        let mut once = b.clone();
        once.forward(x.view(), true).unwrap();
        let first = once.local_update(&target, &y, &sgd, &sgd, Compat::Reference, false);
        let start = layers(&b);
        b.forward(x.view(), true).unwrap();
        let twice = b.local_update(&target, &y, &sgd, &sgd, Compat::Reference, true);
        if let (Ok(_), Err(e)) = (&first, &twice) {
            assert_overflow_in(e, "linear_encoder_00");
            assert_eq!(
                layers(&b),
                start,
                "margin {margin}: the first run's update stayed"
            );
            found += 1;
        }
    }
    assert!(found > 0, "no margin made only the second run overflow");
}

/// `fit` stops at the failed step with the model as it was after the last good one.
#[test]
fn fit_stops_with_the_model_of_the_last_good_step() {
    let (x, y) = batch(64, 20, 4, 3);
    let data = Dataset::new(x, y, (1, 4, 5)).unwrap();
    let mut m = mlp();
    poison(&mut m, "linear_encoder_01");
    let before = params(&m);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 32,
        hyper: hyper(Compat::Exact),
        ..TrainConfig::default()
    };
    let e = fit(
        &mut m,
        &Sets::new(&data, None),
        &cfg,
        &mut |_| nitro_core::train::Control::Continue,
        &mut |_| Ok(nitro_core::train::Control::Continue),
    )
    .unwrap_err();
    assert_overflow_in(&e, "linear_encoder_01");
    assert_eq!(params(&m), before);
}

/// `fit_from` on a failing step leaves the run's state as before that batch (the epoch's
/// shuffle and the augmentation stream included): saved with the model, it continues the run.
#[test]
fn a_failed_step_gives_the_run_state_back() {
    use nitro_core::train::{fit_from, Control};
    use nitro_core::{Augment, RunState};
    let (x, y) = batch(96, 20, 4, 5);
    let data = Dataset::new(x, y, (1, 4, 5)).unwrap();
    let sets = Sets::new(&data, None);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 32,
        augment: Some(Augment { pad: 1, flip: true }),
        ..TrainConfig::default()
    };
    let go = &mut |_: &nitro_core::train::Progress| Control::Continue;
    for stop_after in [0, 1] {
        // A run stopped after `stop_after` batches (0: between epochs, after the first).
        let mut m = mlp();
        let mut state = RunState::new(&cfg, &sets).unwrap();
        let mut n = 0;
        let stop = &mut |_: &nitro_core::train::Progress| {
            n += 1;
            if n == 3 + stop_after {
                Control::Stop
            } else {
                Control::Continue
            }
        };
        fit_from(&mut m, &sets, &cfg, &mut state, stop, &mut |_| {
            Ok(Control::Continue)
        })
        .unwrap();
        assert_eq!((state.epoch, state.batch), (1, stop_after));
        let good = m.parameter("linear_encoder_01").unwrap();
        let before = state.clone();
        let mut bad = m.clone();
        poison(&mut bad, "linear_encoder_01");
        assert!(fit_from(&mut bad, &sets, &cfg, &mut state, go, &mut |_| Ok(
            Control::Continue
        ))
        .is_err());
        assert_eq!(state, before, "the failed batch moved the run's state");
        // Continuing from it, the model restored, gives the uninterrupted run.
        bad.load(&[("linear_encoder_01", good.view())]).unwrap();
        fit_from(&mut bad, &sets, &cfg, &mut state, go, &mut |_| {
            Ok(Control::Continue)
        })
        .unwrap();
        let mut whole = mlp();
        fit(&mut whole, &sets, &cfg, go, &mut |_| Ok(Control::Continue)).unwrap();
        assert_eq!(params(&bad), params(&whole));
    }
}
