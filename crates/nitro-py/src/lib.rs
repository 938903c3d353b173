//! `nitrod_rs._core`: the PyO3 binding of `nitro-core`.
//!
//! Deliberately thin (ARCHITECTURE.md): it converts numpy arrays to ndarray views (zero-copy for
//! the accepted dtypes), releases the GIL around every computation, and maps engine errors onto
//! Python exceptions. Argument checking with friendly messages and everything else Pythonic lives
//! in `python/nitrod_rs/`. Nothing here panics on user input: every engine call returns a
//! `Result`, and the Python side hands only the documented dtypes to these functions.
//!
//! This file only assembles the module; each concept has its own file.

use numpy::PyArrayMethods;
use pyo3::prelude::*;

mod convert;
mod data;
mod errors;
mod facts;
mod fit;
mod model;
mod ops;
mod parallel;
mod run;
mod threads;

/// Load numpy's C API and rust-numpy's borrow-checking capsule now, while the module is imported.
///
/// rust-numpy loads both on first use and panics when that fails; the first use would otherwise
/// be the first array handed to the engine, e.g. early in `fit`, where a Ctrl-C landing during
/// the load made it fail (a `PanicException` instead of `KeyboardInterrupt`). Loaded here, a
/// failure fails the import with a Python exception, and later calls never load anything.
fn load_numpy_api(py: Python<'_>) -> PyResult<()> {
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let a = numpy::PyArray1::<i8>::zeros(py, 1, false);
        let borrowed = a.readonly().as_array().len();
        borrowed
    }));
    match loaded {
        Ok(_) => Ok(()),
        Err(_) => Err(pyo3::exceptions::PyImportError::new_err(
            "nitrod_rs._core could not load numpy's C API (was the import interrupted?); \
             import nitrod_rs again",
        )),
    }
}

/// The module `nitrod_rs._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    load_numpy_api(m.py())?;
    threads::install_fork_guard();
    m.add("__version__", nitro_core::VERSION)?;
    errors::register(m)?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(model::read_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(threads::cached_pools, m)?)?;
    run::register(m)?;
    data::register(m)?;
    facts::register(m)?;
    ops::register(m)?;
    parallel::register(m)?;
    Ok(())
}
