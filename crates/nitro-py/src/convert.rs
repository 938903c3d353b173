//! Conversions between Python values and engine types: labels, IntegerSGD settings, feature
//! specs, and the dicts of configs, steps and epochs handed back to Python.

use nitro_core::{
    ActivationKind, CnnConfig, Compat, EpochMetrics, Feature, Hyper, Init, MlpConfig, StepStats,
};
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString};
use serde_json::Value;

use crate::errors::{to_py, value_err};

/// Class labels as indices; a negative label is an error naming its position.
pub fn labels_to_usize(labels: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<usize>> {
    labels
        .as_array()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            usize::try_from(v)
                .map_err(|_| value_err(format!("label {v} at position {i} is negative")))
        })
        .collect()
}

/// IntegerSGD settings from keyword arguments, checked by the engine (`Hyper::sgds`).
pub fn hyper_from(
    lr_inv: i64,
    lr_amp_factor: i64,
    fwd_decay_inv: i64,
    subnet_decay_inv: i64,
    compat: &str,
) -> PyResult<Hyper> {
    let h = Hyper {
        lr_inv,
        lr_amp_factor,
        fwd_decay_inv,
        subnet_decay_inv,
        compat: Compat::from_name(compat).map_err(to_py)?,
    };
    h.sgds().map_err(to_py)?;
    Ok(h)
}

/// IntegerSGD settings as the keyword arguments they came from.
pub fn hyper_dict<'py>(py: Python<'py>, h: &Hyper) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("lr_inv", h.lr_inv)?;
    d.set_item("lr_amp_factor", h.lr_amp_factor)?;
    d.set_item("fwd_decay_inv", h.fwd_decay_inv)?;
    d.set_item("subnet_decay_inv", h.subnet_decay_inv)?;
    d.set_item("compat", h.compat.name())?;
    Ok(d)
}

/// The statistics of one training step.
pub fn step_dict<'py>(py: Python<'py>, s: &StepStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("loss", s.loss)?;
    d.set_item("correct", s.correct)?;
    d.set_item("total", s.total)?;
    let bl: Vec<i64> = s.blocks.iter().map(|b| b.loss).collect();
    let bc: Vec<u64> = s.blocks.iter().map(|b| b.correct).collect();
    d.set_item("block_loss", bl)?;
    d.set_item("block_correct", bc)?;
    Ok(d)
}

/// A JSON value (`serde_json`) as the Python object `json.loads` would give: `null` → `None`,
/// numbers → `int`, arrays → `list`, objects → `dict`.
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            // The engine writes integers only (no floats anywhere in its metrics).
            _ => return Err(value_err(format!("not an integer: {n}"))),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(json_to_py(py, x)?)?;
            }
            l.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// The metrics of one epoch: `nitro_core::io::metrics_json` as a dict (`epoch`, `train_loss`,
/// `train` `[correct, total]`, `blocks`, `val`, `val_loss`, `test`, `test_loss`, `lr_inv`,
/// `train_millis`, `eval_millis`; the sets not evaluated are `None`).
pub fn epoch_dict<'py>(py: Python<'py>, m: &EpochMetrics) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &nitro_core::io::metrics_json(m))
}

/// A feature-extractor entry as `(kind, [numbers…])`: `("conv", [filters, kernel, stride,
/// padding])`, `("maxpool", [k])`, `("avgpool", [k])` or `("dropout", [percent])`.
pub type FeatureSpec = (String, Vec<usize>);

/// The feature `i` of a CNN from its spec.
pub fn feature_from(spec: &FeatureSpec, i: usize) -> PyResult<Feature> {
    let (kind, v) = spec;
    let bad = || {
        value_err(format!(
            "feature {i}: {kind:?} with {v:?} is not one of (\"conv\", [filters, kernel, \
             stride, padding]), (\"maxpool\", [k]), (\"avgpool\", [k]), (\"dropout\", [percent])"
        ))
    };
    match (kind.as_str(), v.as_slice()) {
        ("conv", &[filters, kernel, stride, padding]) => Ok(Feature::Conv {
            filters,
            kernel,
            stride,
            padding,
        }),
        ("maxpool", &[k]) => Ok(Feature::MaxPool(k)),
        ("avgpool", &[k]) => Ok(Feature::AvgPool(k)),
        ("dropout", &[r]) => Ok(Feature::Dropout(u32::try_from(r).map_err(|_| bad())?)),
        _ => Err(bad()),
    }
}

/// A feature-extractor entry as its [`FeatureSpec`].
pub fn feature_spec(f: &Feature) -> FeatureSpec {
    match *f {
        Feature::Conv {
            filters,
            kernel,
            stride,
            padding,
        } => ("conv".into(), vec![filters, kernel, stride, padding]),
        Feature::MaxPool(k) => ("maxpool".into(), vec![k]),
        Feature::AvgPool(k) => ("avgpool".into(), vec![k]),
        Feature::Dropout(r) => ("dropout".into(), vec![r as usize]),
    }
}

/// The architecture entries both kinds have, in the order of a saved file's metadata.
fn shared_config_items(
    d: &Bound<'_, PyDict>,
    activation: ActivationKind,
    dropout_pct: u32,
    bias: bool,
    init: Init,
    seed: u64,
) -> PyResult<()> {
    d.set_item("activation", activation.name())?;
    d.set_item("slope", activation.slope())?;
    d.set_item("dropout_pct", dropout_pct)?;
    d.set_item("bias", bias)?;
    d.set_item("init", init.name())?;
    d.set_item("seed", seed)
}

/// An MLP's architecture (the `architecture` metadata of a saved file).
pub fn mlp_config_dict<'py>(py: Python<'py>, c: &MlpConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", "mlp")?;
    d.set_item("inputs", c.inputs)?;
    d.set_item("hidden", c.hidden.clone())?;
    d.set_item("classes", c.classes)?;
    shared_config_items(&d, c.activation, c.dropout_pct, c.bias, c.init, c.seed)?;
    Ok(d)
}

/// A CNN's architecture (the `architecture` metadata of a saved file).
pub fn cnn_config_dict<'py>(py: Python<'py>, c: &CnnConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", "cnn")?;
    d.set_item("input", c.input)?;
    let feats: Vec<FeatureSpec> = c.features.iter().map(feature_spec).collect();
    d.set_item("features", feats)?;
    d.set_item("classifier", c.classifier.clone())?;
    d.set_item("classes", c.classes)?;
    shared_config_items(&d, c.activation, c.dropout_pct, c.bias, c.init, c.seed)?;
    d.set_item("decoder_dim", c.decoder_dim)?;
    d.set_item("head_pool", c.head_pool.name())?;
    d.set_item("conv_amp_adjust", c.conv_amp_adjust)?;
    Ok(d)
}
