//! The settings of a training run that every layer's update reads: IntegerSGD's rates and
//! decays (algorithm.md §5) and whether to reproduce the original implementation (algorithm.md
//! §12).

use super::sgd::Sgd;
use crate::error::{Error, Result};
use alloc::format;

/// How the original implementation differs from the clean algorithm (algorithm.md §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compat {
    /// The clean algorithm of algorithm.md §3–§5 (default).
    #[default]
    Exact,
    /// Reproduce the original implementation bit for bit (algorithm.md §12).
    Reference,
}

impl Compat {
    /// Stable name (`"exact"` / `"reference"`).
    pub fn name(&self) -> &'static str {
        match self {
            Compat::Exact => "exact",
            Compat::Reference => "reference",
        }
    }

    /// Parse [`Compat::name`].
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "exact" => Ok(Compat::Exact),
            "reference" => Ok(Compat::Reference),
            o => Err(Error::config(format!(
                "compat must be \"exact\" or \"reference\", got {o:?}"
            ))),
        }
    }
}

/// The IntegerSGD hyper-parameters of a training run (algorithm.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hyper {
    /// Inverse learning rate (paper 512).
    pub lr_inv: i64,
    /// Amplification of the forward layers' inverse learning rate (paper `2⁶·classes` = 640).
    pub lr_amp_factor: i64,
    /// Inverse weight decay of the forward layers (0 = off).
    pub fwd_decay_inv: i64,
    /// Inverse weight decay of heads and output layer (0 = off).
    pub subnet_decay_inv: i64,
    /// Exact algorithm or the original implementation's behaviour (algorithm.md §12).
    pub compat: Compat,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            lr_inv: 512,
            lr_amp_factor: 640,
            fwd_decay_inv: 0,
            subnet_decay_inv: 0,
            compat: Compat::Exact,
        }
    }
}

impl Hyper {
    /// The optimizers for forward layers and for heads/output (validated).
    pub fn sgds(&self) -> Result<(Sgd, Sgd)> {
        Ok((
            Sgd::new(self.lr_inv, self.lr_amp_factor, self.fwd_decay_inv)?,
            Sgd::new(self.lr_inv, 1, self.subnet_decay_inv)?,
        ))
    }
}
