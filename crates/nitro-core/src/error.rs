//! One error type for the whole engine (ARCHITECTURE.md: "Errors, not panics").

use alloc::string::String;
use core::fmt;

/// Everything that can go wrong in `nitro-core`.
///
/// Every variant carries enough context (layer, operation, shapes, file) to act on the
/// message without reading the source.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An integer result would not fit the type it is stored in (algorithm.md §1, §10). Nothing
    /// wrapped; the layer named here was left unchanged — and in a training step
    /// (`Mlp::train_step`, `Cnn::train_step`, so `train::fit`) every other layer too, as every
    /// update is checked before any is written.
    Overflow {
        /// The layer (e.g. `linear_encoder_00`) or primitive that overflowed.
        layer: String,
        /// The operation (e.g. `weight update`, `input error`).
        op: &'static str,
        /// The offending value or bound.
        detail: String,
    },
    /// Tensor shapes (or lengths) do not fit together.
    Shape(String),
    /// A hyper-parameter or architecture setting is invalid.
    Config(String),
    /// A file or buffer is malformed, truncated or not what it claims to be.
    Format(String),
    /// An operating-system I/O error, with the path it concerned.
    #[cfg(feature = "std")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Overflow { layer, op, detail } => {
                write!(f, "integer overflow in {layer} during {op}: {detail}")
            }
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Format(m) => write!(f, "invalid format: {m}"),
            #[cfg(feature = "std")]
            Error::Io { path, source } => write!(f, "I/O error on {path}: {source}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            #[cfg(feature = "std")]
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand constructors used throughout the crate.
impl Error {
    pub(crate) fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub(crate) fn format(msg: impl Into<String>) -> Self {
        Error::Format(msg.into())
    }
    /// Attribute an error raised by a kernel or helper to the layer `name`.
    pub(crate) fn in_layer(self, name: &str) -> Self {
        match self {
            Error::Overflow { op, detail, .. } => Error::Overflow {
                layer: name.into(),
                op,
                detail,
            },
            Error::Shape(m) => Error::Shape(alloc::format!("{name}: {m}")),
            o => o,
        }
    }
    pub(crate) fn overflow(layer: &str, op: &'static str, detail: impl Into<String>) -> Self {
        Error::Overflow {
            layer: layer.into(),
            op,
            detail: detail.into(),
        }
    }
}
