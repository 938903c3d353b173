//! The epoch loop: shuffling, batching, augmentation, per-epoch metrics, schedules, plateau and
//! early stopping (algorithm.md §2, §5, §7), with a per-batch progress callback that can cancel,
//! and a per-epoch callback that sees the model and the run's state (to save a checkpoint). A run
//! continues from its saved [`RunState`] bit for bit (`fit_from`).

mod parallel;
mod run;

pub use parallel::DataParallel;
pub use run::{DataPrint, DataPrints, RunState};

use crate::data::{Augment, Dataset, Split};
use crate::error::{Error, Result};
use crate::loss::{loss_and_correct, one_hot};
use crate::metrics::{Fraction, StepStats};
use crate::model::Cnn;
use crate::model::Mlp;
use crate::optim::{Hyper, Plateau, PlateauAction, Schedule};
use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{s, Array2, ArrayView2};

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainConfig {
    /// Epochs to run (early stopping may end sooner).
    pub epochs: u32,
    /// Samples per batch; the last incomplete batch is dropped (algorithm.md §2).
    pub batch_size: usize,
    /// IntegerSGD settings; `lr_inv` is the starting value.
    pub hyper: Hyper,
    /// Schedule of `lr_inv` between epochs.
    pub schedule: Schedule,
    /// Plateau rule and early stopping (the paper's protocol), watching the validation
    /// accuracy (the test accuracy with `select_on_test`).
    pub plateau: Option<Plateau>,
    /// Per-sample augmentation.
    pub augment: Option<Augment>,
    /// Visit a fresh seeded permutation each epoch (otherwise the stored order).
    pub shuffle: bool,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// Rows per evaluation chunk.
    pub eval_chunk: usize,
    /// Hold this validation split out of the training set (instead of an explicit one).
    pub validation: Option<Split>,
    /// The paper's protocol: the plateau rule, early stopping and the best epoch watch the
    /// *test* set. Off, they watch the validation set and the test set is only reported.
    pub select_on_test: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: 64,
            hyper: Hyper::default(),
            schedule: Schedule::Constant,
            plateau: None,
            augment: None,
            shuffle: true,
            seed: 0,
            eval_chunk: 1000,
            validation: None,
            select_on_test: false,
        }
    }
}

impl TrainConfig {
    /// Check the settings against the sets they will train on.
    pub fn validate(&self, sets: &Sets<'_>) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::config("batch_size must be positive"));
        }
        self.hyper.sgds()?;
        for d in [Some(sets.train), sets.val, sets.test]
            .into_iter()
            .flatten()
        {
            d.validate()?;
        }
        if let Some(a) = &self.augment {
            let (_, h, w) = sets.train.chw;
            if a.pad > h.max(w) {
                return Err(Error::config(format!(
                    "augment.pad {} is larger than the {h}×{w} training images (the paper pads by \
                     2 or 4: docs/algorithm.md §2)",
                    a.pad
                )));
            }
        }
        let rows = match self.validation {
            Some(s) => {
                if sets.val.is_some() {
                    return Err(Error::config(
                        "give either a validation set or a validation split, not both",
                    ));
                }
                s.indices(sets.train.len())?.0.len()
            }
            None => sets.train.len(),
        };
        if rows < self.batch_size {
            return Err(Error::config(format!(
                "{rows} training samples are fewer than one batch of {}",
                self.batch_size
            )));
        }
        if self.plateau.is_some() && self.watched(sets).is_none() {
            return Err(Error::config(if self.select_on_test {
                "the paper protocol's plateau rule and early stopping watch the test set: give one"
            } else {
                "the plateau rule and early stopping watch a validation set: give one, hold a \
                 validation split out of the training set, or choose the paper protocol \
                 (selection on the test set)"
            }));
        }
        Ok(())
    }

    /// Which set model selection watches: `"validation"`, `"test"` (paper protocol) or none.
    pub fn watched(&self, sets: &Sets<'_>) -> Option<&'static str> {
        if self.select_on_test {
            sets.test.map(|_| "test")
        } else if sets.val.is_some() || self.validation.is_some() {
            Some("validation")
        } else {
            None
        }
    }
}

/// The sets of a run: training rows, and optionally a validation and a test set.
#[derive(Clone, Copy, Debug)]
pub struct Sets<'a> {
    /// The training set (a configured validation split is held out of it).
    pub train: &'a Dataset,
    /// An explicit validation set.
    pub val: Option<&'a Dataset>,
    /// The test set: evaluated after each epoch and reported; watched only with
    /// `select_on_test`.
    pub test: Option<&'a Dataset>,
}

impl<'a> Sets<'a> {
    /// Training and test sets, no validation set.
    pub fn new(train: &'a Dataset, test: Option<&'a Dataset>) -> Self {
        Sets {
            train,
            val: None,
            test,
        }
    }
}

/// Metrics of one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Sum of the output loss over all training batches.
    pub train_loss: i64,
    /// Training accuracy of the output layer (during training).
    pub train: Fraction,
    /// Each block head's local training accuracy.
    pub blocks: Vec<Fraction>,
    /// Validation accuracy after the epoch (with a validation set or split).
    pub val: Option<Fraction>,
    /// Output loss `Σ (y − ŷ)²` over the validation set after the epoch (with `val`).
    pub val_loss: Option<i64>,
    /// Test accuracy after the epoch (if a test set was given).
    pub test: Option<Fraction>,
    /// Output loss `Σ (y − ŷ)²` over the test set after the epoch (with `test`).
    pub test_loss: Option<i64>,
    /// `lr_inv` used during the epoch.
    pub lr_inv: i64,
    /// Wall-clock milliseconds of the epoch's training batches (0 without `std`).
    pub train_millis: u64,
    /// Wall-clock milliseconds of the epoch's evaluation (0 without `std`).
    pub eval_millis: u64,
}

/// The history of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// One entry per completed epoch (plus a partial one if cancelled mid-epoch).
    pub epochs: Vec<EpochMetrics>,
    /// True if the callback cancelled the run.
    pub cancelled: bool,
    /// True if early stopping ended the run.
    pub early_stopped: bool,
    /// The run selected on the test set (the paper's protocol, `TrainConfig::select_on_test`).
    pub select_on_test: bool,
}

impl History {
    /// The best epoch by the watched set's accuracy: the test accuracy when the run selected
    /// on it (the paper's protocol), else the validation accuracy when the epochs have one,
    /// else the test accuracy; the earliest on ties.
    pub fn best(&self) -> Option<&EpochMetrics> {
        let by_val = !self.select_on_test && self.epochs.iter().any(|e| e.val.is_some());
        let key = |e: &EpochMetrics| if by_val { e.val } else { e.test };
        self.epochs.iter().filter(|e| key(e).is_some()).fold(
            None,
            |best: Option<&EpochMetrics>, e| match best {
                Some(b) if !key(e).unwrap_or_default().gt(&key(b).unwrap_or_default()) => Some(b),
                _ => Some(e),
            },
        )
    }

    /// Best test accuracy over the epochs (the paper's reported metric).
    pub fn best_test(&self) -> Option<Fraction> {
        self.epochs
            .iter()
            .filter_map(|e| e.test)
            .fold(None, |best: Option<Fraction>, f| match best {
                Some(b) if !f.gt(&b) => Some(b),
                _ => Some(f),
            })
    }
}

/// What the progress callback sees after each batch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// 1-based epoch.
    pub epoch: u32,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Running output-loss sum in this epoch.
    pub loss: i64,
    /// Running training accuracy in this epoch.
    pub train: Fraction,
}

/// What the callback wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this batch; the model stays consistent.
    Stop,
}

/// Evaluation-mode inference on rows `N × features`: what scoring a labelled set needs.
pub trait Evaluate {
    /// Evaluation-mode logits (`int8`, `N × classes`) of rows `N × features`.
    fn logits(&self, x: ArrayView2<'_, i8>) -> Result<Array2<i8>>;
    /// Number of classes (the width of the logits).
    fn classes(&self) -> usize;
}

/// Something that can be trained batch by batch and evaluated.
pub trait Trainable: Evaluate {
    /// One algorithm.md §4.3 step.
    fn step(&mut self, x: ArrayView2<'_, i8>, labels: &[usize], hyper: &Hyper)
        -> Result<StepStats>;
    /// Number of local-loss blocks.
    fn num_blocks(&self) -> usize;
    /// Record the settings used (for saving).
    fn set_hyper(&mut self, hyper: Hyper);
}

/// Correct predictions (arg-max, first on ties; algorithm.md §4.4) and output loss `Σ (y − ŷ)²` of
/// `model` on a labelled set, predicting `chunk` rows at a time (bounded memory).
pub fn score<M: Evaluate + ?Sized>(model: &M, data: &Dataset, chunk: usize) -> Result<(u64, i64)> {
    if data.is_empty() {
        return Err(Error::shape("empty evaluation set"));
    }
    data.validate()?;
    let chunk = chunk.max(1);
    let (mut correct, mut loss) = (0u64, 0i64);
    for start in (0..data.len()).step_by(chunk) {
        let end = (start + chunk).min(data.len());
        let labels = &data.y[start..end];
        let logits = model.logits(data.x.slice(s![start..end, ..]))?;
        let (l, c) = loss_and_correct(&logits, &one_hot(labels, model.classes())?, labels);
        correct += c;
        loss += l;
    }
    Ok((correct, loss))
}

impl Evaluate for Mlp {
    fn logits(&self, x: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        self.predict_logits(x)
    }
    fn classes(&self) -> usize {
        self.config.classes
    }
}

impl Trainable for Mlp {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        self.train_step(x, labels, hyper)
    }
    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        self.hyper = Some(hyper);
    }
}

/// Rows `N × (C·H·W)` are reshaped to the model's NCHW images (`Cnn::images`).
impl Trainable for Cnn {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        let x = x.as_standard_layout();
        let imgs = self.images(x.view())?;
        self.train_step(imgs, labels, hyper)
    }
    fn num_blocks(&self) -> usize {
        self.num_local_blocks()
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        self.hyper = Some(hyper);
    }
}

/// Rows `N × (C·H·W)` are reshaped to the model's NCHW images (`Cnn::images`).
impl Evaluate for Cnn {
    fn logits(&self, x: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        let x = x.as_standard_layout();
        self.predict_logits(self.images(x.view())?)
    }
    fn classes(&self) -> usize {
        self.config.classes
    }
}

#[cfg(feature = "std")]
struct Clock(std::time::Instant);
#[cfg(feature = "std")]
impl Clock {
    fn start() -> Self {
        Clock(std::time::Instant::now())
    }
    fn millis(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}
#[cfg(not(feature = "std"))]
struct Clock;
#[cfg(not(feature = "std"))]
impl Clock {
    fn start() -> Self {
        Clock
    }
    fn millis(&self) -> u64 {
        0
    }
}

/// What the per-epoch callback sees: the epoch's metrics, the model after it and the run's
/// state (together, a checkpoint: `io::Checkpoint`).
pub struct EpochEnd<'a, M: ?Sized> {
    /// The metrics of the epoch just completed.
    pub metrics: &'a EpochMetrics,
    /// The model after the epoch.
    pub model: &'a M,
    /// The run's state after the epoch's bookkeeping (plateau, schedule): what a resumed run
    /// continues from.
    pub state: &'a RunState,
}

/// Train `model` for `cfg.epochs` epochs from the start; see [`fit_from`].
pub fn fit<M: Trainable>(
    model: &mut M,
    sets: &Sets<'_>,
    cfg: &TrainConfig,
    on_batch: &mut dyn FnMut(&Progress) -> Control,
    on_epoch: &mut dyn FnMut(&EpochEnd<'_, M>) -> Result<Control>,
) -> Result<History> {
    let mut state = RunState::new(cfg, sets)?;
    fit_held(model, sets, cfg, &mut state, on_batch, on_epoch)
}

/// Continue the run `state` of `model` until `cfg.epochs` epochs are complete (or early
/// stopping ends it), evaluating on the validation and test sets after each epoch.
///
/// A state saved after any batch or epoch (with the model: `io::Checkpoint`) continues bit for
/// bit: the same as the uninterrupted run, on any thread count and kernel path. `cfg` must be
/// the run's settings; only `epochs` (and `eval_chunk`) may differ, and the sets must be the
/// ones it started with (checked by fingerprint).
///
/// A training step that fails (e.g. an [`Error::Overflow`]) ends the run with that error, the
/// model unchanged by it (steps are all-or-nothing) and `state` as it was before that batch,
/// so that a checkpoint of the two continues the run.
///
/// `on_batch` is called after every batch and `on_epoch` after every epoch, after the
/// epoch's bookkeeping; returning [`Control::Stop`] ends training there, with a consistent
/// model, a state that continues the run, and the history so far (`History::cancelled` set).
/// An error from `on_epoch` (e.g. a checkpoint that could not be written) ends the run with
/// that error.
pub fn fit_from<M: Trainable>(
    model: &mut M,
    sets: &Sets<'_>,
    cfg: &TrainConfig,
    state: &mut RunState,
    on_batch: &mut dyn FnMut(&Progress) -> Control,
    on_epoch: &mut dyn FnMut(&EpochEnd<'_, M>) -> Result<Control>,
) -> Result<History> {
    cfg.validate(sets)?;
    state.check_continues(cfg, sets)?;
    fit_held(model, sets, cfg, state, on_batch, on_epoch)
}

/// [`fit_from`] on sets that `state` was made from ([`RunState::new`]) or checked against
/// ([`RunState::check_continues`]) and that the caller has held unchanged since — a run
/// object that owns its sets and trains an epoch per call: everything is checked as there
/// but the sets' fingerprints, which would read every pixel again at every call.
pub fn fit_held<M: Trainable>(
    model: &mut M,
    sets: &Sets<'_>,
    cfg: &TrainConfig,
    state: &mut RunState,
    on_batch: &mut dyn FnMut(&Progress) -> Control,
    on_epoch: &mut dyn FnMut(&EpochEnd<'_, M>) -> Result<Control>,
) -> Result<History> {
    cfg.validate(sets)?;
    state.check_continues_on_held(cfg, sets)?;
    state.config.epochs = cfg.epochs;
    state.config.eval_chunk = cfg.eval_chunk;
    // With a split, the training rows are read in place through their indices (no copy of the
    // training set per call); the validation rows are copied once.
    let (rows, val): (Option<Vec<usize>>, Option<Cow<'_, Dataset>>) = match cfg.validation {
        Some(split) => {
            let (t, v) = split.indices(sets.train.len())?;
            (Some(t), Some(Cow::Owned(sets.train.select(&v))))
        }
        None => (None, sets.val.map(Cow::Borrowed)),
    };
    let train = sets.train;
    let test = sets.test;
    let bs = cfg.batch_size;
    let batches = state.order.len() / bs;
    let mut mapped = Vec::with_capacity(bs);
    let mut cancelled = false;
    model.set_hyper(state.hyper);
    while !state.finished() {
        let epoch = state.epoch + 1;
        // A failed step gives the state back as it was before its batch (and, in an epoch's
        // first batch, before the epoch's shuffle): the run continues from there.
        let mut epoch_start = (state.batch == 0).then(|| {
            (
                state.shuffle_rng.clone(),
                state.order.clone(),
                state.current.clone(),
            )
        });
        if state.batch == 0 {
            if cfg.shuffle {
                state.shuffle_rng.shuffle(&mut state.order);
            }
            state.current = EpochMetrics {
                epoch,
                lr_inv: state.hyper.lr_inv,
                blocks: alloc::vec![Fraction::default(); model.num_blocks()],
                ..EpochMetrics::default()
            };
        }
        let clock = Clock::start();
        while state.batch < batches {
            let b = state.batch;
            let mut idx = &state.order[b * bs..(b + 1) * bs];
            if let Some(rows) = &rows {
                mapped.clear();
                mapped.extend(idx.iter().map(|&i| rows[i]));
                idx = &mapped;
            }
            let augment_rng = state.augment_rng.clone();
            let (x, y) = train.batch(idx, cfg.augment.as_ref(), &mut state.augment_rng);
            let s = match model.step(x.view(), &y, &state.hyper) {
                Ok(s) => s,
                Err(e) => {
                    state.augment_rng = augment_rng;
                    if let (0, Some((rng, order, current))) = (state.batch, epoch_start.take()) {
                        (state.shuffle_rng, state.order, state.current) = (rng, order, current);
                    }
                    return Err(e);
                }
            };
            // Saturating: a resumed state's running sums come from a file.
            let m = &mut state.current;
            m.train_loss = m.train_loss.saturating_add(s.loss);
            m.train.correct = m.train.correct.saturating_add(s.correct);
            m.train.total = m.train.total.saturating_add(s.total);
            for (f, l) in m.blocks.iter_mut().zip(&s.blocks) {
                f.correct = f.correct.saturating_add(l.correct);
                f.total = f.total.saturating_add(s.total);
            }
            state.batch += 1;
            let p = Progress {
                epoch,
                batch: state.batch,
                batches,
                loss: m.train_loss,
                train: m.train,
            };
            if on_batch(&p) == Control::Stop {
                cancelled = true;
                break;
            }
        }
        state.current.train_millis = state.current.train_millis.saturating_add(clock.millis());
        // The model records the settings its last batch was trained with (saved with it).
        model.set_hyper(state.hyper);
        if cancelled && state.batch < batches {
            // Stopped inside the epoch: the state continues from the next batch.
            let mut h = history_of(state, true);
            h.epochs.push(state.current.clone());
            return Ok(h);
        }
        let mut m = core::mem::take(&mut state.current);
        let clock = Clock::start();
        let score_of = |d: &Dataset| -> Result<(Fraction, i64)> {
            let (correct, loss) = score(model, d, cfg.eval_chunk)?;
            Ok((
                Fraction {
                    correct,
                    total: d.len() as u64,
                },
                loss,
            ))
        };
        if let Some(v) = &val {
            let (f, l) = score_of(v)?;
            (m.val, m.val_loss) = (Some(f), Some(l));
        }
        if let Some(t) = test {
            let (f, l) = score_of(t)?;
            (m.test, m.test_loss) = (Some(f), Some(l));
        }
        m.eval_millis = clock.millis();
        let watched = if cfg.select_on_test { m.test } else { m.val };
        if let (Some(p), Some(acc)) = (state.plateau.as_mut(), watched) {
            match p.observe(epoch, acc) {
                PlateauAction::ReduceLr => {
                    state.hyper.lr_inv = state
                        .hyper
                        .lr_inv
                        .checked_mul(p.factor)
                        .ok_or_else(|| Error::config("lr_inv overflow"))?
                }
                PlateauAction::Stop => state.early_stopped = true,
                PlateauAction::None => {}
            }
        }
        state.hyper.lr_inv = cfg
            .schedule
            .next(cfg.hyper.lr_inv, state.hyper.lr_inv, epoch);
        state.epochs.push(m);
        state.epoch = epoch;
        state.batch = 0;
        let end = EpochEnd {
            metrics: state.epochs.last().expect("just pushed"),
            model: &*model,
            state,
        };
        if on_epoch(&end)? == Control::Stop {
            cancelled = !state.early_stopped;
            break;
        }
        if cancelled {
            break;
        }
    }
    Ok(history_of(state, cancelled))
}

fn history_of(state: &RunState, cancelled: bool) -> History {
    History {
        epochs: state.epochs.clone(),
        cancelled,
        early_stopped: state.early_stopped,
        select_on_test: state.config.select_on_test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MlpConfig;

    #[test]
    fn epoch_metrics_carry_the_test_score() {
        let n = 96;
        let x = Array2::from_shape_fn((n, 16), |(i, j)| ((i * 7 + j * 13) % 251) as i8);
        let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let data = Dataset::new(x, y, (1, 4, 4)).unwrap();
        let mut model = Mlp::new(MlpConfig::new(16, &[8], 3)).unwrap();
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 16,
            eval_chunk: 10,
            ..TrainConfig::default()
        };
        let go = &mut |_: &Progress| Control::Continue;
        let h = fit(
            &mut model,
            &Sets::new(&data, Some(&data)),
            &cfg,
            go,
            &mut |_| Ok(Control::Continue),
        )
        .unwrap();
        let last = h.epochs.last().unwrap();
        // The chunk size does not change the score; the model is the one after the last epoch.
        let (correct, loss) = score(&model, &data, usize::MAX).unwrap();
        assert_eq!(
            last.test,
            Some(Fraction {
                correct,
                total: n as u64
            })
        );
        assert_eq!(last.test_loss, Some(loss));
        assert_eq!(
            correct,
            model.count_correct(data.x.view(), &data.y, 10).unwrap()
        );
        let h = fit(&mut model, &Sets::new(&data, None), &cfg, go, &mut |_| {
            Ok(Control::Continue)
        })
        .unwrap();
        assert_eq!(h.epochs[0].test_loss, None);
    }
}
