//! Runs stopped after an epoch or a batch, saved as checkpoints and resumed, give the same bits
//! as the uninterrupted run (MLP with dropout; CNN with augmentation and dropout; 1 and 2
//! threads); mismatched or corrupt checkpoints are clear errors that leave the old file intact.

mod common;

use ndarray::Array2;
use nitro_core::io::{Checkpoint, Model};
use nitro_core::rng::Pcg32;
use nitro_core::train::{fit, fit_from, fit_held, Control, EpochEnd, Progress, RunState, Sets};
use nitro_core::{Augment, Cnn, Dataset, Error, Feature, Mlp, MlpConfig, Plateau, Split};
use nitro_core::{History, TrainConfig};

fn random_set(n: usize, chw: (usize, usize, usize), classes: usize, seed: u64) -> Dataset {
    let mut r = Pcg32::new(seed, 77);
    let len = chw.0 * chw.1 * chw.2;
    // Labels follow the first pixel's sign so that the models learn something.
    let x = Array2::from_shape_fn((n, len), |_| r.symmetric(127) as i8);
    let y = (0..n)
        .map(|i| (x[[i, 0]] as i32 + 128) as usize * classes / 256)
        .collect();
    Dataset::new(x, y, chw).unwrap()
}

fn mlp() -> Model {
    let mut c = MlpConfig::new(64, &[48, 32], 4);
    c.dropout_pct = 20;
    c.seed = 3;
    Model::Mlp(Mlp::new(c).unwrap())
}

fn cnn() -> Model {
    let conv = |f| Feature::Conv {
        filters: f,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let mut c = nitro_core::CnnConfig::new(
        (1, 8, 8),
        &[conv(4), Feature::MaxPool(2), conv(8)],
        &[24],
        4,
    );
    c.dropout_pct = 10;
    c.decoder_dim = 64;
    c.seed = 5;
    Model::Cnn(Cnn::new(c).unwrap())
}

fn config(epochs: u32) -> TrainConfig {
    // A plateau that fires early, so that its counters matter within a few epochs.
    let mut plateau = Plateau::paper();
    plateau.start_epoch = 1;
    plateau.patience = 1;
    TrainConfig {
        epochs,
        batch_size: 16,
        augment: Some(Augment { pad: 1, flip: true }),
        validation: Some(Split {
            permille: 200,
            seed: 9,
        }),
        plateau: Some(plateau),
        ..TrainConfig::default()
    }
}

fn go(_: &Progress) -> Control {
    Control::Continue
}

fn weights(m: &Model) -> Vec<u8> {
    // The model file holds every parameter; equal bytes mean equal models.
    m.to_bytes().unwrap()
}

/// The whole run, and the checkpoint bytes written after each epoch.
fn uninterrupted(
    make: fn() -> Model,
    sets: &Sets<'_>,
    cfg: &TrainConfig,
) -> (Model, History, Vec<Vec<u8>>) {
    let mut m = make();
    let mut saved = Vec::new();
    let h = fit(&mut m, sets, cfg, &mut go, &mut |e: &EpochEnd<
        '_,
        Model,
    >| {
        saved.push(Checkpoint::to_bytes(e.model, e.state)?);
        Ok(Control::Continue)
    })
    .unwrap();
    (m, h, saved)
}

fn resume_from(bytes: &[u8], sets: &Sets<'_>, cfg: &TrainConfig) -> (Model, History) {
    let mut ck = Checkpoint::from_bytes(bytes).unwrap();
    let h = fit_from(
        &mut ck.model,
        sets,
        cfg,
        &mut ck.state,
        &mut go,
        &mut |_| Ok(Control::Continue),
    )
    .unwrap();
    (ck.model, h)
}

fn in_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn check_resume_equality(make: fn() -> Model, chw: (usize, usize, usize), rows: usize) {
    let train = random_set(rows, chw, 4, 1);
    let test = random_set(48, chw, 4, 2);
    let sets = Sets::new(&train, Some(&test));
    let n = 4;
    let cfg = config(n);
    let (full, history, saved) = in_threads(2, || uninterrupted(make, &sets, &cfg));
    assert_eq!(history.epochs.len(), n as usize);
    assert!(history
        .epochs
        .iter()
        .all(|e| e.val.is_some() && e.test.is_some()));
    // The model changes from epoch to epoch (the comparison below is not vacuous).
    assert_ne!(saved[0], saved[1]);
    for k in [1, n - 1] {
        for threads in [1, 2] {
            let (m, h) = in_threads(threads, || resume_from(&saved[k as usize - 1], &sets, &cfg));
            assert!(weights(&m) == weights(&full), "k = {k}, {threads} threads");
            let strip = |h: &History| -> Vec<_> {
                h.epochs
                    .iter()
                    .map(|e| (e.epoch, e.train, e.train_loss, e.val, e.test, e.lr_inv))
                    .collect()
            };
            assert_eq!(strip(&h), strip(&history), "k = {k}, {threads} threads");
            assert_eq!(m.dropout_rngs(), full.dropout_rngs());
        }
    }
}

#[test]
fn mlp_with_dropout_resumes_bit_for_bit() {
    check_resume_equality(mlp, (1, 8, 8), 160);
}

#[test]
fn cnn_with_augmentation_and_dropout_resumes_bit_for_bit() {
    check_resume_equality(cnn, (1, 8, 8), 96);
}

#[test]
fn a_run_stopped_inside_an_epoch_resumes_from_the_next_batch() {
    let train = random_set(160, (1, 8, 8), 4, 1);
    let sets = Sets::new(&train, None);
    let cfg = config(3);
    let (full, history, _) = uninterrupted(mlp, &sets, &cfg);
    let mut m = mlp();
    let mut state = RunState::new(&cfg, &sets).unwrap();
    let stop_at = |p: &Progress| {
        if p.epoch == 2 && p.batch == 3 {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let h = fit_from(
        &mut m,
        &sets,
        &cfg,
        &mut state,
        &mut { stop_at },
        &mut |_| Ok(Control::Continue),
    )
    .unwrap();
    assert!(h.cancelled);
    assert_eq!((state.epoch, state.batch), (1, 3));
    let bytes = Checkpoint::to_bytes(&m, &state).unwrap();
    let (m, h) = resume_from(&bytes, &sets, &cfg);
    assert!(weights(&m) == weights(&full), "models differ");
    assert_eq!(h.epochs.len(), 3);
    assert_eq!(h.epochs[1].train, history.epochs[1].train);
    assert_eq!(h.epochs[2].val, history.epochs[2].val);
}

#[test]
fn a_finished_run_extends_to_more_epochs() {
    let train = random_set(160, (1, 8, 8), 4, 1);
    let sets = Sets::new(&train, None);
    let (full, _, _) = uninterrupted(mlp, &sets, &config(3));
    let (_, _, saved) = uninterrupted(mlp, &sets, &config(2));
    let (m, h) = resume_from(&saved[1], &sets, &config(3));
    assert!(weights(&m) == weights(&full), "models differ");
    assert_eq!(h.epochs.len(), 3);
}

/// A run object holding its sets (the Python binding's `Run`) trains one epoch per
/// `fit_held` call, without fingerprinting the sets again: the same bits as one call for all
/// epochs; other settings are still refused.
#[test]
fn a_held_run_trained_an_epoch_per_call_is_the_whole_run() {
    let train = random_set(160, (1, 8, 8), 4, 1);
    let sets = Sets::new(&train, None);
    let (full, history, _) = uninterrupted(mlp, &sets, &config(3));
    let mut m = mlp();
    let mut state = RunState::new(&config(3), &sets).unwrap();
    let mut last = None;
    for epochs in 1..=3 {
        let h = fit_held(
            &mut m,
            &sets,
            &config(epochs),
            &mut state,
            &mut go,
            &mut |_| Ok(Control::Continue),
        )
        .unwrap();
        last = Some(h);
    }
    assert!(weights(&m) == weights(&full), "models differ");
    // The metrics but for the wall-clock times.
    let untimed = |h: &History| {
        let mut e = h.epochs.clone();
        for m in &mut e {
            (m.train_millis, m.eval_millis) = (0, 0);
        }
        e
    };
    assert_eq!(untimed(&last.unwrap()), untimed(&history));
    let mut changed = config(4);
    changed.seed = 1;
    let e = fit_held(&mut m, &sets, &changed, &mut state, &mut go, &mut |_| {
        Ok(Control::Continue)
    })
    .unwrap_err();
    assert!(e.to_string().contains("seed"), "{e}");
}

#[test]
fn resuming_with_other_data_or_settings_is_a_clear_error() {
    let train = random_set(160, (1, 8, 8), 4, 1);
    let sets = Sets::new(&train, None);
    let cfg = config(3);
    let (_, _, saved) = uninterrupted(mlp, &sets, &config(1));
    let mut ck = Checkpoint::from_bytes(&saved[0]).unwrap();
    let mut other = train.clone();
    other.y[0] = (other.y[0] + 1) % 4;
    let e = fit_from(
        &mut ck.model,
        &Sets::new(&other, None),
        &cfg,
        &mut ck.state,
        &mut go,
        &mut |_| Ok(Control::Continue),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert!(e.to_string().contains("training set"), "{e}");
    let test = random_set(16, (1, 8, 8), 4, 4);
    let e = fit_from(
        &mut ck.model,
        &Sets::new(&train, Some(&test)),
        &cfg,
        &mut ck.state,
        &mut go,
        &mut |_| Ok(Control::Continue),
    )
    .unwrap_err();
    assert!(e.to_string().contains("test set"), "{e}");
    let mut changed = cfg.clone();
    changed.seed = 1;
    changed.batch_size = 32;
    let e = fit_from(
        &mut ck.model,
        &sets,
        &changed,
        &mut ck.state,
        &mut go,
        &mut |_| Ok(Control::Continue),
    )
    .unwrap_err();
    assert!(e.to_string().contains("batch_size, seed"), "{e}");
    // Nothing was trained by the refused calls.
    assert!(weights(&ck.model) == weights(&Checkpoint::from_bytes(&saved[0]).unwrap().model));
}

#[test]
fn corrupt_checkpoints_are_errors_never_panics() {
    let train = random_set(160, (1, 8, 8), 4, 1);
    let sets = Sets::new(&train, None);
    let (_, _, saved) = uninterrupted(mlp, &sets, &config(1));
    let good = &saved[0];
    // A plain model file is not a checkpoint.
    let plain = mlp().to_bytes().unwrap();
    let e = Checkpoint::from_bytes(&plain).unwrap_err();
    assert!(e.to_string().contains("not a checkpoint"), "{e}");
    // But a checkpoint is a model file.
    assert!(Model::from_bytes(good).is_ok());
    // Truncations and flipped bytes anywhere: an error or (a flipped weight byte) a checkpoint,
    // never a panic.
    for cut in [0, 7, 8, 100, good.len() / 2, good.len() - 1] {
        assert!(Checkpoint::from_bytes(&good[..cut]).is_err(), "cut {cut}");
    }
    let mut r = Pcg32::new(1, 1);
    for _ in 0..300 {
        let mut b = good.clone();
        let i = r.below(b.len() as u32) as usize;
        b[i] ^= 1 << r.below(8);
        let _ = Checkpoint::from_bytes(&b);
    }
    // Edited run state (same-length edits keep the container valid): refused with the key.
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    for (from, to, key) in [
        (
            "\\\"early_stopped\\\":false",
            "\\\"early_stopped\\\":12345",
            "early_stopped",
        ),
        ("\\\"version\\\":1", "\\\"version\\\":7", "version"),
    ] {
        let at = find(good, from.as_bytes()).expect(from);
        assert_eq!(from.len(), to.len());
        let mut edited = good.clone();
        edited[at..at + to.len()].copy_from_slice(to.as_bytes());
        let e = Checkpoint::from_bytes(&edited).unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }
}

#[test]
fn a_failed_checkpoint_write_leaves_the_old_file() {
    let dir = std::env::temp_dir().join(format!("nitrod-ck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt");
    let train = random_set(160, (1, 8, 8), 4, 1);
    let sets = Sets::new(&train, None);
    let (m, _, saved) = uninterrupted(mlp, &sets, &config(2));
    std::fs::write(&path, &saved[0]).unwrap();
    // The temporary file's name is taken by a directory: the write must fail cleanly.
    let tmp = nitro_core::io::temp_path(&path).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let state = Checkpoint::from_bytes(&saved[1]).unwrap().state;
    let e = Checkpoint::save_file(&path, &m, &state).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), saved[0]);
    std::fs::remove_dir(&tmp).unwrap();
    Checkpoint::save_file(&path, &m, &state).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), saved[1]);
    let back = Checkpoint::load_file(&path).unwrap();
    assert_eq!(back.state, state);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn selection_watches_validation_unless_the_paper_protocol_is_chosen() {
    let train = random_set(160, (1, 8, 8), 4, 1);
    let test = random_set(48, (1, 8, 8), 4, 2);
    let sets = Sets::new(&train, Some(&test));
    let mut cfg = config(2);
    cfg.validation = None;
    let mut m = mlp();
    let e = fit(&mut m, &sets, &cfg, &mut go, &mut |_| Ok(Control::Continue)).unwrap_err();
    assert!(e.to_string().contains("paper protocol"), "{e}");
    cfg.select_on_test = true;
    let h = fit(&mut m, &sets, &cfg, &mut go, &mut |_| Ok(Control::Continue)).unwrap();
    assert!(h.epochs.iter().all(|e| e.val.is_none() && e.test.is_some()));
    // With a split, the validation rows are held out of training: fewer training samples.
    let cfg = config(1);
    let h = fit(&mut mlp(), &sets, &cfg, &mut go, &mut |_| {
        Ok(Control::Continue)
    })
    .unwrap();
    let e = &h.epochs[0];
    assert_eq!(e.val.unwrap().total, 32);
    assert_eq!(e.train.total, 128);
    assert_eq!(h.best().unwrap().epoch, 1);
    // An explicit validation set and a split at once are refused.
    let both = Sets {
        val: Some(&test),
        ..sets
    };
    assert!(fit(&mut mlp(), &both, &cfg, &mut go, &mut |_| Ok(
        Control::Continue
    ))
    .is_err());
}
