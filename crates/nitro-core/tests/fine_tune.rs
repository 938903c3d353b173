//! Fine-tuning (`Mlp::fine_tune_step`): the first `frozen` local blocks keep their parameters
//! and the rest learn exactly as in a plain step. Because every local update depends only on
//! the block's own input and the labels, and a frozen block's evaluation-mode output equals its
//! training-mode output (no dropout here), one fine-tuning step must leave the later blocks and
//! the output layer with the very parameters a plain step gives them.

use ndarray::Array2;
mod common;
use common::params;
use nitro_core::rng::Pcg32;
use nitro_core::{Error, Hyper, Mlp, MlpConfig};

fn model(seed: u64) -> Mlp {
    let mut cfg = MlpConfig::new(24, &[16, 12, 8], 5);
    cfg.seed = seed;
    Mlp::new(cfg).unwrap()
}

fn batch(seed: u64, n: usize) -> (Array2<i8>, Vec<usize>) {
    let mut r = Pcg32::new(seed, 3);
    let x = Array2::from_shape_fn((n, 24), |_| (r.next_u32() % 255) as i8);
    let y = (0..n).map(|_| (r.next_u32() % 5) as usize).collect();
    (x, y)
}

/// Big steps, so that every layer's update is non-zero.
const HYPER: Hyper = Hyper {
    lr_inv: 4,
    lr_amp_factor: 2,
    fwd_decay_inv: 0,
    subnet_decay_inv: 0,
    compat: nitro_core::Compat::Exact,
};

/// The names of block `i`'s layers (forward and head) in a 3-block MLP's parameter list.
fn block_of(name: &str) -> Option<usize> {
    let names = [
        "linear_encoder_00",
        "linear_pred_00",
        "linear_encoder_01",
        "linear_pred_01",
    ];
    if let Some(i) = names.iter().position(|n| *n == name) {
        return Some(i / 2);
    }
    match name {
        "linear_encoder_02" | "linear_pred_02" => Some(2),
        _ => None, // the output layer
    }
}

#[test]
fn frozen_zero_is_the_plain_step() {
    let (mut a, mut b) = (model(1), model(1));
    for s in 0..4 {
        let (x, y) = batch(10 + s, 16);
        let sa = a.train_step(x.view(), &y, &HYPER).unwrap();
        let sb = b.fine_tune_step(x.view(), &y, &HYPER, 0).unwrap();
        assert_eq!(sa, sb);
    }
    assert_eq!(params(&a), params(&b));
}

#[test]
fn frozen_blocks_keep_their_weights_and_the_rest_learn_as_in_a_plain_step() {
    let names: Vec<String> = params(&model(2)).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| block_of(n) == Some(2)),
        "names: {names:?}"
    );
    let (x, y) = batch(20, 32);
    for frozen in 0..=3 {
        let before = params(&model(2));
        let mut plain = model(2);
        plain.train_step(x.view(), &y, &HYPER).unwrap();
        let plain = params(&plain);
        let mut tuned = model(2);
        let stats = tuned.fine_tune_step(x.view(), &y, &HYPER, frozen).unwrap();
        assert_eq!(stats.blocks.len(), 3 - frozen);
        for (((name, b), (_, p)), (_, t)) in before.iter().zip(&plain).zip(&params(&tuned)) {
            assert_ne!(b, p, "{name}: the plain step must change every layer here");
            match block_of(name) {
                Some(i) if i < frozen => assert_eq!(t, b, "frozen={frozen}: {name} changed"),
                _ => assert_eq!(t, p, "frozen={frozen}: {name} differs from the plain step"),
            }
        }
    }
}

#[test]
fn frozen_beyond_the_blocks_is_an_error_and_changes_nothing() {
    let mut m = model(3);
    let before = params(&m);
    let (x, y) = batch(30, 8);
    match m.fine_tune_step(x.view(), &y, &HYPER, 4) {
        Err(Error::Config(msg)) => assert!(msg.contains("0..=3"), "{msg}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
    assert_eq!(params(&m), before);
}
