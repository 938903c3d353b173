//! A saved model of either kind, dispatching on the architecture's `"kind"`.

use super::cnn::{cnn_from_bytes, cnn_to_bytes};
use super::file::{read_with, write_atomic};
use super::meta::{get_str, meta_err, Header};
use crate::error::Result;
use crate::metrics::StepStats;
use crate::model::{Cnn, Mlp};
use crate::optim::Hyper;
use crate::rng::Pcg32;
use crate::train::{Evaluate, Trainable};
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// A saved model of either architecture.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// A local-loss MLP.
    Mlp(Mlp),
    /// A local-loss CNN.
    Cnn(Cnn),
}

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

/// The saved model of either kind trains and evaluates as its kind does.
impl Evaluate for Model {
    fn logits(&self, x: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        match self {
            Model::Mlp(m) => m.logits(x),
            Model::Cnn(m) => m.logits(x),
        }
    }
    fn classes(&self) -> usize {
        match self {
            Model::Mlp(m) => m.config.classes,
            Model::Cnn(m) => m.config.classes,
        }
    }
}

impl Trainable for Model {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        match self {
            Model::Mlp(m) => m.step(x, labels, hyper),
            Model::Cnn(m) => m.step(x, labels, hyper),
        }
    }
    fn num_blocks(&self) -> usize {
        match self {
            Model::Mlp(m) => m.num_blocks(),
            Model::Cnn(m) => m.num_blocks(),
        }
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        match self {
            Model::Mlp(m) => m.set_hyper(hyper),
            Model::Cnn(m) => m.set_hyper(hyper),
        }
    }
}
