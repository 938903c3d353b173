//! The epoch loop: shuffling, batching, augmentation, per-epoch metrics, schedules, plateau and
//! early stopping (SPEC §2, §5, §7), with a per-batch progress callback that can cancel.

use crate::data::{Augment, Dataset};
use crate::error::{Error, Result};
use crate::loss::{loss_and_correct, one_hot};
use crate::metrics::{Fraction, StepStats};
use crate::model::Cnn;
use crate::model::Mlp;
use crate::optim::{Hyper, Plateau, PlateauAction, Schedule};
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{s, Array2, ArrayView2};

/// Stream ids of the training RNGs (independent of the model's init streams).
const SHUFFLE_STREAM: u64 = 0x5_0000;
const AUGMENT_STREAM: u64 = 0x6_0000;

/// Settings of a training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Epochs to run (early stopping may end sooner).
    pub epochs: u32,
    /// Samples per batch; the last incomplete batch is dropped (SPEC §2).
    pub batch_size: usize,
    /// IntegerSGD settings; `lr_inv` is the starting value.
    pub hyper: Hyper,
    /// Schedule of `lr_inv` between epochs.
    pub schedule: Schedule,
    /// Plateau rule and early stopping (the paper's protocol), watching test accuracy.
    pub plateau: Option<Plateau>,
    /// Per-sample augmentation.
    pub augment: Option<Augment>,
    /// Visit a fresh seeded permutation each epoch (otherwise the stored order).
    pub shuffle: bool,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// Rows per evaluation chunk.
    pub eval_chunk: usize,
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
}

impl History {
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
    /// One SPEC §4.3 step.
    fn step(&mut self, x: ArrayView2<'_, i8>, labels: &[usize], hyper: &Hyper)
        -> Result<StepStats>;
    /// Number of local-loss blocks.
    fn num_blocks(&self) -> usize;
    /// Record the settings used (for saving).
    fn set_hyper(&mut self, hyper: Hyper);
}

/// Correct predictions (arg-max, first on ties; SPEC §4.4) and output loss `Σ (y − ŷ)²` of
/// `model` on a labelled set, predicting `chunk` rows at a time (bounded memory).
pub fn score<M: Evaluate + ?Sized>(model: &M, data: &Dataset, chunk: usize) -> Result<(u64, i64)> {
    if data.is_empty() {
        return Err(Error::shape("empty evaluation set"));
    }
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

/// The saved model of either kind trains and evaluates as its kind does.
#[cfg(feature = "std")]
impl Evaluate for crate::io::Model {
    fn logits(&self, x: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        match self {
            crate::io::Model::Mlp(m) => m.logits(x),
            crate::io::Model::Cnn(m) => m.logits(x),
        }
    }
    fn classes(&self) -> usize {
        match self {
            crate::io::Model::Mlp(m) => m.config.classes,
            crate::io::Model::Cnn(m) => m.config.classes,
        }
    }
}

#[cfg(feature = "std")]
impl Trainable for crate::io::Model {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        match self {
            crate::io::Model::Mlp(m) => m.step(x, labels, hyper),
            crate::io::Model::Cnn(m) => m.step(x, labels, hyper),
        }
    }
    fn num_blocks(&self) -> usize {
        match self {
            crate::io::Model::Mlp(m) => m.num_blocks(),
            crate::io::Model::Cnn(m) => m.num_blocks(),
        }
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        match self {
            crate::io::Model::Mlp(m) => m.set_hyper(hyper),
            crate::io::Model::Cnn(m) => m.set_hyper(hyper),
        }
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

/// Train `model` on `train` for `cfg.epochs` epochs, evaluating on `test` after each epoch.
///
/// `on_batch` is called after every batch (and `on_epoch` after every epoch); returning
/// [`Control::Stop`] ends training after that batch, with a consistent model and a complete
/// history so far (`History::cancelled` set).
pub fn fit<M: Trainable>(
    model: &mut M,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    on_batch: &mut dyn FnMut(&Progress) -> Control,
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> Control,
) -> Result<History> {
    if cfg.batch_size == 0 {
        return Err(Error::config("batch_size must be positive"));
    }
    if train.len() < cfg.batch_size {
        return Err(Error::config(format!(
            "{} training samples are fewer than one batch of {}",
            train.len(),
            cfg.batch_size
        )));
    }
    cfg.hyper.sgds()?;
    let mut hyper = cfg.hyper;
    model.set_hyper(hyper);
    let mut plateau = cfg.plateau.clone();
    let mut shuffle_rng = Pcg32::new(cfg.seed, SHUFFLE_STREAM);
    let mut aug_rng = Pcg32::new(cfg.seed, AUGMENT_STREAM);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let batches = train.len() / cfg.batch_size;
    let mut history = History::default();
    for epoch in 1..=cfg.epochs {
        if cfg.shuffle {
            shuffle_rng.shuffle(&mut order);
        }
        let clock = Clock::start();
        let mut m = EpochMetrics {
            epoch,
            lr_inv: hyper.lr_inv,
            blocks: alloc::vec![Fraction::default(); model.num_blocks()],
            ..EpochMetrics::default()
        };
        for b in 0..batches {
            let idx = &order[b * cfg.batch_size..(b + 1) * cfg.batch_size];
            let (x, y) = train.batch(idx, cfg.augment.as_ref(), &mut aug_rng);
            let s = model.step(x.view(), &y, &hyper)?;
            m.train_loss += s.loss;
            m.train.correct += s.correct;
            m.train.total += s.total;
            for (f, l) in m.blocks.iter_mut().zip(&s.blocks) {
                f.correct += l.correct;
                f.total += s.total;
            }
            let p = Progress {
                epoch,
                batch: b + 1,
                batches,
                loss: m.train_loss,
                train: m.train,
            };
            if on_batch(&p) == Control::Stop {
                history.cancelled = true;
                break;
            }
        }
        m.train_millis = clock.millis();
        model.set_hyper(hyper);
        if history.cancelled {
            history.epochs.push(m);
            return Ok(history);
        }
        if let Some(t) = test {
            let clock = Clock::start();
            let (correct, loss) = score(model, t, cfg.eval_chunk)?;
            m.test = Some(Fraction {
                correct,
                total: t.len() as u64,
            });
            m.test_loss = Some(loss);
            m.eval_millis = clock.millis();
        }
        let mut stop = on_epoch(&m) == Control::Stop;
        if let (Some(p), Some(acc)) = (plateau.as_mut(), m.test) {
            match p.observe(epoch, acc) {
                PlateauAction::ReduceLr => {
                    hyper.lr_inv = hyper
                        .lr_inv
                        .checked_mul(p.factor)
                        .ok_or_else(|| Error::config("lr_inv overflow"))?
                }
                PlateauAction::Stop => {
                    history.early_stopped = true;
                    stop = true;
                }
                PlateauAction::None => {}
            }
        }
        hyper.lr_inv = cfg.schedule.next(cfg.hyper.lr_inv, hyper.lr_inv, epoch);
        history.epochs.push(m);
        if stop {
            history.cancelled |= !history.early_stopped;
            break;
        }
    }
    Ok(history)
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
        let h = fit(&mut model, &data, Some(&data), &cfg, go, &mut |_| {
            Control::Continue
        })
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
        let h = fit(&mut model, &data, None, &cfg, go, &mut |_| {
            Control::Continue
        })
        .unwrap();
        assert_eq!(h.epochs[0].test_loss, None);
    }
}
