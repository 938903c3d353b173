//! The state of a training run between two batches: everything its future depends on besides
//! the model's own parameters and dropout generators. Saving it with the model (a checkpoint,
//! `io::Checkpoint`) and continuing from it gives the same bits as never having stopped.

use super::{EpochMetrics, Sets, TrainConfig};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::names::{AUGMENT_STREAM, SHUFFLE_STREAM};
use crate::optim::{Hyper, Plateau};
use crate::rng::Pcg32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Rows and fingerprint (`Dataset::fingerprint`) of a set a run was started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPrint {
    /// Number of rows.
    pub rows: usize,
    /// `Dataset::fingerprint`.
    pub fingerprint: u64,
}

impl DataPrint {
    /// The print of `data`.
    pub fn of(data: &Dataset) -> Self {
        DataPrint {
            rows: data.len(),
            fingerprint: data.fingerprint(),
        }
    }
}

/// The prints of the sets a run was started with (the training set before any split).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPrints {
    /// The training set as given (before a validation split is held out of it).
    pub train: DataPrint,
    /// An explicit validation set.
    pub val: Option<DataPrint>,
    /// The test set.
    pub test: Option<DataPrint>,
}

impl DataPrints {
    /// The prints of `sets`.
    pub fn of(sets: &Sets<'_>) -> Self {
        DataPrints {
            train: DataPrint::of(sets.train),
            val: sets.val.map(DataPrint::of),
            test: sets.test.map(DataPrint::of),
        }
    }
}

/// Where a run stands: the epoch and batch reached, the settings in force, the RNG streams, the
/// plateau counters and the metrics so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunState {
    /// The run's settings (`epochs` and `eval_chunk` may change when it is resumed).
    pub config: TrainConfig,
    /// Completed epochs.
    pub epoch: u32,
    /// Batches done of the epoch in progress (0 between epochs).
    pub batch: usize,
    /// The running metrics of the epoch in progress (meaningful when `batch > 0`).
    pub current: EpochMetrics,
    /// The settings of the next batch (`lr_inv` after schedules and plateaus).
    pub hyper: Hyper,
    /// The plateau and early-stopping watcher, with its counters.
    pub plateau: Option<Plateau>,
    /// The stream that shuffles the training rows each epoch.
    pub shuffle_rng: Pcg32,
    /// The stream of per-sample augmentation.
    pub augment_rng: Pcg32,
    /// The current order of the training rows (each epoch shuffles the previous order).
    pub order: Vec<usize>,
    /// The metrics of the completed epochs.
    pub epochs: Vec<EpochMetrics>,
    /// Early stopping ended the run.
    pub early_stopped: bool,
    /// The sets the run was started with.
    pub data: DataPrints,
}

impl RunState {
    /// The state of a run that has not started: `cfg` checked, the streams seeded.
    pub fn new(cfg: &TrainConfig, sets: &Sets<'_>) -> Result<Self> {
        RunState::with_prints(cfg, sets, DataPrints::of(sets))
    }

    /// [`RunState::new`] with the sets' prints computed by the caller — `DataPrints::of(sets)`,
    /// e.g. from the arrays the sets were copied from, while copying them
    /// ([`Dataset::fingerprint_of`]).
    pub fn with_prints(cfg: &TrainConfig, sets: &Sets<'_>, prints: DataPrints) -> Result<Self> {
        debug_assert!(prints == DataPrints::of(sets), "the prints of these sets");
        cfg.validate(sets)?;
        let rows = expected_rows(cfg, sets)?;
        Ok(RunState {
            config: cfg.clone(),
            epoch: 0,
            batch: 0,
            current: EpochMetrics::default(),
            hyper: cfg.hyper,
            plateau: cfg.plateau.clone(),
            shuffle_rng: Pcg32::new(cfg.seed, SHUFFLE_STREAM),
            augment_rng: Pcg32::new(cfg.seed, AUGMENT_STREAM),
            order: (0..rows).collect(),
            epochs: Vec::new(),
            early_stopped: false,
            data: prints,
        })
    }

    /// True when nothing is left to do: early stopping ended the run, or `config.epochs` are
    /// complete.
    pub fn finished(&self) -> bool {
        self.early_stopped || (self.epoch >= self.config.epochs && self.batch == 0)
    }

    /// Check that `cfg` continues this run (the same settings but for `epochs` and
    /// `eval_chunk`) on the same sets; the error names what differs.
    pub fn check_continues(&self, cfg: &TrainConfig, sets: &Sets<'_>) -> Result<()> {
        self.continues(cfg, sets, Some(DataPrints::of(sets)))
    }

    /// [`RunState::check_continues`] with the sets' prints computed by the caller (as for
    /// [`RunState::with_prints`]).
    pub fn check_continues_with(
        &self,
        cfg: &TrainConfig,
        sets: &Sets<'_>,
        prints: DataPrints,
    ) -> Result<()> {
        debug_assert!(prints == DataPrints::of(sets), "the prints of these sets");
        self.continues(cfg, sets, Some(prints))
    }

    /// [`RunState::check_continues`] but for the sets' fingerprints, for sets this state was
    /// made from or checked against and that have been held unchanged since (a fingerprint
    /// reads every pixel: ~10 ms for Fashion-MNIST's training set, each epoch).
    pub(crate) fn check_continues_on_held(&self, cfg: &TrainConfig, sets: &Sets<'_>) -> Result<()> {
        self.continues(cfg, sets, None)
    }

    /// The checks of [`RunState::check_continues`], the data's prints only when `given`.
    fn continues(
        &self,
        cfg: &TrainConfig,
        sets: &Sets<'_>,
        given: Option<DataPrints>,
    ) -> Result<()> {
        let differs = self.config.differences(cfg);
        if !differs.is_empty() {
            return Err(Error::config(format!(
                "the run was started with other settings: {} differ (resume with the \
                 checkpoint's settings; only epochs may change)",
                differs.join(", ")
            )));
        }
        let name = |w: &str, p: Option<DataPrint>| match p {
            Some(p) => format!(
                "{w} set of {} rows (fingerprint {:016x})",
                p.rows, p.fingerprint
            ),
            None => format!("no {w} set"),
        };
        let prints = given.map(|given| {
            [
                ("training", Some(self.data.train), Some(given.train)),
                ("validation", self.data.val, given.val),
                ("test", self.data.test, given.test),
            ]
        });
        for (what, was, now) in prints.into_iter().flatten() {
            if was != now {
                return Err(Error::config(format!(
                    "the run was started with a {}, but is resumed with a {}; resume with the \
                     data it was started with",
                    name(what, was),
                    name(what, now)
                )));
            }
        }
        if self.order.len() != expected_rows(&self.config, sets)? {
            return Err(Error::config(
                "the saved order of the training rows does not match the training set",
            ));
        }
        let mut seen = alloc::vec![false; self.order.len()];
        for &i in &self.order {
            if i >= seen.len() || core::mem::replace(&mut seen[i], true) {
                return Err(Error::config(
                    "the saved order of the training rows is not a permutation",
                ));
            }
        }
        let batches = self.order.len() / self.config.batch_size;
        if self.batch > batches {
            return Err(Error::config(format!(
                "the saved batch {} is past the {batches} batches of an epoch",
                self.batch
            )));
        }
        Ok(())
    }
}

/// The training rows a run on `sets` visits: all, or those a validation split leaves.
fn expected_rows(cfg: &TrainConfig, sets: &Sets<'_>) -> Result<usize> {
    Ok(match cfg.validation {
        Some(s) => s.indices(sets.train.len())?.0.len(),
        None => sets.train.len(),
    })
}

impl TrainConfig {
    /// Names of the settings that differ between `self` and `other`, ignoring `epochs` and
    /// `eval_chunk` (which do not change what a step computes).
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |name: &str, same: bool| {
            if !same {
                d.push(String::from(name));
            }
        };
        check("batch_size", self.batch_size == other.batch_size);
        check("hyper", self.hyper == other.hyper);
        check("schedule", self.schedule == other.schedule);
        check("plateau", self.plateau == other.plateau);
        check("augment", self.augment == other.augment);
        check("shuffle", self.shuffle == other.shuffle);
        check("seed", self.seed == other.seed);
        check("validation", self.validation == other.validation);
        check(
            "select_on_test",
            self.select_on_test == other.select_on_test,
        );
        d
    }
}
