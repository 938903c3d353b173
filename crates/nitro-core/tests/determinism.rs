//! Same seed → same bits, on 1 and 2 threads (algorithm.md introduction, §10).

mod common;

use ndarray::Array2;
use nitro_core::{Mlp, MlpConfig};

fn train_20_steps(threads: usize) -> Vec<Array2<i32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| common::train_mlp(7, 99, 20))
}

#[test]
fn one_and_two_threads_give_identical_weights() {
    let a = train_20_steps(1);
    let b = train_20_steps(2);
    assert_eq!(a, b);
    // And training changed something (the comparison is not vacuous).
    let fresh = {
        let mut cfg = MlpConfig::new(784, &[200, 100, 50], 10);
        cfg.seed = 7;
        Mlp::new(cfg)
            .unwrap()
            .linears()
            .iter()
            .map(|l| l.weight.clone())
            .collect::<Vec<_>>()
    };
    for (trained, init) in a.iter().zip(&fresh) {
        assert_ne!(trained, init);
    }
}

#[test]
fn different_seeds_differ() {
    let w = |seed| {
        let mut c = MlpConfig::new(20, &[8], 3);
        c.seed = seed;
        Mlp::new(c).unwrap().blocks[0].fwd.weight.clone()
    };
    assert_eq!(w(1), w(1));
    assert_ne!(w(1), w(2));
}
