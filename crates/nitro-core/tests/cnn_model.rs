//! algorithm.md §4.2/§4.3/§7/§8 for CNNs: a VGG8B step updates every layer and is thread-count
//! independent; save/load round trips; a small CNN learns Fashion-MNIST.

mod common;

use ndarray::{Array2, Array4};
use nitro_core::io::{cnn_from_bytes, cnn_to_bytes, Model};
use nitro_core::rng::Pcg32;
use nitro_core::train::{fit, Control, Sets};
use nitro_core::{Cnn, CnnConfig, CnnPreset, Feature};
use nitro_core::{Compat, Dataset, Hyper, Mlp, MlpConfig, Normalization, TrainConfig};

fn random_images(n: usize, chw: (usize, usize, usize), seed: u64) -> (Array4<i8>, Vec<usize>) {
    let mut r = Pcg32::new(seed, 1);
    let x = Array4::from_shape_fn((n, chw.0, chw.1, chw.2), |_| r.symmetric(127) as i8);
    let y = (0..n).map(|_| r.below(10) as usize).collect();
    (x, y)
}

fn all_weights(m: &Cnn) -> Vec<(String, Vec<i32>)> {
    let mut v: Vec<(String, Vec<i32>)> = m
        .convs()
        .iter()
        .map(|c| (c.name.clone(), c.weight.iter().copied().collect()))
        .collect();
    v.extend(
        m.linears()
            .iter()
            .map(|l| (l.name.clone(), l.weight.iter().copied().collect())),
    );
    v
}

#[test]
fn vgg8b_step_updates_every_layer_and_is_thread_independent() {
    let spec = CnnPreset::Vgg8b.spec("fashion-mnist").unwrap();
    assert_eq!(spec.config.dropout_pct, 10);
    let model = Cnn::new(spec.config.clone()).unwrap();
    // algorithm.md §7: the classifier's dropout also sits just before the last feature layer.
    let eff = spec.config.effective_features();
    assert_eq!(eff[eff.len() - 2], Feature::Dropout(10));
    assert_eq!(model.linears().last().unwrap().name, "linear_12");
    let (x, y) = random_images(3, (1, 28, 28), 3);
    // amp 1 so that even the 1-channel first conv moves on a batch of 3 random images
    // (with the paper's 512·640 its gradient rounds to a zero step).
    let hyper = Hyper {
        compat: Compat::Reference,
        lr_amp_factor: 1,
        ..spec.hyper
    };
    let before = all_weights(&model);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut m = model.clone();
        let t = std::time::Instant::now();
        let stats = pool.install(|| m.train_step(x.view(), &y, &hyper)).unwrap();
        eprintln!(
            "VGG8B step, batch 3, {threads} thread(s): {:?}",
            t.elapsed()
        );
        assert_eq!(stats.blocks.len(), 7);
        (all_weights(&m), stats)
    };
    let (one, s1) = run(1);
    let (two, s2) = run(2);
    assert_eq!(s1, s2);
    for ((name, a), (_, b)) in one.iter().zip(&two) {
        assert!(a == b, "{name} differs between 1 and 2 threads");
    }
    for ((name, old), (_, new)) in before.iter().zip(&one) {
        assert!(old != new, "{name} was not updated");
    }
}

fn small_config() -> CnnConfig {
    let mut cfg = common::small_cnn(28, Feature::AvgPool(2), 32, 9);
    cfg.decoder_dim = 784;
    cfg
}

#[test]
fn cnn_save_load_round_trip_is_bit_identical() {
    let mut cfg = small_config();
    cfg.bias = true;
    cfg.dropout_pct = 20;
    cfg.head_pool = nitro_core::layers::PoolKind::Avg;
    cfg.conv_amp_adjust = true;
    let mut m = Cnn::new(cfg).unwrap();
    let (x, y) = random_images(4, (1, 28, 28), 5);
    let hyper = Hyper::default();
    m.train_step(x.view(), &y, &hyper).unwrap();
    m.hyper = Some(hyper);
    m.normalization = Some(Normalization {
        mean: vec![-54],
        mad: vec![82],
    });
    let bytes = cnn_to_bytes(&m).unwrap();
    let back = cnn_from_bytes(&bytes).unwrap();
    assert_eq!(back.config, m.config);
    assert_eq!(all_weights(&back), all_weights(&m));
    let biases = |m: &Cnn| -> Vec<Option<Vec<i32>>> {
        m.convs()
            .iter()
            .map(|c| c.bias.as_ref().map(|b| b.to_vec()))
            .chain(
                m.linears()
                    .iter()
                    .map(|l| l.bias.as_ref().map(|b| b.to_vec())),
            )
            .collect()
    };
    assert_eq!(biases(&back), biases(&m));
    assert!(biases(&m).iter().all(Option::is_some));
    assert_eq!(back.hyper, m.hyper);
    assert_eq!(back.normalization, m.normalization);
    let flat = x.clone().into_shape_with_order((4, 784)).unwrap();
    assert_eq!(
        back.predict_logits(x.view()).unwrap(),
        m.predict_logits(x.view()).unwrap()
    );
    assert_eq!(
        back.predict(flat.view()).unwrap(),
        m.predict(flat.view()).unwrap()
    );
    // Re-serialising gives the same tensors (metadata order may differ).
    assert_eq!(
        all_weights(&cnn_from_bytes(&cnn_to_bytes(&back).unwrap()).unwrap()),
        all_weights(&m)
    );
    // The Model enum dispatches on the kind, for both kinds.
    assert!(matches!(Model::from_bytes(&bytes).unwrap(), Model::Cnn(_)));
    let mlp = Mlp::new(MlpConfig::new(16, &[8], 3)).unwrap();
    let mb = Model::Mlp(mlp).to_bytes().unwrap();
    assert!(matches!(Model::from_bytes(&mb).unwrap(), Model::Mlp(_)));
    assert!(
        nitro_core::io::from_bytes(&bytes).is_err(),
        "MLP loader must refuse a CNN"
    );
    // Truncated or corrupted files are errors, never panics.
    for cut in [0, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(cnn_from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        assert!(Model::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut r = Pcg32::new(1, 1);
    for _ in 0..200 {
        let mut b = bytes.clone();
        let i = r.below(b.len().min(4000) as u32) as usize;
        b[i] = r.next_u32() as u8;
        let _ = Model::from_bytes(&b); // must not panic
    }
    // A hostile architecture (huge layer) is refused before allocating.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let evil = text.replacen("[\\\"conv\\\",8,", "[\\\"conv\\\",800000000,", 1);
    assert_ne!(evil, text, "pattern must be present in the header");
    assert!(cnn_from_bytes(evil.as_bytes()).is_err());
}

/// A small CNN on a Fashion-MNIST subset learns well above chance in about a minute.
#[test]
fn small_cnn_learns_fashion_mnist() {
    let Some(dir) = common::fmnist_dir() else {
        return;
    };
    let d = nitro_core::data::idx::load_mnist_like(&dir).unwrap();
    let (ntrain, ntest) = (9600, 1000);
    let tx = d.train_x.slice(ndarray::s![..ntrain, ..]).to_owned();
    let norm = Normalization::fit(tx.view(), 1).unwrap();
    let train = Dataset::new(
        norm.apply(tx.view()).unwrap(),
        d.train_y[..ntrain].to_vec(),
        (1, 28, 28),
    )
    .unwrap();
    let ex = d.test_x.slice(ndarray::s![..ntest, ..]).to_owned();
    let test = Dataset::new(
        norm.apply(ex.view()).unwrap(),
        d.test_y[..ntest].to_vec(),
        (1, 28, 28),
    )
    .unwrap();
    let mut m = Cnn::new(small_config()).unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 32,
        hyper: Hyper {
            fwd_decay_inv: 10_000,
            subnet_decay_inv: 3_000,
            ..Hyper::default()
        },
        ..TrainConfig::default()
    };
    let t0 = std::time::Instant::now();
    let h = fit(
        &mut m,
        &Sets::new(&train, Some(&test)),
        &cfg,
        &mut |_| Control::Continue,
        &mut |end| {
            let e = end.metrics;
            eprintln!(
                "epoch {}: train {:?} test {:?} ({} ms)",
                e.epoch, e.train, e.test, e.train_millis
            );
            Ok(Control::Continue)
        },
    )
    .unwrap();
    let acc = h.best_test().unwrap();
    eprintln!(
        "small CNN: test accuracy {} bp in {:?}",
        acc.basis_points(),
        t0.elapsed()
    );
    assert!(acc.correct * 100 > acc.total * 60, "accuracy {acc:?}");
    let _: Array2<i8> = train.x;
}

/// Seconds per VGG8B training step at batch 64 (1×28×28); slow, run on demand:
/// `cargo test --release -p nitro-core --test cnn_model -- --ignored --nocapture`.
#[test]
#[ignore]
fn vgg8b_step_time_batch_64() {
    let spec = CnnPreset::Vgg8b.spec("fashion-mnist").unwrap();
    let mut m = Cnn::new(spec.config).unwrap();
    let (x, y) = random_images(64, (1, 28, 28), 11);
    let t = std::time::Instant::now();
    m.train_step(x.view(), &y, &spec.hyper).unwrap();
    let step = t.elapsed();
    let t = std::time::Instant::now();
    m.predict_logits(x.view()).unwrap();
    eprintln!(
        "VGG8B batch 64: {step:?} per training step; inference {:?} per 64 images",
        t.elapsed()
    );
}
