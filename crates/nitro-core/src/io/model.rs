//! A saved model of either kind, dispatching on the architecture's `"kind"`.

use super::cnn::{cnn_from_bytes, cnn_to_bytes};
use super::file::{read_with, write_atomic};
use super::meta::{get_str, meta_err, Header};
use crate::error::Result;
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec::Vec;

/// A saved model of either architecture: the same type as the device blob's
/// [`crate::export::DeviceModel`] (which predicts and trains through `Evaluate`/`Trainable`);
/// this module adds its files.
pub type Model = crate::export::DeviceModel;

impl Model {
    /// Serialise either kind.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        match self {
            Model::Mlp(m) => super::mlp::to_bytes(m),
            Model::Cnn(m) => cnn_to_bytes(m),
        }
    }

    /// Load either kind, dispatching on the architecture's `"kind"`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let header = Header::read(bytes)?;
        match get_str(&header.arch, "kind")? {
            "mlp" => Ok(Model::Mlp(super::mlp::from_bytes(bytes)?)),
            "cnn" => Ok(Model::Cnn(cnn_from_bytes(bytes)?)),
            o => Err(meta_err(
                "architecture",
                &format!("unknown kind {o:?}; expected \"mlp\" or \"cnn\""),
            )),
        }
    }

    /// The dropout layers' mask generators (`Mlp::dropout_rngs`, `Cnn::dropout_rngs`).
    pub fn dropout_rngs(&self) -> Vec<Pcg32> {
        match self {
            Model::Mlp(m) => m.dropout_rngs(),
            Model::Cnn(m) => m.dropout_rngs(),
        }
    }

    /// Restore the generators returned by [`Model::dropout_rngs`]; all or nothing.
    pub fn set_dropout_rngs(&mut self, rngs: &[Pcg32]) -> Result<()> {
        match self {
            Model::Mlp(m) => m.set_dropout_rngs(rngs),
            Model::Cnn(m) => m.set_dropout_rngs(rngs),
        }
    }

    /// Save to a `.safetensors` file (atomically).
    pub fn save_file(&self, path: &std::path::Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// Load from a `.safetensors` file.
    pub fn load_file(path: &std::path::Path) -> Result<Model> {
        read_with(path, Model::from_bytes)
    }
}
