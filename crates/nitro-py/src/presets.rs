//! The paper's presets (SPEC §7) as dicts, from the engine's `Preset` and `CnnPreset`, so that
//! Python and Rust share one list of settings.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{cnn_config_dict, hyper_dict};
use crate::errors::to_py;

/// A paper preset's architecture and training settings (SPEC §7), from `nitro_core::Preset`.
#[pyfunction]
#[pyo3(signature = (name, dataset="fashion-mnist"))]
fn preset_spec<'py>(py: Python<'py>, name: &str, dataset: &str) -> PyResult<Bound<'py, PyDict>> {
    let spec = nitro_core::Preset::from_name(name)
        .map_err(to_py)?
        .spec(dataset);
    let c = &spec.config;
    let d = hyper_dict(py, &spec.hyper)?;
    let mut layers = vec![c.inputs];
    layers.extend(&c.hidden);
    layers.push(c.classes);
    d.set_item("layers", layers)?;
    d.set_item("dropout_pct", c.dropout_pct)?;
    d.set_item("augment", spec.augment)?;
    Ok(d)
}

/// A CNN preset's architecture and training settings (SPEC §7), from `nitro_core::CnnPreset`.
#[pyfunction]
#[pyo3(signature = (name, dataset="fashion-mnist"))]
fn cnn_preset_spec<'py>(
    py: Python<'py>,
    name: &str,
    dataset: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = nitro_core::CnnPreset::from_name(name)
        .and_then(|p| p.spec(dataset))
        .map_err(to_py)?;
    let d = hyper_dict(py, &spec.hyper)?;
    let c = cnn_config_dict(py, &spec.config)?;
    d.set_item("config", c)?;
    d.set_item("augment", spec.augment.map(|a| (a.pad, a.flip)))?;
    Ok(d)
}

/// Add the preset functions to the module `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(preset_spec, m)?)?;
    m.add_function(wrap_pyfunction!(cnn_preset_spec, m)?)?;
    Ok(())
}
