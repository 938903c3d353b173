//! Same seed → same bits, on 1 and 2 threads (SPEC preamble, §10).

use ndarray::Array2;
use nitro_core::rng::Pcg32;
use nitro_core::{Hyper, Mlp, MlpConfig};

fn train_20_steps(threads: usize) -> Vec<Array2<i32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut cfg = MlpConfig::new(784, &[200, 100, 50], 10);
        cfg.seed = 7;
        cfg.dropout_pct = 10;
        let mut model = Mlp::new(cfg).unwrap();
        let hyper = Hyper {
            fwd_decay_inv: 10_000,
            subnet_decay_inv: 8_000,
            ..Hyper::default()
        };
        let mut r = Pcg32::new(99, 0);
        for _ in 0..20 {
            let x = Array2::from_shape_fn((64, 784), |_| r.symmetric(127) as i8);
            let y: Vec<usize> = (0..64).map(|_| r.below(10) as usize).collect();
            model.train_step(x.view(), &y, &hyper).unwrap();
        }
        model.linears().iter().map(|l| l.weight.clone()).collect()
    })
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
