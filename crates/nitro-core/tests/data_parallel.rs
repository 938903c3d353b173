//! Data-parallel training is exact (`model::gradients`): the gradient sums of the shares of a
//! batch, computed on separate replicas, added up in row order and applied once, give the
//! parameters, statistics and dropout generator states of `train_step` on the whole batch —
//! for every split point, several steps in a row, MLP and CNN with biases and dropout (in the
//! CNN's feature extractor too).

use ndarray::{s, Array2, Array4};
mod common;
use common::params;
use nitro_core::rng::Pcg32;
use nitro_core::{
    Cnn, CnnConfig, Compat, Error, Feature, Gradients, Hyper, Mlp, MlpConfig, Share, StepStats,
};

/// Large steps (`lr_inv` small) so that most gradients change weights.
fn hyper() -> Hyper {
    Hyper {
        lr_inv: 8,
        lr_amp_factor: 64,
        fwd_decay_inv: 500,
        subnet_decay_inv: 700,
        compat: Compat::Exact,
    }
}

fn batch(n: usize, features: usize, classes: usize, seed: u64) -> (Array2<i8>, Vec<usize>) {
    let mut r = Pcg32::new(seed, 1);
    let x = Array2::from_shape_fn((n, features), |_| r.symmetric(127) as i8);
    let y = (0..n).map(|_| r.below(classes as u32) as usize).collect();
    (x, y)
}

fn mlp() -> Mlp {
    let mut c = MlpConfig::new(20, &[16, 12], 4);
    c.bias = true;
    c.dropout_pct = 30;
    c.seed = 5;
    Mlp::new(c).unwrap()
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
        &[
            conv(4),
            Feature::Dropout(20),
            Feature::MaxPool(2),
            conv(6),
            Feature::MaxPool(2),
        ],
        &[10],
        3,
    );
    c.bias = true;
    c.decoder_dim = 64; // pooled heads: the sparse path
    c.dropout_pct = 20;
    c.seed = 3;
    Cnn::new(c).unwrap()
}

/// A model the test drives through both paths.
trait Replica: Clone + nitro_core::NamedParams {
    fn step(&mut self, x: &Array2<i8>, y: &[usize]) -> nitro_core::Result<StepStats>;
    fn share(&mut self, x: &Array2<i8>, y: &[usize], share: Share)
        -> nitro_core::Result<Gradients>;
    fn apply(&mut self, g: Gradients) -> nitro_core::Result<StepStats>;
    fn rngs(&self) -> Vec<Pcg32>;
}

impl Replica for Mlp {
    fn step(&mut self, x: &Array2<i8>, y: &[usize]) -> nitro_core::Result<StepStats> {
        self.train_step(x.view(), y, &hyper())
    }
    fn share(
        &mut self,
        x: &Array2<i8>,
        y: &[usize],
        share: Share,
    ) -> nitro_core::Result<Gradients> {
        self.gradients(x.view(), y, &hyper(), share)
    }
    fn apply(&mut self, g: Gradients) -> nitro_core::Result<StepStats> {
        self.apply_gradients(g, &hyper())
    }
    fn rngs(&self) -> Vec<Pcg32> {
        self.dropout_rngs()
    }
}

fn images(x: &Array2<i8>) -> Array4<i8> {
    x.to_owned()
        .into_shape_with_order((x.nrows(), 1, 8, 8))
        .unwrap()
}

impl Replica for Cnn {
    fn step(&mut self, x: &Array2<i8>, y: &[usize]) -> nitro_core::Result<StepStats> {
        self.train_step(images(x).view(), y, &hyper())
    }
    fn share(
        &mut self,
        x: &Array2<i8>,
        y: &[usize],
        share: Share,
    ) -> nitro_core::Result<Gradients> {
        self.gradients(images(x).view(), y, &hyper(), share)
    }
    fn apply(&mut self, g: Gradients) -> nitro_core::Result<StepStats> {
        self.apply_gradients(g, &hyper())
    }
    fn rngs(&self) -> Vec<Pcg32> {
        self.dropout_rngs()
    }
}

/// One step of `replicas` (each computing one share, cut at `cuts`) applied to `driver`,
/// against `train_step` of `plain`; then every replica applies the total too.
fn step_split<M: Replica>(
    plain: &mut M,
    driver: &mut M,
    replicas: &mut [M],
    cuts: &[usize],
    x: &Array2<i8>,
    y: &[usize],
) {
    let n = y.len();
    let want = plain.step(x, y).unwrap();
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(n);
    let mut total: Option<Gradients> = None;
    for (r, w) in replicas.iter_mut().zip(bounds.windows(2)) {
        let (a, b) = (w[0], w[1]);
        let share = Share {
            start: a,
            rows: b - a,
            total: n,
        };
        let g = r
            .share(&x.slice(s![a..b, ..]).to_owned(), &y[a..b], share)
            .unwrap();
        // Through the wire format, as between processes.
        let g = Gradients::from_bytes(&g.to_bytes()).unwrap();
        total = Some(match total {
            None => g,
            Some(t) => t.checked_add(&g).unwrap(),
        });
    }
    let total = total.unwrap();
    for r in replicas.iter_mut() {
        r.apply(total.clone()).unwrap();
    }
    let got = driver.apply(total).unwrap();
    assert_eq!(got, want, "statistics, cuts {cuts:?}");
    assert_eq!(params(driver), params(plain), "parameters, cuts {cuts:?}");
    assert_eq!(
        driver.rngs(),
        plain.rngs(),
        "dropout generators, cuts {cuts:?}"
    );
    for r in replicas.iter() {
        assert_eq!(params(r), params(plain));
        assert_eq!(r.rngs(), plain.rngs());
    }
}

fn every_split_of<M: Replica>(model: M, features: usize, classes: usize) {
    let n = 7;
    for cut in 1..n {
        let (mut plain, mut driver) = (model.clone(), model.clone());
        let mut replicas = vec![model.clone(), model.clone()];
        for step in 0..3 {
            let (x, y) = batch(n, features, classes, 10 * cut as u64 + step);
            step_split(&mut plain, &mut driver, &mut replicas, &[cut], &x, &y);
        }
    }
    // Three and four shares, uneven, for a few steps.
    for cuts in [&[1usize, 5][..], &[2, 3, 6][..], &[3, 4][..]] {
        let (mut plain, mut driver) = (model.clone(), model.clone());
        let mut replicas = vec![model.clone(); cuts.len() + 1];
        for step in 0..3 {
            let (x, y) = batch(n, features, classes, 1000 + step);
            step_split(&mut plain, &mut driver, &mut replicas, cuts, &x, &y);
        }
    }
}

#[test]
fn mlp_shares_add_up_to_the_step_at_every_split() {
    let m = mlp();
    assert_eq!(m.dropout_rngs().len(), 2);
    every_split_of(m, 20, 4);
}

#[test]
fn cnn_shares_add_up_to_the_step_at_every_split() {
    let m = cnn();
    // The feature Dropout, the one the classifier's rate puts before the last feature entry
    // (algorithm.md §7), and the classifier block's.
    assert_eq!(m.dropout_rngs().len(), 3);
    every_split_of(m, 64, 3);
}

#[test]
fn the_whole_batch_as_one_share_is_the_step() {
    let (x, y) = batch(9, 20, 4, 4);
    let (mut a, mut b) = (mlp(), mlp());
    let want = a.train_step(x.view(), &y, &hyper()).unwrap();
    let g = b
        .gradients(x.view(), &y, &hyper(), Share::whole(9))
        .unwrap();
    // Computing changes no parameter.
    assert_eq!(params(&b), params(&mlp()));
    assert_eq!(g.num_sums(), mlp().num_parameters());
    assert_eq!(b.apply_gradients(g, &hyper()).unwrap(), want);
    assert_eq!(params(&a), params(&b));
}

#[test]
fn partial_foreign_and_reference_gradients_are_refused() {
    let (x, y) = batch(6, 20, 4, 2);
    let mut m = mlp();
    let before = params(&m);
    let share = Share {
        start: 0,
        rows: 3,
        total: 6,
    };
    let part = m
        .gradients(x.slice(s![..3, ..]), &y[..3], &hyper(), share)
        .unwrap();
    let e = m
        .clone()
        .apply_gradients(part.clone(), &hyper())
        .unwrap_err();
    assert!(
        matches!(e, Error::Shape(ref s) if s.contains("add every share")),
        "{e}"
    );
    // A share that does not describe the rows given.
    let bad = Share {
        start: 4,
        rows: 3,
        total: 6,
    };
    assert!(m
        .gradients(x.slice(s![..3, ..]), &y[..3], &hyper(), bad)
        .is_err());
    // Another model's sums.
    let mut other = Mlp::new(MlpConfig::new(20, &[16], 4)).unwrap();
    let g = other
        .gradients(x.view(), &y, &hyper(), Share::whole(6))
        .unwrap();
    let mut mm = m.clone();
    assert!(mm.apply_gradients(g, &hyper()).is_err());
    assert_eq!(params(&mm), before);
    // The CNN's reference mode updates the classifier twice per step: refused by name.
    let mut c = cnn();
    let (xc, yc) = batch(4, 64, 3, 1);
    let h = Hyper {
        compat: Compat::Reference,
        ..hyper()
    };
    let e = c
        .gradients(images(&xc).view(), &yc, &h, Share::whole(4))
        .unwrap_err();
    assert!(format!("{e}").contains("compat=\"exact\""), "{e}");
}

#[test]
fn an_update_leaving_i32_changes_nothing() {
    let (x, y) = batch(6, 20, 4, 3);
    let mut m = mlp();
    let mut g = m
        .gradients(x.view(), &y, &hyper(), Share::whole(6))
        .unwrap();
    // A gradient sum whose update leaves i32 in the output layer.
    let last = g.layers.last_mut().unwrap();
    last.weight[0] = i64::MAX / 2;
    let before = (params(&m), m.dropout_rngs());
    let e = m.apply_gradients(g, &hyper()).unwrap_err();
    assert!(matches!(e, Error::Overflow { .. }), "{e}");
    assert_eq!((params(&m), m.dropout_rngs()), before);
}
