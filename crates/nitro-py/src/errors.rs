//! The exception classes of `nitrod_rs` and the one mapping of engine errors onto them.
//!
//! Every engine error is a `NitroError` (itself a `ValueError`, so `except ValueError` code
//! keeps working), except I/O errors, which raise the built-in `OSError` subclasses.

use nitro_core::Error;
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    nitrod_rs,
    NitroError,
    PyValueError,
    "Base class of the errors raised by the nitrod-rs engine (a ValueError)."
);
create_exception!(
    nitrod_rs,
    FormatError,
    NitroError,
    "A model file or buffer is malformed, truncated or not a nitrod-rs model."
);
create_exception!(
    nitrod_rs,
    IntegerOverflowError,
    NitroError,
    "An integer result would leave its storage type (docs/algorithm.md §1); nothing was changed."
);
create_exception!(
    nitrod_rs,
    ShapeError,
    NitroError,
    "Tensor shapes or lengths do not fit together (a NitroError and so a ValueError)."
);
create_exception!(
    nitrod_rs,
    ConfigError,
    NitroError,
    "A hyper-parameter, architecture setting or name is invalid (a NitroError, a ValueError)."
);

/// Map an engine error onto the documented Python exception.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Shape(_) => ShapeError::new_err(msg),
        Error::Config(_) => ConfigError::new_err(msg),
        Error::Format(_) => FormatError::new_err(msg),
        Error::Overflow { .. } => IntegerOverflowError::new_err(msg),
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        _ => NitroError::new_err(msg),
    }
}

/// A `ValueError` for an argument the binding itself rejects (before any engine call).
pub fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Add the exception classes to the module `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NitroError", py.get_type::<NitroError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add(
        "IntegerOverflowError",
        py.get_type::<IntegerOverflowError>(),
    )?;
    m.add("ShapeError", py.get_type::<ShapeError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    Ok(())
}
