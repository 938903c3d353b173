//! Input normalisation (docs/algorithm.md §2) of `uint8` images, through `nitro_core::Normalization`.

use nitro_core::Normalization;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::errors::to_py;

/// docs/algorithm.md §2 statistics `(mean, mad)` per channel of `uint8` images stored as `N × (C·H·W)` rows.
#[pyfunction]
fn fit_normalization(
    py: Python<'_>,
    images: PyReadonlyArray2<'_, u8>,
    channels: usize,
) -> PyResult<(Vec<i64>, Vec<i64>)> {
    let v = images.as_array();
    let n = py
        .detach(|| Normalization::fit(v, channels))
        .map_err(to_py)?;
    Ok((n.mean, n.mad))
}

/// `clamp(tdiv((pixel − 128 − mean_c)·51, mad_c), −128, 127)` as `int8` (docs/algorithm.md §2).
#[pyfunction]
fn normalize<'py>(
    py: Python<'py>,
    images: PyReadonlyArray2<'py, u8>,
    mean: Vec<i64>,
    mad: Vec<i64>,
) -> PyResult<Bound<'py, PyArray2<i8>>> {
    let n = Normalization { mean, mad };
    n.validate().map_err(to_py)?;
    let v = images.as_array();
    let out = py.detach(|| n.apply(v)).map_err(to_py)?;
    Ok(out.into_pyarray(py))
}

/// Add the normalisation functions to the module `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fit_normalization, m)?)?;
    m.add_function(wrap_pyfunction!(normalize, m)?)?;
    Ok(())
}
