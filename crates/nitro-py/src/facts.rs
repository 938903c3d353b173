//! Facts of the engine that the Python package reads instead of restating them (ARCHITECTURE.md:
//! one source for every fact): the default IntegerSGD and training settings, the constructor
//! defaults of both model kinds, the accepted names, and the presets of both kinds with their
//! complete training settings. Each value here is read from `nitro-core`, not written again.

use crate::convert::{cnn_config_dict, hyper_dict, mlp_config_dict};
use crate::errors::{to_py, value_err};
use nitro_core::layers::PoolKind;
use nitro_core::{
    ActivationKind, CnnConfig, CnnPreset, Compat, Feature, Hyper, Plateau, Preset, TrainConfig,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The engine type behind a preset name.
#[derive(Clone, Copy)]
enum Kind {
    Mlp(Preset),
    Cnn(CnnPreset),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mlp(p) => p.name(),
            Kind::Cnn(p) => p.name(),
        }
    }
}

/// Every preset of both kinds, in the engine's order (names and data sets from `presets.rs`).
fn all_presets() -> impl Iterator<Item = Kind> {
    Preset::ALL
        .into_iter()
        .map(Kind::Mlp)
        .chain(CnnPreset::ALL.into_iter().map(Kind::Cnn))
}

/// The engine's defaults and accepted names: `hyper` (IntegerSGD), `epochs`, `batch_size`,
/// `max_threads` (the most worker threads a call may ask for), `plateau` (the paper's plateau
/// rule and early stopping, by `TrainSettings` keyword), `schedules` (the kinds of `lr_inv`
/// schedule), `activation`
/// and `slope`, `decoder_dim` and `head_pool` (CNN), `conv` (`[kernel, stride, padding]` of a
/// conv entry given by its filter count alone), `one_hot` (the target value at the label),
/// `validation_split` (the presets' `(permille, seed)`, `nitro_core::Split::PRESET`), and
/// the name lists `activations`, `compats`, `head_pools`.
#[pyfunction]
pub fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("hyper", hyper_dict(py, &Hyper::default())?)?;
    let train = TrainConfig::default();
    d.set_item("epochs", train.epochs)?;
    d.set_item("batch_size", train.batch_size)?;
    d.set_item("max_threads", crate::threads::max_threads())?;
    // The paper's plateau rule and early stopping, the defaults of their settings.
    let paper = Plateau::paper();
    let rule = PyDict::new(py);
    rule.set_item("plateau_start", paper.start_epoch)?;
    rule.set_item("plateau_patience", paper.patience)?;
    rule.set_item("plateau_factor", paper.factor)?;
    rule.set_item("min_delta_points", paper.min_delta_points)?;
    rule.set_item("early_stopping_start", paper.early_stop_start)?;
    rule.set_item("early_stopping_patience", paper.early_stop_patience)?;
    d.set_item("plateau", rule)?;
    d.set_item("schedules", ["linear", "exponential", "halving"].to_vec())?;
    let act = ActivationKind::default();
    d.set_item("activation", act.name())?;
    d.set_item("slope", act.slope())?;
    let cnn = CnnConfig::new((1, 1, 1), &[], &[], 2);
    d.set_item("decoder_dim", cnn.decoder_dim)?;
    d.set_item("head_pool", cnn.head_pool.name())?;
    if let Feature::Conv {
        kernel,
        stride,
        padding,
        ..
    } = Feature::conv3(1)
    {
        d.set_item("conv", vec![kernel, stride, padding])?;
    }
    d.set_item("one_hot", nitro_core::loss::ONE_HOT)?;
    // The presets' validation split `(permille, seed)`: the share held out of the training set.
    let split = nitro_core::Split::PRESET;
    d.set_item("validation_split", (split.permille, split.seed))?;
    let a = act.slope();
    let activations = [
        ActivationKind::NitroRelu { a },
        ActivationKind::PocketLeakyRelu { a },
        ActivationKind::PocketRelu,
        ActivationKind::PocketTanh,
        ActivationKind::BipolarPocketRelu,
        ActivationKind::BipolarPocketLeakyRelu { a },
    ];
    d.set_item("activations", activations.map(|k| k.name()).to_vec())?;
    d.set_item(
        "compats",
        [Compat::Exact, Compat::Reference]
            .map(|c| c.name())
            .to_vec(),
    )?;
    d.set_item(
        "head_pools",
        [PoolKind::Max, PoolKind::Avg].map(|p| p.name()).to_vec(),
    )?;
    Ok(d)
}

/// The presets as `(name, kind, paper data set)`, kind `"mlp"` or `"cnn"`.
#[pyfunction]
pub fn presets() -> Vec<(&'static str, &'static str, &'static str)> {
    all_presets()
        .map(|kind| match kind {
            Kind::Mlp(p) => (p.name(), "mlp", p.paper_dataset()),
            Kind::Cnn(p) => (p.name(), "cnn", p.paper_dataset()),
        })
        .collect()
}

/// A preset (a name of [`presets`]) for a canonical data set name: `config` (the architecture,
/// keys as a model's `config`) and `settings`, the keyword arguments of `fit` that reproduce the
/// paper's run: `batch_size`, the IntegerSGD settings, `augment` (`(pad, flip)` or `None`), and
/// the paper's protocol (`plateau`, `early_stopping`; `nitro_core::Plateau::paper`).
#[pyfunction]
#[pyo3(signature = (name, dataset))]
pub fn preset<'py>(py: Python<'py>, name: &str, dataset: &str) -> PyResult<Bound<'py, PyDict>> {
    let kind = all_presets().find(|k| k.name() == name).ok_or_else(|| {
        let names: Vec<&str> = all_presets().map(Kind::name).collect();
        value_err(format!(
            "unknown preset {name:?}: use one of {}",
            names.join(", ")
        ))
    })?;
    // The per-dataset augmentation (docs/algorithm.md §2) is stated once in the engine, in the CNN presets'
    // specs; an MLP preset that augments uses the same.
    let dataset_augment = CnnPreset::SmallCnn.spec(dataset).map_err(to_py)?.augment;
    let (config, hyper, augment) = match kind {
        Kind::Mlp(p) => {
            let spec = p.spec(dataset);
            let augment = if spec.augment { dataset_augment } else { None };
            (mlp_config_dict(py, &spec.config)?, spec.hyper, augment)
        }
        Kind::Cnn(p) => {
            let spec = p.spec(dataset).map_err(to_py)?;
            let config = cnn_config_dict(py, &spec.config)?;
            (config, spec.hyper, spec.augment)
        }
    };
    let settings = PyDict::new(py);
    settings.set_item("batch_size", TrainConfig::default().batch_size)?;
    // The compat mode is a model's, not a preset's (every preset trains in the default mode).
    for (k, v) in hyper_dict(py, &hyper)?.iter() {
        if k.extract::<&str>()? != "compat" {
            settings.set_item(k, v)?;
        }
    }
    settings.set_item("augment", augment.map(|a| (a.pad, a.flip)))?;
    settings.set_item("plateau", true)?;
    settings.set_item("early_stopping", true)?;
    let d = PyDict::new(py);
    d.set_item("config", config)?;
    d.set_item("settings", settings)?;
    Ok(d)
}

/// Register the facts in `_core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(defaults, m)?)?;
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add_function(wrap_pyfunction!(preset, m)?)?;
    Ok(())
}
