//! algorithm.md §11: the MLP2 golden fixture — 100 steps of the original implementation, reproduced
//! bit for bit at every checkpoint.

mod common;

use ndarray::{s, Array1, Array2};
use nitro_core::{Compat, Hyper, Mlp, MlpConfig};

const LAYERS: [&str; 7] = [
    "linear_encoder_00",
    "linear_pred_00",
    "linear_encoder_01",
    "linear_pred_01",
    "linear_encoder_02",
    "linear_pred_02",
    "linear_03",
];

fn run(compat: Compat) {
    let mut npz = common::open_npz("mlp2_fmnist_100.npz");
    let x: Array2<i8> = npz.by_name("x").unwrap();
    let y: Array1<i64> = npz.by_name("y").unwrap();
    let bs = 64;
    let mut cfg = MlpConfig::new(784, &[200, 100, 50], 10);
    cfg.seed = 12345; // weights are replaced below
    let mut model = Mlp::new(cfg).unwrap();
    for name in LAYERS {
        let w = common::i32_2d(&mut npz, &format!("init/{name}"));
        let l = model
            .linear_mut(name)
            .unwrap_or_else(|| panic!("no layer {name}"));
        assert_eq!(l.weight.dim(), w.dim(), "{name}");
        l.weight = w;
    }
    let hyper = Hyper {
        lr_inv: 512,
        lr_amp_factor: 640,
        fwd_decay_inv: 10_000,
        subnet_decay_inv: 8_000,
        compat,
    };
    for step in 1..=100usize {
        let rows = s![(step - 1) * bs..step * bs, ..];
        let labels: Vec<usize> = y
            .slice(s![(step - 1) * bs..step * bs])
            .iter()
            .map(|&v| v as usize)
            .collect();
        model.train_step(x.slice(rows), &labels, &hyper).unwrap();
        if [1, 10, 100].contains(&step) {
            for name in LAYERS {
                let want = common::i32_2d(&mut npz, &format!("after_{step}/{name}"));
                let got = &model.linear_mut(name).unwrap().weight;
                let diff = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
                assert_eq!(
                    diff, 0,
                    "{name} differs in {diff} entries after step {step} ({compat:?})"
                );
            }
        }
    }
}

#[test]
fn mlp2_golden_100_steps_exact_mode() {
    run(Compat::Exact);
}

#[test]
fn mlp2_golden_100_steps_reference_mode() {
    run(Compat::Reference);
}
