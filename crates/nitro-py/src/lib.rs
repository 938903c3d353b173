//! `nitrod_rs._core`: the PyO3 binding of `nitro-core`.
//!
//! Deliberately thin (ARCHITECTURE.md): it converts numpy arrays to ndarray views (zero-copy for
//! the accepted dtypes), releases the GIL around every computation, and maps engine errors onto
//! Python exceptions. Argument checking with friendly messages and everything else Pythonic lives
//! in `python/nitrod_rs/`. Nothing here panics on user input: every engine call returns a
//! `Result`, and the Python side hands only the documented dtypes to these functions.
//!
//! This file only assembles the module; each concept has its own file.

use pyo3::prelude::*;

mod convert;
mod data;
mod errors;
mod facts;
mod fit;
mod model;
mod ops;
mod run;
mod threads;

/// The module `nitrod_rs._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    threads::install_fork_guard();
    m.add("__version__", nitro_core::VERSION)?;
    errors::register(m)?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(model::read_metadata, m)?)?;
    run::register(m)?;
    data::register(m)?;
    facts::register(m)?;
    ops::register(m)?;
    Ok(())
}
