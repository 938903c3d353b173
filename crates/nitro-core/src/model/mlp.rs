//! The local-loss MLP (algorithm.md §4.2): its configuration and the model — the shared classifier
//! (see [`super::classifier`]) on the flattened input — with training step (§4.3) and
//! prediction (§4.4).

use super::classifier::{self, config_with, settings_of, tail_of, Settings, Step, Tail};
use super::gradients::{check_whole, no_more, put_next, take_classifier, Gradients};
use super::limits::Count;
use crate::block::LocalLinearBlock;
use crate::data::Normalization;
use crate::data::Share;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::kernels::par;
use crate::layers::{ActivationKind, Dropout, Linear, Scaling};
use crate::loss::{argmax_rows, count_correct_chunked};
use crate::metrics::StepStats;
use crate::optim::Hyper;
use crate::rng::Pcg32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

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
        config_with!(
            MlpConfig {
                inputs: inputs,
                hidden: hidden.to_vec(),
            },
            Settings::paper(classes)
        )
    }

    /// Name and `(out, in)` of every linear layer, in [`Mlp::linears`] order.
    pub fn linear_shapes(&self) -> Vec<(String, (usize, usize))> {
        classifier::linear_shapes(0, self.inputs, &self.hidden, self.classes)
    }

    fn settings(&self) -> Settings {
        settings_of!(self)
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
        // Every parameter counted (checked) before any is allocated: at most MAX_PARAMETERS.
        let (mut count, mut prev) = (Count::zero(), self.inputs);
        for &w in &self.hidden {
            count = count
                .layer(w, prev, self.bias)
                .layer(self.classes, w, self.bias);
            prev = w;
        }
        count
            .layer(self.classes, prev, self.bias)
            .check(&format_args!(
                "an MLP of {} inputs, hidden widths {:?} and {} classes",
                self.inputs, self.hidden, self.classes
            ))?;
        if self.dropout_pct != 0 {
            Dropout::new(self.dropout_pct, 0, 0)?;
        }
        self.activation.validate()
    }
}

/// `IntegerLocalLossMLP` (algorithm.md §4.2): Flatten → LocalLinearBlocks (with optional Dropout) →
/// output `IntegerLinear` → Scaling.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The architecture this model was built from.
    pub config: MlpConfig,
    /// The local-loss blocks.
    pub blocks: Vec<LocalLinearBlock>,
    dropouts: Vec<Option<Dropout>>,
    /// The output layer ([`crate::names::output`] of the number of blocks).
    pub out: Linear,
    out_scale: Scaling,
    /// Normalisation statistics of the training data (saved with the model, algorithm.md §2/§8).
    pub normalization: Option<Normalization>,
    /// The settings of the last training run (saved with the model).
    pub hyper: Option<Hyper>,
}

impl Mlp {
    /// A freshly initialised model.
    pub fn new(config: MlpConfig) -> Result<Self> {
        config.validate()?;
        let (blocks, out) =
            classifier::new_layers(&config.settings(), 0, config.inputs, &config.hidden)?;
        Self::assemble(config, blocks, out)
    }

    /// A model from its linear layers, supplied in [`Mlp::linears`] order by `load(name,
    /// (out, in))` (e.g. read from a file); shapes are checked against `config`.
    pub fn load_with(
        config: MlpConfig,
        mut load: impl FnMut(String, (usize, usize)) -> Result<Linear>,
    ) -> Result<Self> {
        config.validate()?;
        let mut layers = config.linear_shapes().into_iter();
        let mut next = || {
            let (name, shape) = layers
                .next()
                .ok_or_else(|| Error::shape("fewer layers than the configuration"))?;
            load(name, shape)
        };
        let mut blocks = Vec::with_capacity(config.hidden.len());
        for _ in &config.hidden {
            let fwd = next()?;
            let head = next()?;
            blocks.push(LocalLinearBlock::from_layers(fwd, head, config.activation)?);
        }
        let out = next()?;
        Self::from_layers(config, blocks, out)
    }

    /// A model from existing layers (used by loading); shapes are checked against `config`.
    /// The blocks' learning heads are all present, or all absent (an inference-only model,
    /// [`crate::block::absent_head`]).
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
        let head_outputs = match blocks.first().is_none_or(LocalLinearBlock::has_head) {
            true => config.classes,
            false => 0,
        };
        for (b, &w) in blocks.iter().zip(&config.hidden) {
            if b.fwd.weight.dim() != (w, prev) || b.head.weight.dim() != (head_outputs, w) {
                return Err(Error::shape(format!(
                    "{} does not match the configuration (or its learning head is absent while \
                     another block's is present)",
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
        let dropouts = classifier::dropouts(&config.settings(), 0, blocks.len())?;
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
        self.tail().linears().collect()
    }

    /// Mutable access to the linear layer called `name`.
    pub fn linear_mut(&mut self, name: &str) -> Option<&mut Linear> {
        classifier::linear_mut(&mut self.blocks, &mut self.out, name)
    }

    fn tail(&self) -> Tail<'_> {
        tail_of!(self)
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
        par::on_pool(|| self.tail().infer(x))
    }

    /// Predicted classes (arg-max, first on ties; algorithm.md §4.4).
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
        count_correct_chunked(x, labels, chunk, |rows| self.predict(rows))
    }

    /// One training step of algorithm.md §4.3 on a batch of normalised inputs and class labels.
    ///
    /// All-or-nothing: every layer's update is checked before any is written, so on error (an
    /// [`Error::Overflow`] naming the layer whose update would leave `i32`, …) no parameter of
    /// the model has changed, and the dropout generators are back where they were.
    pub fn train_step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        self.fine_tune_step(x, labels, hyper, 0)
    }

    /// A training step that leaves the first `frozen` local blocks as they are: they run in
    /// evaluation mode (no dropout, no saved activations, so less memory) and take no update;
    /// the later blocks and the output layer learn on their outputs. This is fine-tuning a
    /// trained model on new data, e.g. on a device. `frozen = 0` is [`Mlp::train_step`];
    /// `frozen` may equal the number of blocks (only the output layer learns).
    /// [`StepStats::blocks`] lists the trained blocks only. All-or-nothing, like `train_step`.
    pub fn fine_tune_step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        frozen: usize,
    ) -> Result<StepStats> {
        if frozen > self.blocks.len() {
            return Err(Error::config(format!(
                "cannot freeze {frozen} blocks of a model with {} local blocks: use 0..={}",
                self.blocks.len(),
                self.blocks.len()
            )));
        }
        self.check_batch(&x, Some(labels))?;
        self.require_heads()?;
        let step = Step::new(labels, self.config.classes, hyper)?;
        let share = Share::whole(labels.len());
        // One source of the update: the step's gradients, then their application — what
        // data-parallel training does with the gradients of several shares added up.
        let rngs = self.dropout_rngs();
        // One stay on the pool for the whole step (the pool is kept awake through it).
        let result = par::on_pool(|| {
            self.compute(x, &step, frozen, share)
                .and_then(|stats| self.apply_held(&step, frozen).map(|()| stats))
        });
        if result.is_err() {
            self.failed_step(&rngs);
        }
        result
    }

    /// The gradient sums of one training step (algorithm.md §4.3) on the rows `share` of a
    /// batch — `x` and `labels` are those rows — without any update: what data-parallel
    /// training computes on each worker ([`Gradients`]). The dropout masks are the
    /// whole batch's ([`crate::layers::Dropout::forward_share`]), so the shares of a batch,
    /// added up in row order ([`Gradients::checked_add`]), are the gradients of the whole
    /// batch, and [`Mlp::apply_gradients`] of them is [`Mlp::train_step`] on it, bit for bit.
    ///
    /// The parameters are unchanged; the dropout generators advance as in the step (to the
    /// states the result carries). On error they are back where they were.
    pub fn gradients(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        share: Share,
    ) -> Result<Gradients> {
        self.check_batch(&x, Some(labels))?;
        share.check(labels.len())?;
        self.require_heads()?;
        let step = Step::new(labels, self.config.classes, hyper)?;
        let rngs = self.dropout_rngs();
        let taken = self.compute(x, &step, 0, share).and_then(|stats| {
            let mut layers = Vec::with_capacity(2 * self.blocks.len() + 1);
            take_classifier(&mut self.blocks, &mut self.out, &mut layers)?;
            Ok((stats, layers))
        });
        match taken {
            Ok((stats, layers)) => Ok(Gradients::of_share(
                &share,
                stats,
                self.dropout_rngs(),
                layers,
            )),
            Err(e) => {
                self.failed_step(&rngs);
                Err(e)
            }
        }
    }

    /// Apply the gradient sums of a whole batch (the shares from [`Mlp::gradients`] added up)
    /// with IntegerSGD and `hyper` — the update of [`Mlp::train_step`] — and take the dropout
    /// generators' states after the step from them. All-or-nothing: on error (sums of another
    /// model or of part of a batch, an update leaving `i32`, …) nothing changes. Returns the
    /// step's statistics, as `train_step` does.
    pub fn apply_gradients(&mut self, g: Gradients, hyper: &Hyper) -> Result<StepStats> {
        let stats = g.stats();
        let rngs = check_whole(&g, self.dropout_rngs().len())?;
        let (fwd_sgd, sub_sgd) = hyper.sgds()?;
        let now = self.dropout_rngs();
        let mut layers = g.layers.into_iter();
        let result = (|| {
            for b in &mut self.blocks {
                for l in b.layers_mut() {
                    put_next(l, &mut layers)?;
                }
            }
            put_next(&mut self.out, &mut layers)?;
            no_more(layers)?;
            tail_of!(mut self).apply(&fwd_sgd, &sub_sgd, 0, &mut ())
        })();
        match result {
            Ok(()) => {
                self.set_dropout_rngs(&rngs)?;
                Ok(stats)
            }
            Err(e) => {
                self.failed_step(&now);
                Err(e)
            }
        }
    }

    /// The training forward and every gradient of a step, kept in the layers.
    fn compute(
        &mut self,
        x: ArrayView2<'_, i8>,
        step: &Step<'_>,
        frozen: usize,
        share: Share,
    ) -> Result<StepStats> {
        let tail = tail_of!(mut self);
        par::on_pool(|| tail.compute(x.mapv(i16::from), step, frozen, share, &mut ()))
    }

    /// Apply the gradients the layers hold, all-or-nothing.
    fn apply_held(&mut self, step: &Step<'_>, frozen: usize) -> Result<()> {
        let tail = tail_of!(mut self);
        par::on_pool(|| tail.apply(&step.fwd_sgd, &step.sub_sgd, frozen, &mut ()))
    }

    /// After a failed step: drop what the layers saved and staged, restore the generators.
    fn failed_step(&mut self, rngs: &[Pcg32]) {
        for b in &mut self.blocks {
            b.clear();
        }
        self.out.clear();
        // The same layers as when the states were read: cannot fail.
        let _ = self.set_dropout_rngs(rngs);
    }

    /// A short human-readable description, e.g. `784-200-100-50-10 nitro_relu`.
    pub fn describe(&self) -> String {
        let mut s = format!("{}", self.config.inputs);
        for w in &self.config.hidden {
            s += &format!("-{w}");
        }
        s + &format!("-{} {}", self.config.classes, self.config.activation.name())
    }

    /// The dropout layers' mask generators, in order (part of a resumable run's state).
    pub fn dropout_rngs(&self) -> Vec<Pcg32> {
        classifier::dropout_rngs(self.dropouts.iter().flatten())
    }

    /// Restore the generators returned by [`Mlp::dropout_rngs`]; all or nothing.
    pub fn set_dropout_rngs(&mut self, rngs: &[Pcg32]) -> Result<()> {
        classifier::set_dropout_rngs(self.dropouts.iter_mut().flatten(), rngs)
    }

    /// Whether the model has its learning heads: `false` for an inference-only model (loaded
    /// from a blob exported without them, `export::BlobOptions::heads`), which predicts exactly
    /// as the model it was exported from but cannot be trained.
    pub fn has_heads(&self) -> bool {
        self.blocks.iter().all(LocalLinearBlock::has_head)
    }

    /// `Ok` when the model has its learning heads; otherwise the error that training (or
    /// saving as a model file) needs them.
    pub fn require_heads(&self) -> Result<()> {
        self.blocks
            .iter()
            .try_for_each(LocalLinearBlock::require_head)
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> usize {
        self.linears()
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()))
            .sum()
    }
}
