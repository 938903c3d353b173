//! Models (SPEC §4.2): the local-loss MLP, its presets, one training step (§4.3) and prediction
//! (§4.4).

use crate::block::{
    argmax_rows, loss_and_correct, output_error, Compat, LocalLinearBlock, LocalStats,
};
use crate::data::{one_hot, Normalization};
use crate::error::{Error, Result};
use crate::init::{bound, uniform, Init};
use crate::layers::{ActivationKind, Dropout, Linear, Scaling};
use crate::optim::Sgd;
use crate::rng::Pcg32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// The IntegerSGD hyper-parameters of a training run (SPEC §5).
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
    /// Exact algorithm or the original implementation's behaviour (SPEC §12).
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

/// Architecture of a local-loss MLP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlpConfig {
    /// Input features (784 for 28×28 images).
    pub inputs: usize,
    /// Hidden widths, one LocalLinearBlock each.
    pub hidden: Vec<usize>,
    /// Classes.
    pub classes: usize,
    /// Activation of every block.
    pub activation: ActivationKind,
    /// Dropout after each block, in percent (0 = none).
    pub dropout_pct: u32,
    /// Whether linear layers have a bias (paper: no).
    pub bias: bool,
    /// Initialisation.
    pub init: Init,
    /// Seed of initialisation and dropout.
    pub seed: u64,
}

impl MlpConfig {
    /// An MLP `inputs → hidden… → classes` with the paper's defaults (NITRO-ReLU a=4, Kaiming,
    /// no bias, no dropout, seed 0).
    pub fn new(inputs: usize, hidden: &[usize], classes: usize) -> Self {
        MlpConfig {
            inputs,
            hidden: hidden.to_vec(),
            classes,
            activation: ActivationKind::default(),
            dropout_pct: 0,
            bias: false,
            init: Init::Kaiming,
            seed: 0,
        }
    }

    /// Check sizes and settings.
    pub fn validate(&self) -> Result<()> {
        if self.inputs == 0 || self.hidden.contains(&0) {
            return Err(Error::config("layer widths must be positive"));
        }
        if self.classes < 2 {
            return Err(Error::config(format!(
                "need at least 2 classes, got {}",
                self.classes
            )));
        }
        // Keep every layer's weight count (and so memory) sane: < 2^31 parameters per layer.
        let mut prev = self.inputs;
        for &w in self.hidden.iter().chain(core::iter::once(&self.classes)) {
            if prev.checked_mul(w).is_none_or(|p| p > i32::MAX as usize) {
                return Err(Error::config(format!("layer {prev}→{w} is too large")));
            }
            prev = w;
        }
        if self.dropout_pct != 0 {
            Dropout::new(self.dropout_pct, 0, 0)?;
        }
        self.activation.validate()
    }
}

/// Paper preset names (SPEC §4.2 / §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 784-100-50-10, MNIST.
    Mlp1,
    /// 784-200-100-50-10, Fashion-MNIST.
    Mlp2,
    /// 784-1024×3-10, MNIST or Fashion-MNIST, augmentation.
    Mlp3,
    /// 3072-3000×3-10, CIFAR-10, augmentation, dropout 10 %.
    Mlp4,
}

/// A preset's architecture and the paper's training settings (SPEC §7).
#[derive(Clone, Debug)]
pub struct PresetSpec {
    /// Architecture.
    pub config: MlpConfig,
    /// IntegerSGD settings.
    pub hyper: Hyper,
    /// Whether the paper used augmentation.
    pub augment: bool,
}

impl Preset {
    /// Parse `mlp1`…`mlp4`.
    pub fn from_name(s: &str) -> Result<Preset> {
        match s.to_ascii_lowercase().as_str() {
            "mlp1" => Ok(Preset::Mlp1),
            "mlp2" => Ok(Preset::Mlp2),
            "mlp3" => Ok(Preset::Mlp3),
            "mlp4" => Ok(Preset::Mlp4),
            o => Err(Error::config(format!(
                "unknown preset {o:?}; expected mlp1, mlp2, mlp3 or mlp4"
            ))),
        }
    }

    /// The paper's settings; `dataset` matters for MLP3 (`"mnist"` or `"fashion-mnist"`).
    pub fn spec(self, dataset: &str) -> PresetSpec {
        let fmnist = dataset.contains("fashion");
        let (inputs, hidden, fwd, sub, aug, drop): (usize, &[usize], i64, i64, bool, u32) =
            match self {
                Preset::Mlp1 => (784, &[100, 50], 12_000, 3_000, false, 0),
                Preset::Mlp2 => (784, &[200, 100, 50], 10_000, 8_000, false, 0),
                Preset::Mlp3 if fmnist => (784, &[1024, 1024, 1024], 29_000, 6_000, true, 0),
                Preset::Mlp3 => (784, &[1024, 1024, 1024], 28_000, 500, true, 0),
                Preset::Mlp4 => (3072, &[3000, 3000, 3000], 19_000, 7_500, true, 10),
            };
        let mut config = MlpConfig::new(inputs, hidden, 10);
        config.dropout_pct = drop;
        PresetSpec {
            config,
            hyper: Hyper {
                fwd_decay_inv: fwd,
                subnet_decay_inv: sub,
                ..Hyper::default()
            },
            augment: aug,
        }
    }
}

/// Losses and accuracies of one training step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Output loss `Σ (y − ŷ)²`.
    pub loss: i64,
    /// Rows classified correctly by the output layer.
    pub correct: u64,
    /// Rows in the batch.
    pub total: u64,
    /// Each block's local loss and accuracy.
    pub blocks: Vec<LocalStats>,
}

/// `IntegerLocalLossMLP` (SPEC §4.2): Flatten → LocalLinearBlocks (with optional Dropout) →
/// output `IntegerLinear` → Scaling.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The architecture this model was built from.
    pub config: MlpConfig,
    /// The local-loss blocks.
    pub blocks: Vec<LocalLinearBlock>,
    dropouts: Vec<Option<Dropout>>,
    /// The output layer (`linear_{n:02}` with n = number of blocks).
    pub out: Linear,
    out_scale: Scaling,
    /// Normalisation statistics of the training data (saved with the model, SPEC §2/§8).
    pub normalization: Option<Normalization>,
    /// The settings of the last training run (saved with the model).
    pub hyper: Option<Hyper>,
}

impl Mlp {
    /// A freshly initialised model.
    pub fn new(config: MlpConfig) -> Result<Self> {
        config.validate()?;
        let mut blocks = Vec::new();
        let mut prev = config.inputs;
        for (i, &w) in config.hidden.iter().enumerate() {
            blocks.push(LocalLinearBlock::new(
                i,
                prev,
                w,
                config.classes,
                config.activation,
                config.init,
                config.bias,
                config.seed,
            )?);
            prev = w;
        }
        let n = blocks.len();
        let mut r = Pcg32::new(config.seed, 2000);
        let b = bound(config.init, config.activation, prev, config.classes);
        let out = Linear::new(
            format!("linear_{n:02}"),
            uniform((config.classes, prev), b, &mut r),
            config.bias.then(|| ndarray::Array1::zeros(config.classes)),
        )?;
        Self::assemble(config, blocks, out)
    }

    /// A model from existing layers (used by loading); shapes are checked against `config`.
    pub fn from_layers(
        config: MlpConfig,
        blocks: Vec<LocalLinearBlock>,
        out: Linear,
    ) -> Result<Self> {
        config.validate()?;
        let mut prev = config.inputs;
        if blocks.len() != config.hidden.len() {
            return Err(Error::shape(
                "number of blocks differs from the configuration",
            ));
        }
        for (b, &w) in blocks.iter().zip(&config.hidden) {
            if b.fwd.weight.dim() != (w, prev) || b.head.weight.dim() != (config.classes, w) {
                return Err(Error::shape(format!(
                    "{} does not match the configuration",
                    b.fwd.name
                )));
            }
            prev = w;
        }
        if out.weight.dim() != (config.classes, prev) {
            return Err(Error::shape(format!(
                "{} does not match the configuration",
                out.name
            )));
        }
        Self::assemble(config, blocks, out)
    }

    fn assemble(config: MlpConfig, blocks: Vec<LocalLinearBlock>, out: Linear) -> Result<Self> {
        let dropouts = (0..blocks.len())
            .map(|i| {
                (config.dropout_pct > 0)
                    .then(|| Dropout::new(config.dropout_pct, config.seed, 3000 + i as u64))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp {
            out_scale: Scaling::for_fan_in(out.in_features())?,
            config,
            blocks,
            dropouts,
            out,
            normalization: None,
            hyper: None,
        })
    }

    /// All linear layers in a fixed order: blocks' forward and head layers, then the output.
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v: Vec<&Linear> = Vec::new();
        for b in &self.blocks {
            v.push(&b.fwd);
            v.push(&b.head);
        }
        v.push(&self.out);
        v
    }

    /// Mutable access to the linear layer called `name`.
    pub fn linear_mut(&mut self, name: &str) -> Option<&mut Linear> {
        if self.out.name == name {
            return Some(&mut self.out);
        }
        self.blocks.iter_mut().find_map(|b| {
            if b.fwd.name == name {
                Some(&mut b.fwd)
            } else if b.head.name == name {
                Some(&mut b.head)
            } else {
                None
            }
        })
    }

    fn check_batch(&self, x: &ArrayView2<'_, i8>, labels: Option<&[usize]>) -> Result<()> {
        if x.nrows() == 0 {
            return Err(Error::shape("empty batch"));
        }
        if x.ncols() != self.config.inputs {
            return Err(Error::shape(format!(
                "model expects {} input features per sample, got {}",
                self.config.inputs,
                x.ncols()
            )));
        }
        if let Some(l) = labels {
            if l.len() != x.nrows() {
                return Err(Error::shape(format!(
                    "{} samples but {} labels",
                    x.nrows(),
                    l.len()
                )));
            }
        }
        Ok(())
    }

    /// Evaluation-mode logits (the output scaling layer's `i8`).
    pub fn predict_logits(&self, x: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        self.check_batch(&x, None)?;
        let mut cur: Option<Array2<i8>> = None;
        for b in &self.blocks {
            let h = match &cur {
                None => b.infer(x)?,
                Some(c) => b.infer(c.view())?,
            };
            cur = Some(h);
        }
        let z = match &cur {
            None => self.out.infer(x)?,
            Some(c) => self.out.infer(c.view())?,
        };
        Ok(self.out_scale.forward(&z))
    }

    /// Predicted classes (arg-max, first on ties; SPEC §4.4).
    pub fn predict(&self, x: ArrayView2<'_, i8>) -> Result<Vec<usize>> {
        Ok(argmax_rows(&self.predict_logits(x)?))
    }

    /// Number of correct predictions on `x`, evaluated in chunks of `chunk` rows.
    pub fn count_correct(
        &self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        chunk: usize,
    ) -> Result<u64> {
        self.check_batch(&x, Some(labels))?;
        crate::block::count_correct_chunked(x, labels, chunk, |rows| self.predict(rows))
    }

    /// One training step of SPEC §4.3 on a batch of normalised inputs and class labels.
    pub fn train_step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        self.check_batch(&x, Some(labels))?;
        let target = one_hot(labels, self.config.classes)?;
        let (fwd_sgd, sub_sgd) = hyper.sgds()?;
        // 1. Forward in training mode; each block saves what it needs.
        let mut input: Array2<i16> = x.mapv(i16::from);
        for (b, d) in self.blocks.iter_mut().zip(self.dropouts.iter_mut()) {
            let h = b.forward_owned(input, true)?;
            input = match d {
                Some(d) => d.forward(&h, true),
                None => h.mapv(i16::from),
            };
        }
        let z = self.out.forward_owned(input, true)?;
        let pred = self.out_scale.forward(&z);
        // 2. Output layer: δ = ŷ − y, update.
        let (loss, correct) = loss_and_correct(&pred, &target, labels);
        let delta = output_error(&pred, &target, hyper.compat);
        self.out.backward(delta.view(), false, &sub_sgd)?;
        // 3. Every block's local update, independently (in parallel where available).
        let compat = hyper.compat;
        let update = |b: &mut LocalLinearBlock| {
            b.local_update(&target, labels, &fwd_sgd, &sub_sgd, compat, false)
        };
        #[cfg(feature = "parallel")]
        let blocks: Vec<Result<LocalStats>> = {
            use rayon::prelude::*;
            self.blocks.par_iter_mut().map(update).collect()
        };
        #[cfg(not(feature = "parallel"))]
        let blocks: Vec<Result<LocalStats>> = self.blocks.iter_mut().map(update).collect();
        let blocks = blocks.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(StepStats {
            loss,
            correct,
            total: labels.len() as u64,
            blocks,
        })
    }

    /// A short human-readable description, e.g. `784-200-100-50-10 nitro_relu`.
    pub fn describe(&self) -> String {
        let mut s = format!("{}", self.config.inputs);
        for w in &self.config.hidden {
            s += &format!("-{w}");
        }
        s + &format!("-{} {}", self.config.classes, self.config.activation.name())
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> usize {
        self.linears()
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()))
            .sum()
    }
}
