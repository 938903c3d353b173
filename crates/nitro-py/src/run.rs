//! `nitrod_rs._core.TrainSettings` and `nitrod_rs._core.Run`: a training run that Python drives
//! one epoch at a time, so that between two epochs the model is free (a callback may save,
//! evaluate or predict with it) and the run can be checkpointed and resumed bit for bit.
//!
//! A `Run` owns its data sets (training, optional validation, optional test), its settings
//! (`TrainConfig`) and where it stands (`RunState`); `Run.epoch` runs the engine's loop
//! (`nitro_core::fit_held`) until the next epoch boundary, `Run.save_checkpoint` writes the
//! model and the state into one file (`io::Checkpoint`), `Run.from_checkpoint` continues one.

use std::path::PathBuf;
use std::time::Duration;

use nitro_core::io::Checkpoint;
use nitro_core::train::DataPrints;
use nitro_core::{Dataset, RunState, Sets, Split, TrainConfig};
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::{epoch_dict, hyper_from};
use crate::errors::{to_py, value_err};
use crate::fit::{
    check_continues, dataset, optional_dataset, run_epoch, schedule_from, settings_dict,
    train_config, OnBatch, Watch,
};
use crate::model::Model;

/// The settings of a training run (a checked `nitro_core::TrainConfig`).
#[pyclass(module = "nitrod_rs._core", name = "TrainSettings", frozen)]
pub struct TrainSettings {
    cfg: TrainConfig,
}

#[pymethods]
impl TrainSettings {
    /// Settings from keyword arguments: `plateau` / `early_stopping` switch the two halves of
    /// the paper's rule, `plateau_start` … `early_stopping_patience` change its settings (`None`:
    /// the paper's), `schedule` is `None` or `(kind, a, max)` (`fit::schedule_from`),
    /// `validation_permille` holds a seeded split of that many thousandths out of the training
    /// set, `select_on_test` makes the rule watch the test set (the paper's protocol) instead of
    /// the validation set.
    #[new]
    #[pyo3(signature = (*, epochs, batch_size=64, lr_inv=512, lr_amp_factor=640, fwd_decay_inv=0, subnet_decay_inv=0, compat="exact", schedule=None, augment=None, shuffle=true, plateau=false, early_stopping=false, plateau_start=None, plateau_patience=None, plateau_factor=None, min_delta_points=None, early_stopping_start=None, early_stopping_patience=None, seed=0, validation_permille=None, validation_seed=0, select_on_test=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        epochs: u32,
        batch_size: usize,
        lr_inv: i64,
        lr_amp_factor: i64,
        fwd_decay_inv: i64,
        subnet_decay_inv: i64,
        compat: &str,
        schedule: Option<(String, i64, i64)>,
        augment: Option<(usize, bool)>,
        shuffle: bool,
        plateau: bool,
        early_stopping: bool,
        plateau_start: Option<u32>,
        plateau_patience: Option<u32>,
        plateau_factor: Option<i64>,
        min_delta_points: Option<u64>,
        early_stopping_start: Option<u32>,
        early_stopping_patience: Option<u32>,
        seed: u64,
        validation_permille: Option<u32>,
        validation_seed: u64,
        select_on_test: bool,
    ) -> PyResult<Self> {
        let hyper = hyper_from(
            lr_inv,
            lr_amp_factor,
            fwd_decay_inv,
            subnet_decay_inv,
            compat,
        )?;
        let watch = Watch {
            plateau,
            early_stopping,
            plateau_start,
            plateau_patience,
            plateau_factor,
            min_delta_points,
            early_stopping_start,
            early_stopping_patience,
        };
        let cfg = train_config(
            epochs,
            batch_size,
            hyper,
            schedule_from(schedule, &hyper)?,
            augment,
            shuffle,
            watch,
            seed,
            validation_permille,
            validation_seed,
            select_on_test,
        )?;
        Ok(TrainSettings { cfg })
    }

    /// The settings as the keyword arguments of the constructor.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        settings_dict(py, &self.cfg)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "TrainSettings(**{})",
            settings_dict(py, &self.cfg)?.repr()?
        ))
    }
}

/// A training run: its data, settings and state; driven one epoch at a time by `epoch`.
#[pyclass(module = "nitrod_rs._core", name = "Run")]
pub struct Run {
    train: Dataset,
    val: Option<Dataset>,
    test: Option<Dataset>,
    /// The run's settings; `epochs` is the total to reach.
    cfg: TrainConfig,
    state: RunState,
    /// Set when an engine error ended an epoch: the state may be mid-step, so the run can
    /// neither continue nor be checkpointed.
    failed: Option<String>,
}

/// The data sets of a run, from the arrays handed over by Python, and their prints.
type Data = (Dataset, Option<Dataset>, Option<Dataset>, DataPrints);

#[allow(clippy::too_many_arguments)]
fn data_of(
    x: PyReadonlyArray2<'_, i8>,
    y: PyReadonlyArray1<'_, i64>,
    chw: (usize, usize, usize),
    x_val: Option<PyReadonlyArray2<'_, i8>>,
    y_val: Option<PyReadonlyArray1<'_, i64>>,
    x_test: Option<PyReadonlyArray2<'_, i8>>,
    y_test: Option<PyReadonlyArray1<'_, i64>>,
) -> PyResult<Data> {
    let (train, train_print) = dataset(&x, &y, chw)?;
    let (val, val_print) = optional_dataset(x_val, y_val, chw, "val")?.unzip();
    let (test, test_print) = optional_dataset(x_test, y_test, chw, "test")?.unzip();
    let prints = DataPrints {
        train: train_print,
        val: val_print,
        test: test_print,
    };
    Ok((train, val, test, prints))
}

impl Run {
    fn sets(&self) -> Sets<'_> {
        Sets {
            train: &self.train,
            val: self.val.as_ref(),
            test: self.test.as_ref(),
        }
    }

    fn usable(&self) -> PyResult<()> {
        match &self.failed {
            Some(e) => Err(value_err(format!(
                "this run ended with an error and cannot continue or be checkpointed ({e}); \
                 resume from its last checkpoint instead"
            ))),
            None => Ok(()),
        }
    }
}

#[pymethods]
impl Run {
    /// A run that has not started, on rows `x` (`int8`, `N × C·H·W`) with labels `y`, an
    /// optional validation set and an optional test set (evaluated after every epoch).
    /// The settings are checked against the sets (`TrainConfig::validate`).
    #[new]
    #[pyo3(signature = (settings, x, y, chw, *, x_val=None, y_val=None, x_test=None, y_test=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        settings: &TrainSettings,
        x: PyReadonlyArray2<'_, i8>,
        y: PyReadonlyArray1<'_, i64>,
        chw: (usize, usize, usize),
        x_val: Option<PyReadonlyArray2<'_, i8>>,
        y_val: Option<PyReadonlyArray1<'_, i64>>,
        x_test: Option<PyReadonlyArray2<'_, i8>>,
        y_test: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<Self> {
        let (train, val, test, prints) = data_of(x, y, chw, x_val, y_val, x_test, y_test)?;
        let cfg = settings.cfg.clone();
        let sets = Sets {
            train: &train,
            val: val.as_ref(),
            test: test.as_ref(),
        };
        let state = RunState::with_prints(&cfg, &sets, prints).map_err(to_py)?;
        Ok(Run {
            train,
            val,
            test,
            cfg,
            state,
            failed: None,
        })
    }

    /// Continue the run saved in the checkpoint file `path`: returns its model (with its
    /// dropout generators) and the run, on the sets it was started with (checked by
    /// fingerprint). The settings are the checkpoint's, or `settings`, which must then be the
    /// ones the run was started with; only `epochs` may change (and `epochs` overrides both).
    #[staticmethod]
    #[pyo3(signature = (path, x, y, chw, *, x_val=None, y_val=None, x_test=None, y_test=None, settings=None, epochs=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_checkpoint(
        py: Python<'_>,
        path: PathBuf,
        x: PyReadonlyArray2<'_, i8>,
        y: PyReadonlyArray1<'_, i64>,
        chw: (usize, usize, usize),
        x_val: Option<PyReadonlyArray2<'_, i8>>,
        y_val: Option<PyReadonlyArray1<'_, i64>>,
        x_test: Option<PyReadonlyArray2<'_, i8>>,
        y_test: Option<PyReadonlyArray1<'_, i64>>,
        settings: Option<PyRef<'_, TrainSettings>>,
        epochs: Option<u32>,
    ) -> PyResult<(Model, Run)> {
        let ck = py.detach(|| Checkpoint::load_file(&path)).map_err(to_py)?;
        let mut cfg = match &settings {
            Some(s) => s.cfg.clone(),
            None => ck.state.config.clone(),
        };
        if let Some(e) = epochs {
            cfg.epochs = e;
        }
        let done = ck.state.epoch + u32::from(ck.state.batch > 0);
        if cfg.epochs < done.max(1) {
            return Err(value_err(format!(
                "{} holds a run that has reached epoch {done}; epochs={} would not continue \
                 it (give at least {done})",
                path.display(),
                cfg.epochs
            )));
        }
        let (train, val, test, prints) = data_of(x, y, chw, x_val, y_val, x_test, y_test)?;
        let mut run = Run {
            train,
            val,
            test,
            cfg,
            state: ck.state,
            failed: None,
        };
        run.cfg.validate(&run.sets()).map_err(to_py)?;
        check_continues(py, &run.state, &run.cfg, &run.sets(), prints)?;
        run.state.config.epochs = run.cfg.epochs;
        Ok((Model::from_inner(ck.model), run))
    }

    /// The model of the checkpoint file `path` (its dropout generators restored); an error if
    /// the file is not a checkpoint (a plain model file, say) or is malformed.
    #[staticmethod]
    fn checkpoint_model(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let ck = py.detach(|| Checkpoint::load_file(&path)).map_err(to_py)?;
        Ok(Model::from_inner(ck.model))
    }

    /// Train `model` until the next epoch boundary (GIL released; `threads` workers, results
    /// independent of it). `on_batch(epoch, batch, batches, loss, correct, total)` runs after
    /// every batch — or, with `every_ms` > 0, after a batch only when that many milliseconds
    /// have passed since its last call (always after the first batch and the epoch's last: a
    /// progress display's rate, without a trip through the GIL per batch) — followed by a
    /// signal check; an exception there (Ctrl-C's `KeyboardInterrupt` too) stops the run after
    /// that batch — the state then continues from the next batch. Returns the epoch's metrics (partial when stopped inside it: `batch` is
    /// then non-zero) and that exception, or `None`. An engine error is raised and ends the run.
    ///
    /// `exchange(x, labels, hyper, rngs) -> bytes`, when given, computes every step on workers
    /// (data-parallel training: `nitrod_rs._parallel`): it returns the exact sum of the
    /// gradient sums of the batch's shares, which `model` applies — its own step, bit for
    /// bit; an exception it raises ends the run as an engine error does.
    #[pyo3(signature = (model, on_batch=None, threads=None, exchange=None, every_ms=0))]
    fn epoch<'py>(
        &mut self,
        py: Python<'py>,
        mut model: PyRefMut<'_, Model>,
        on_batch: Option<Py<PyAny>>,
        threads: Option<usize>,
        exchange: Option<Py<PyAny>>,
        every_ms: u64,
    ) -> PyResult<(Bound<'py, PyAny>, Option<Py<PyAny>>)> {
        self.usable()?;
        if self.state.finished() {
            return Err(value_err(
                "the run is finished (all epochs done or stopped early); nothing to train",
            ));
        }
        // One epoch: the loop stops at the next boundary (or completes the epoch in progress).
        let mut cfg = self.cfg.clone();
        cfg.epochs = (self.state.epoch + 1).min(self.cfg.epochs);
        let Run {
            train,
            val,
            test,
            state,
            ..
        } = self;
        let sets = Sets {
            train,
            val: val.as_ref(),
            test: test.as_ref(),
        };
        let out = run_epoch(
            py,
            &mut model.inner,
            &sets,
            &cfg,
            state,
            on_batch.map(|call| OnBatch {
                call,
                every: Duration::from_millis(every_ms),
            }),
            threads,
            exchange,
        )?;
        self.state.config.epochs = self.cfg.epochs;
        match out.history {
            Err(e) => {
                self.failed = Some(e.to_string());
                // An exception from a callback outranks what it caused.
                Err(out.exception.unwrap_or_else(|| to_py(e)))
            }
            Ok(h) => {
                let last = h
                    .epochs
                    .last()
                    .ok_or_else(|| value_err("the engine ran no epoch"))?;
                Ok((
                    epoch_dict(py, last)?,
                    out.exception.map(|e| e.into_value(py).into_any()),
                ))
            }
        }
    }

    /// Write `model` and this run's state atomically into the checkpoint file `path` (a
    /// temporary file renamed over it: an interrupted write leaves the previous file intact).
    fn save_checkpoint(
        &self,
        py: Python<'_>,
        model: PyRef<'_, Model>,
        path: PathBuf,
    ) -> PyResult<()> {
        self.usable()?;
        model.check_saveable()?;
        self.state.hyper.sgds().map_err(|e| {
            crate::errors::ConfigError::new_err(format!(
                "the run's next settings are not usable, so its checkpoint could not be \
                 resumed ({e}); nothing was written"
            ))
        })?;
        let (m, state) = (&model.inner, &self.state);
        py.detach(|| Checkpoint::save_file(&path, m, state))
            .map_err(to_py)
    }

    /// True when nothing is left to do (all epochs done, or stopped early).
    #[getter]
    fn finished(&self) -> bool {
        self.state.finished()
    }

    /// Completed epochs.
    #[getter]
    fn epochs_done(&self) -> u32 {
        self.state.epoch
    }

    /// Batches done of the epoch in progress (0 between epochs).
    #[getter]
    fn batch(&self) -> usize {
        self.state.batch
    }

    /// The total number of epochs of the run.
    #[getter]
    fn epochs(&self) -> u32 {
        self.cfg.epochs
    }

    /// True when early stopping ended the run.
    #[getter]
    fn early_stopped(&self) -> bool {
        self.state.early_stopped
    }

    /// The metrics of the completed epochs (dicts as `epoch` returns them).
    #[getter]
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let l = PyList::empty(py);
        for m in &self.state.epochs {
            l.append(epoch_dict(py, m)?)?;
        }
        Ok(l)
    }

    /// The settings as the keyword arguments of `TrainSettings`.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        settings_dict(py, &self.cfg)
    }

    /// The set that the plateau rule, early stopping and the best epoch watch:
    /// `"validation"`, `"test"` (the paper's protocol) or `None`.
    #[getter]
    fn watched(&self) -> Option<&'static str> {
        self.cfg.watched(&self.sets())
    }

    /// Rows in the training set as given (before a validation split is held out).
    #[getter]
    fn train_rows(&self) -> usize {
        self.train.len()
    }
}

/// The row indices `(train, validation)` that a validation split of `permille` thousandths on
/// seed `seed` makes of `n` rows, each ascending (`nitro_core::Split::indices`).
#[pyfunction]
pub fn split_indices(n: usize, permille: u32, seed: u64) -> PyResult<(Vec<usize>, Vec<usize>)> {
    // The engine builds the order and both parts (3·n indices) with infallible allocations: a
    // fallible reservation first makes an impossible `n` a MemoryError, not an abort.
    let mut probe: Vec<usize> = Vec::new();
    probe
        .try_reserve_exact(n.saturating_mul(3))
        .map_err(|_| PyMemoryError::new_err(format!("split_indices: no memory for {n} rows")))?;
    drop(probe);
    Split { permille, seed }.indices(n).map_err(to_py)
}

/// Add the run classes and functions to the module `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TrainSettings>()?;
    m.add_class::<Run>()?;
    m.add_function(wrap_pyfunction!(split_indices, m)?)?;
    Ok(())
}
