//! The local-loss CNN (algorithm.md §4.2): a feature extractor of conv blocks, pools and dropouts,
//! then the shared classifier (see [`super::classifier`]) on the flattened features; its training
//! step (§4.3, with the §12 differences) and prediction (§4.4).

use super::classifier::{self, tail_of, Step, Tail};
use super::cnn_config::{CnnConfig, Feature, FeatureShape};
use super::gradients::{check_whole, no_more, put_next, take_classifier, take_into, Gradients};
use crate::block::{LocalConv2dBlock, LocalLinearBlock};
use crate::data::Normalization;
use crate::data::Share;
use crate::error::{Error, Result};
use crate::init::{bound, try_uniform};
use crate::kernels::{buffers, par};
use crate::layers::{flatten, Conv2d, Dropout, Linear, Pool2d, PoolKind, Scaling};
use crate::loss::{argmax_rows, count_correct_chunked};
use crate::metrics::{LocalStats, StepStats};
use crate::names;
use crate::optim::{Compat, Hyper, Sgd};
use crate::rng::Pcg32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView4};

/// One stage of the feature extractor.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Stage {
    /// A local-loss conv block.
    Block(LocalConv2dBlock),
    /// A plain pooling layer between blocks.
    Pool(Pool2d),
    /// A dropout layer.
    Dropout(Dropout),
}

/// A convolution's weight `F × C × k × k` and optional bias `F`, as [`Cnn::load_with`] reads
/// them.
pub type ConvParams = (Array4<i32>, Option<Array1<i32>>);

/// `IntegerLocalLossCNN` (algorithm.md §4.2): feature extractor → Flatten → LocalLinearBlocks (with
/// optional Dropout) → output `IntegerLinear` → Scaling.
///
/// Layers are named by position ([`crate::names`]): entry `i` of
/// [`CnnConfig::effective_features`] is conv block `i`; classifier block `j` is block `n + j`
/// with `n` features; the output layer comes after all of them.
#[derive(Clone, Debug)]
pub struct Cnn {
    /// The architecture this model was built from.
    pub config: CnnConfig,
    /// The feature extractor.
    pub stages: Vec<Stage>,
    /// The classifier's local-loss blocks.
    pub blocks: Vec<LocalLinearBlock>,
    dropouts: Vec<Option<Dropout>>,
    /// The output layer.
    pub out: Linear,
    out_scale: Scaling,
    /// Geometry `(C, d, d)` of the flattened features.
    pub feature_shape: (usize, usize, usize),
    /// Normalisation statistics of the training data (saved with the model).
    pub normalization: Option<Normalization>,
    /// The settings of the last training run (saved with the model).
    pub hyper: Option<Hyper>,
}

impl Cnn {
    /// A freshly initialised model.
    pub fn new(config: CnnConfig) -> Result<Self> {
        let (shapes, feature_shape) = config.feature_shapes()?;
        let stages = shapes
            .iter()
            .map(|f| new_stage(&config, f))
            .collect::<Result<Vec<_>>>()?;
        let (c, d, _) = feature_shape;
        let (blocks, out) = classifier::new_layers(
            &config.settings(),
            shapes.len(),
            c * d * d,
            &config.classifier,
        )?;
        Self::assemble(config, stages, blocks, out, feature_shape)
    }

    /// The model of `config` from its layers: the classifier's dropouts (seeded by the
    /// configuration, numbered after the `stages`) and output scaling added, no normalisation
    /// or settings yet.
    fn assemble(
        config: CnnConfig,
        stages: Vec<Stage>,
        blocks: Vec<LocalLinearBlock>,
        out: Linear,
        feature_shape: (usize, usize, usize),
    ) -> Result<Self> {
        let dropouts = classifier::dropouts(&config.settings(), stages.len(), blocks.len())?;
        Ok(Cnn {
            out_scale: Scaling::for_fan_in(out.in_features())?,
            config,
            stages,
            blocks,
            dropouts,
            out,
            feature_shape,
            normalization: None,
            hyper: None,
        })
    }

    /// A model from its parameters, supplied in the order of the stack: for every conv block
    /// its convolution by `conv(name, (F, C, k, k))` (weight and bias) and its learning head by
    /// `linear(name, (classes, D))`, then the classifier's layers by `linear` in
    /// [`super::MlpConfig::linear_shapes`] order (each block's forward layer and head, then
    /// the output layer). Every shape is checked against `config`; the learning heads are all
    /// present, or all absent (an inference-only model, [`crate::block::absent_head`]).
    pub fn load_with(
        config: CnnConfig,
        mut conv: impl FnMut(String, (usize, usize, usize, usize)) -> Result<ConvParams>,
        mut linear: impl FnMut(String, (usize, usize)) -> Result<Linear>,
    ) -> Result<Self> {
        let (shapes, feature_shape) = config.feature_shapes()?;
        let classes = config.classes;
        // Heads present (Some(true)) or absent (Some(false)), as the first one says.
        let mut heads: Option<bool> = None;
        let mut check = |l: &Linear, (o, i): (usize, usize), head: bool| {
            let present = head && *heads.get_or_insert(l.out_features() != 0);
            let want = if head && !present { (0, i) } else { (o, i) };
            match l.weight.dim() == want {
                true => Ok(()),
                false => Err(Error::shape(format!(
                    "{}: {:?} does not match the configuration's {want:?} (learning heads must \
                     be all present or all absent)",
                    l.name,
                    l.weight.dim()
                ))),
            }
        };
        let mut stages = Vec::with_capacity(shapes.len());
        for f in &shapes {
            let Feature::Conv {
                filters,
                kernel,
                stride,
                padding,
            } = f.feature
            else {
                stages.push(new_stage(&config, f)?);
                continue;
            };
            let g = f
                .head
                .ok_or_else(|| Error::config("conv entry without a head"))?;
            let name = names::conv_encoder(f.index);
            let want = (filters, f.input.0, kernel, kernel);
            let (w, b) = conv(name.clone(), want)?;
            if w.dim() != want {
                return Err(Error::shape(format!(
                    "{name}: {:?} does not match the configuration's {want:?}",
                    w.dim()
                )));
            }
            let c = Conv2d::new(name, w, b, stride, padding)?;
            let head_shape = (classes, g.features);
            let head = linear(names::linear_pred(f.index), head_shape)?;
            check(&head, head_shape, true)?;
            stages.push(Stage::Block(LocalConv2dBlock::from_layers(
                c,
                head,
                f.input.1,
                config.decoder_dim,
                config.head_pool,
                config.activation,
            )?));
        }
        let (c, d, _) = feature_shape;
        let mut layers =
            classifier::linear_shapes(shapes.len(), c * d * d, &config.classifier, classes)
                .into_iter();
        let mut next = |head: bool| -> Result<Linear> {
            let (name, shape) = layers
                .next()
                .ok_or_else(|| Error::shape("fewer layers than the configuration"))?;
            let l = linear(name, shape)?;
            check(&l, shape, head)?;
            Ok(l)
        };
        let mut blocks = Vec::with_capacity(config.classifier.len());
        for _ in &config.classifier {
            let fwd = next(false)?;
            let head = next(true)?;
            blocks.push(LocalLinearBlock::from_layers(fwd, head, config.activation)?);
        }
        let out = next(false)?;
        Self::assemble(config, stages, blocks, out, feature_shape)
    }

    /// Whether the model has its learning heads: `false` for an inference-only model (loaded
    /// from a blob exported without them, `export::BlobOptions::heads`), which predicts exactly
    /// as the model it was exported from but cannot be trained.
    pub fn has_heads(&self) -> bool {
        self.conv_blocks().iter().all(|b| b.has_head())
            && self.blocks.iter().all(LocalLinearBlock::has_head)
    }

    /// `Ok` when the model has its learning heads; otherwise the error that training (or
    /// saving as a model file) needs them.
    pub fn require_heads(&self) -> Result<()> {
        self.conv_blocks()
            .iter()
            .try_for_each(|b| b.require_head())?;
        self.blocks
            .iter()
            .try_for_each(LocalLinearBlock::require_head)
    }

    /// The conv blocks, in order.
    pub fn conv_blocks(&self) -> Vec<&LocalConv2dBlock> {
        self.stages
            .iter()
            .filter_map(|s| match s {
                Stage::Block(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// All convolutions, in order.
    pub fn convs(&self) -> Vec<&Conv2d> {
        self.conv_blocks().into_iter().map(|b| &b.conv).collect()
    }

    /// All linear layers in a fixed order: conv heads, classifier blocks (forward, head), output.
    pub fn linears(&self) -> Vec<&Linear> {
        let heads = self.conv_blocks().into_iter().map(|b| &b.head);
        heads.chain(self.tail().linears()).collect()
    }

    fn tail(&self) -> Tail<'_> {
        tail_of!(self)
    }

    /// Mutable access to the convolution called `name`.
    pub fn conv_mut(&mut self, name: &str) -> Option<&mut Conv2d> {
        self.stages.iter_mut().find_map(|s| match s {
            Stage::Block(b) if b.conv.name == name => Some(&mut b.conv),
            _ => None,
        })
    }

    /// Mutable access to the linear layer called `name`.
    pub fn linear_mut(&mut self, name: &str) -> Option<&mut Linear> {
        let head = self.stages.iter_mut().find_map(|s| match s {
            Stage::Block(b) if b.head.name == name => Some(&mut b.head),
            _ => None,
        });
        head.or_else(|| classifier::linear_mut(&mut self.blocks, &mut self.out, name))
    }

    /// Number of local-loss blocks (conv blocks, then classifier blocks).
    pub fn num_local_blocks(&self) -> usize {
        self.conv_blocks().len() + self.blocks.len()
    }

    /// The dropout layers' mask generators, features first, then the classifier's (part of a
    /// resumable run's state).
    pub fn dropout_rngs(&self) -> Vec<Pcg32> {
        let features = self.stages.iter().filter_map(|s| match s {
            Stage::Dropout(d) => Some(d),
            _ => None,
        });
        classifier::dropout_rngs(features.chain(self.dropouts.iter().flatten()))
    }

    /// Restore the generators returned by [`Cnn::dropout_rngs`]; all or nothing.
    pub fn set_dropout_rngs(&mut self, rngs: &[Pcg32]) -> Result<()> {
        let features = self.stages.iter_mut().filter_map(|s| match s {
            Stage::Dropout(d) => Some(d),
            _ => None,
        });
        classifier::set_dropout_rngs(features.chain(self.dropouts.iter_mut().flatten()), rngs)
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> usize {
        let c: usize = self
            .convs()
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()))
            .sum();
        c + self
            .linears()
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()))
            .sum::<usize>()
    }

    /// Reshape rows `N × (C·H·W)` into NCHW, checking the geometry.
    pub fn images<'a>(&self, x: ArrayView2<'a, i8>) -> Result<ArrayView4<'a, i8>> {
        let (c, h, w) = self.config.input;
        if x.nrows() == 0 {
            return Err(Error::shape("empty batch"));
        }
        if x.ncols() != c * h * w {
            return Err(Error::shape(format!(
                "model expects {} values per image ({c}×{h}×{w}), got {}",
                c * h * w,
                x.ncols()
            )));
        }
        x.into_shape_with_order((x.nrows(), c, h, w))
            .map_err(|_| Error::shape("input rows must be contiguous (standard layout)"))
    }

    fn check_images(&self, x: &ArrayView4<'_, i8>, labels: Option<&[usize]>) -> Result<()> {
        let (n, c, h, w) = x.dim();
        if n == 0 {
            return Err(Error::shape("empty batch"));
        }
        if (c, h, w) != self.config.input {
            return Err(Error::shape(format!(
                "model expects images {:?}, got {:?}",
                self.config.input,
                (c, h, w)
            )));
        }
        if let Some(l) = labels {
            if l.len() != n {
                return Err(Error::shape(format!("{n} samples but {} labels", l.len())));
            }
        }
        Ok(())
    }

    /// Feature-extractor training forward: each block keeps what its update needs.
    fn features_forward(
        &mut self,
        x: ArrayView4<'_, i8>,
        compat: Compat,
        share: Share,
    ) -> Result<Array4<i16>> {
        let mut cur = Features::Input(x);
        for i in 0..self.stages.len() {
            let (done, rest) = self.stages.split_at_mut(i);
            cur = match &mut rest[0] {
                Stage::Block(b) => {
                    match cur.view(done)? {
                        View::I8(v) => b.forward_kept(v)?,
                        View::I16(v) => b.forward_kept(v)?,
                    }
                    Features::Kept(i)
                }
                Stage::Pool(p) => cur.view(done)?.pooled(p, compat)?,
                Stage::Dropout(d) => Features::I16(match cur {
                    Features::Input(v) => d.forward_share(&v.to_owned(), true, share),
                    Features::Kept(j) => d.forward_share(kept(done, j)?, true, share),
                    Features::I8(a) => d.forward_share(&a, true, share),
                    Features::I16(a) => d.forward_share(&narrow_i8(&a)?, true, share),
                }),
            };
        }
        cur.into_i16(&self.stages)
    }

    fn features_infer(&self, x: ArrayView4<'_, i8>, compat: Compat) -> Result<Array4<i16>> {
        let mut cur = Features::Input(x);
        for s in &self.stages {
            let next = match s {
                Stage::Block(b) => Features::I8(match cur.view(&[])? {
                    View::I8(v) => b.infer(v)?,
                    View::I16(v) => b.infer(v)?,
                }),
                Stage::Pool(p) => cur.view(&[])?.pooled(p, compat)?,
                Stage::Dropout(_) => continue,
            };
            // A stage's input is spent: its buffer serves the next batch's (kernels/buffers.rs).
            match core::mem::replace(&mut cur, next) {
                Features::I8(a) => buffers::give_array(a),
                Features::I16(a) => buffers::give_array(a),
                Features::Input(_) | Features::Kept(_) => {}
            }
        }
        cur.into_i16(&[])
    }

    fn compat(&self) -> Compat {
        self.hyper.map_or(Compat::Exact, |h| h.compat)
    }

    /// Evaluation-mode logits for NCHW images.
    pub fn predict_logits(&self, x: ArrayView4<'_, i8>) -> Result<Array2<i8>> {
        self.check_images(&x, None)?;
        par::on_pool(|| {
            let features = flatten(self.features_infer(x, self.compat())?);
            self.tail().infer(features.view())
        })
    }

    /// Predicted classes for rows `N × (C·H·W)` (arg-max, first on ties; algorithm.md §4.4).
    pub fn predict(&self, x: ArrayView2<'_, i8>) -> Result<Vec<usize>> {
        let x = x.as_standard_layout();
        Ok(argmax_rows(&self.predict_logits(self.images(x.view())?)?))
    }

    /// Number of correct predictions on rows `x`, evaluated in chunks of `chunk` rows.
    pub fn count_correct(
        &self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        chunk: usize,
    ) -> Result<u64> {
        if labels.len() != x.nrows() {
            return Err(Error::shape("samples and labels differ in number"));
        }
        count_correct_chunked(x, labels, chunk, |rows| self.predict(rows))
    }

    /// One training step of algorithm.md §4.3 on NCHW images. In [`Compat::Reference`] the
    /// classifier blocks are updated twice (algorithm.md §12 item 1), errors wrap to `i8` (item 2)
    /// and the heads' max-pool padding is 0 (item 3).
    ///
    /// All-or-nothing: every layer's update is checked before any is written, so on error (an
    /// [`Error::Overflow`] naming the layer whose update would leave `i32`, …) no parameter of
    /// the model has changed, and the dropout generators are back where they were.
    pub fn train_step(
        &mut self,
        x: ArrayView4<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        self.check_images(&x, Some(labels))?;
        self.require_heads()?;
        let step = Step::new(labels, self.config.classes, hyper)?;
        let rngs = self.dropout_rngs();
        // One stay on the pool for the whole step (the pool is kept awake through it).
        let result = par::on_pool(|| match step.compat {
            // The classifier's second update reads the first one's result: staged in one go.
            Compat::Reference => self.step_staged(x, &step),
            // One source of the update: the step's gradients, then their application — what
            // data-parallel training does with the gradients of several shares added up.
            Compat::Exact => self
                .compute(x, &step, Share::whole(labels.len()))
                .and_then(|stats| {
                    self.apply_held(&step.fwd_sgd, &step.sub_sgd)
                        .map(|()| stats)
                }),
        });
        if result.is_err() {
            self.failed_step(&rngs);
        }
        result
    }

    /// The gradient sums of one training step on the rows `share` of a batch (`x`, `labels`
    /// are those rows), without any update, as [`crate::Mlp::gradients`]: the dropout masks
    /// are the whole batch's, so the shares added up and applied
    /// ([`Cnn::apply_gradients`]) are [`Cnn::train_step`] on the batch, bit for bit.
    ///
    /// [`Compat::Reference`] is refused: its second update of the classifier blocks
    /// (algorithm.md §12 item 1) reads the first update's result, so its gradients are not
    /// functions of the weights before the step.
    pub fn gradients(
        &mut self,
        x: ArrayView4<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        share: Share,
    ) -> Result<Gradients> {
        if hyper.compat == Compat::Reference {
            return Err(Error::config(
                "data-parallel training of a CNN needs compat=\"exact\": in compat=\"reference\" \
                 the classifier blocks are updated twice per step (algorithm.md §12), the second \
                 time from the first update's result, which one exchange of gradient sums per \
                 step cannot give; train with one worker, or with compat=\"exact\"",
            ));
        }
        self.check_images(&x, Some(labels))?;
        share.check(labels.len())?;
        self.require_heads()?;
        let step = Step::new(labels, self.config.classes, hyper)?;
        let rngs = self.dropout_rngs();
        let taken = self.compute(x, &step, share).and_then(|stats| {
            let mut layers = Vec::new();
            for s in &mut self.stages {
                if let Stage::Block(b) = s {
                    take_into(&mut b.conv, &mut layers)?;
                    take_into(&mut b.head, &mut layers)?;
                }
            }
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

    /// Apply the gradient sums of a whole batch with IntegerSGD and `hyper`, as
    /// [`crate::Mlp::apply_gradients`]: the update of [`Cnn::train_step`], all-or-nothing, the
    /// dropout generators taken from the sums; returns the step's statistics.
    pub fn apply_gradients(&mut self, g: Gradients, hyper: &Hyper) -> Result<StepStats> {
        let stats = g.stats();
        let rngs = check_whole(&g, self.dropout_rngs().len())?;
        let (fwd_sgd, sub_sgd) = hyper.sgds()?;
        let now = self.dropout_rngs();
        let mut layers = g.layers.into_iter();
        let result = (|| {
            for s in &mut self.stages {
                if let Stage::Block(b) = s {
                    put_next(&mut b.conv, &mut layers)?;
                    put_next(&mut b.head, &mut layers)?;
                }
            }
            for b in &mut self.blocks {
                for l in b.layers_mut() {
                    put_next(l, &mut layers)?;
                }
            }
            put_next(&mut self.out, &mut layers)?;
            no_more(layers)?;
            self.apply_held(&fwd_sgd, &sub_sgd)
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

    /// The training forward on the rows `share` and every gradient of the step, kept in the
    /// layers.
    fn compute(
        &mut self,
        x: ArrayView4<'_, i8>,
        step: &Step<'_>,
        share: Share,
    ) -> Result<StepStats> {
        par::on_pool(|| {
            let compat = step.compat;
            let features = flatten(self.features_forward(x, compat, share)?);
            let mut convs = conv_updates(&mut self.stages, Some(step), self.config.conv_amp_adjust);
            let tail = tail_of!(mut self);
            tail.compute(features, step, 0, share, &mut convs)
        })
    }

    /// The step of [`Compat::Reference`], every update staged as it is computed (the
    /// classifier blocks' second update reads the first's result).
    fn step_staged(&mut self, x: ArrayView4<'_, i8>, step: &Step<'_>) -> Result<StepStats> {
        par::on_pool(|| {
            let compat = step.compat;
            let share = Share::whole(step.labels.len());
            let features = flatten(self.features_forward(x, compat, share)?);
            let mut convs = conv_updates(&mut self.stages, Some(step), self.config.conv_amp_adjust);
            let tail = tail_of!(mut self);
            tail.train_step(features, step, compat == Compat::Reference, &mut convs)
        })
    }

    /// Apply the gradients the layers hold, all-or-nothing.
    fn apply_held(&mut self, fwd: &Sgd, sub: &Sgd) -> Result<()> {
        par::on_pool(|| {
            let mut convs = conv_updates(&mut self.stages, None, self.config.conv_amp_adjust);
            let tail = tail_of!(mut self);
            tail.apply(fwd, sub, 0, &mut convs)
        })
    }

    /// After a failed step: drop what the layers saved and staged, restore the generators.
    fn failed_step(&mut self, rngs: &[Pcg32]) {
        for s in &mut self.stages {
            if let Stage::Block(b) = s {
                b.clear();
            }
        }
        for b in &mut self.blocks {
            b.clear();
        }
        self.out.clear();
        // The same layers as when the states were read: cannot fail.
        let _ = self.set_dropout_rngs(rngs);
    }

    /// A short human-readable description, e.g. `1×28×28 C8 M2 C16 M2 | 32 → 10 nitro_relu`.
    pub fn describe(&self) -> String {
        let (c, h, w) = self.config.input;
        let mut s = format!("{c}×{h}×{w}");
        for f in self.config.effective_features() {
            s += &match f {
                Feature::Conv {
                    filters, kernel, ..
                } => format!(" C{filters}k{kernel}"),
                Feature::MaxPool(k) => format!(" M{k}"),
                Feature::AvgPool(k) => format!(" A{k}"),
                Feature::Dropout(r) => format!(" D{r}"),
            };
        }
        s += " |";
        for wd in &self.config.classifier {
            s += &format!(" {wd}");
        }
        s + &format!(
            " → {} {}",
            self.config.classes,
            self.config.activation.name()
        )
    }
}

/// The conv blocks' local updates of one training step, staged alongside the classifier's.
struct ConvUpdates<'m, 's> {
    blocks: Vec<&'m mut LocalConv2dBlock>,
    /// The step (for computing the gradients or staging in one go; not needed to apply
    /// gradients the blocks hold).
    step: Option<&'s Step<'s>>,
    /// [`CnnConfig::conv_amp_adjust`].
    adjust: bool,
}

/// The conv blocks among `stages`, for one step's updates.
fn conv_updates<'m, 's>(
    stages: &'m mut [Stage],
    step: Option<&'s Step<'s>>,
    adjust: bool,
) -> ConvUpdates<'m, 's> {
    ConvUpdates {
        blocks: stages
            .iter_mut()
            .filter_map(|s| match s {
                Stage::Block(b) => Some(b),
                _ => None,
            })
            .collect(),
        step,
        adjust,
    }
}

/// The IntegerSGD of a conv block's convolution: `fwd`, with the opt-in amplification
/// adjustment when `adjust` is set.
fn conv_sgd(b: &LocalConv2dBlock, fwd: &Sgd, adjust: bool) -> Result<Sgd> {
    if !adjust {
        return Ok(*fwd);
    }
    let amp = fwd
        .amp
        .checked_mul(b.amp_adjustment())
        .ok_or_else(|| Error::config("amplification overflows i64"))?;
    Sgd::new(fwd.lr_inv, amp, fwd.decay_inv)
}

/// The staged local update of one conv block (with the opt-in amplification adjustment).
fn stage_conv(b: &mut LocalConv2dBlock, step: &Step<'_>, adjust: bool) -> Result<LocalStats> {
    let sgd = conv_sgd(b, &step.fwd_sgd, adjust)?;
    b.stage_update(&step.target, step.labels, &sgd, &step.sub_sgd, step.compat)
}

/// The error of a conv-block update asked without its step (cannot happen: the model always
/// passes the step where one is needed).
fn no_step() -> Error {
    Error::config("conv block update without its training step")
}

impl classifier::Alongside for ConvUpdates<'_, '_> {
    fn stage(&mut self) -> Vec<Result<LocalStats>> {
        let (step, adjust) = (self.step, self.adjust);
        par::map_mut(&mut self.blocks, |b: &mut &mut LocalConv2dBlock| {
            stage_conv(b, step.ok_or_else(no_step)?, adjust)
        })
    }
    fn settle(&mut self, commit: bool) {
        par::map_mut(
            &mut self.blocks,
            |b: &mut &mut LocalConv2dBlock| match commit {
                true => b.commit(),
                false => b.discard(),
            },
        );
    }
    fn compute(&mut self) -> Vec<Result<LocalStats>> {
        let step = self.step;
        par::map_mut(&mut self.blocks, |b: &mut &mut LocalConv2dBlock| {
            let step = step.ok_or_else(no_step)?;
            b.compute_gradients(&step.target, step.labels, step.compat)
        })
    }
    fn stage_computed(&mut self, fwd: &Sgd, sub: &Sgd) -> Vec<Result<()>> {
        let adjust = self.adjust;
        par::map_mut(&mut self.blocks, |b: &mut &mut LocalConv2dBlock| {
            let sgd = conv_sgd(b, fwd, adjust)?;
            b.stage_gradients(&sgd, sub)
        })
    }
}

/// The freshly initialised stage of one feature-extractor entry.
fn new_stage(config: &CnnConfig, f: &FeatureShape) -> Result<Stage> {
    let (i, (c, d)) = (f.index, f.input);
    Ok(match f.feature {
        Feature::Conv {
            filters,
            kernel,
            stride,
            padding,
        } => {
            let (kind, zeros) = (config.activation, |n| config.bias.then(|| Array1::zeros(n)));
            let mut r = Pcg32::new(config.seed, names::encoder_stream(i));
            let b = bound(
                config.init,
                kind,
                c * kernel * kernel,
                filters * kernel * kernel,
            );
            let name = names::conv_encoder(i);
            let w = try_uniform((filters, c, kernel, kernel), b, &mut r, &name)?;
            let conv = Conv2d::new(name, w, zeros(filters), stride, padding)?;
            let g = f
                .head
                .ok_or_else(|| Error::config("conv entry without a head"))?;
            let mut r = Pcg32::new(config.seed, names::head_stream(i));
            let hb = bound(config.init, kind, g.features, config.classes);
            let name = names::linear_pred(i);
            let w = try_uniform((config.classes, g.features), hb, &mut r, &name)?;
            let head = Linear::new(name, w, zeros(config.classes))?;
            Stage::Block(LocalConv2dBlock::from_layers(
                conv,
                head,
                d,
                config.decoder_dim,
                config.head_pool,
                kind,
            )?)
        }
        Feature::MaxPool(k) => Stage::Pool(Pool2d::new(PoolKind::Max, (k, k), (0, 0))?),
        Feature::AvgPool(k) => Stage::Pool(Pool2d::new(PoolKind::Avg, (k, k), (0, 0))?),
        Feature::Dropout(r) => {
            Stage::Dropout(Dropout::new(r, config.seed, names::dropout_stream(i))?)
        }
    })
}

/// The feature maps between stages, in the narrowest type that holds them: the `i8` images and
/// block outputs (and pools of them) as they are — widening a block-1 output to `i16` was a
/// fresh 13 MB per VGG8B step — and `i16` after a dropout (the widening takes place where a
/// stage reads them: the convolution's padded input, or at the end for the classifier). A
/// training block's output is read where the block keeps it for its update (`Kept`: the
/// stage's index), not copied.
enum Features<'a> {
    Input(ArrayView4<'a, i8>),
    Kept(usize),
    I8(Array4<i8>),
    I16(Array4<i16>),
}

/// A view of [`Features`].
enum View<'b> {
    I8(ArrayView4<'b, i8>),
    I16(ArrayView4<'b, i16>),
}

impl View<'_> {
    /// The pool of these maps (values only), in the same type.
    fn pooled<'a>(self, p: &Pool2d, compat: Compat) -> Result<Features<'a>> {
        Ok(match self {
            View::I8(v) => Features::I8(p.values(v, compat)?),
            View::I16(v) => Features::I16(p.values(v, compat)?),
        })
    }
}

/// The output block `stages[j]` kept for its update.
fn kept(stages: &[Stage], j: usize) -> Result<&Array4<i8>> {
    match stages.get(j) {
        Some(Stage::Block(b)) => b.kept_output(),
        _ => None,
    }
    .ok_or_else(|| Error::config(format!("stage {j}: no kept training output")))
}

impl Features<'_> {
    /// The maps, `done` the stages before the one reading them.
    fn view<'b>(&'b self, done: &'b [Stage]) -> Result<View<'b>> {
        Ok(match self {
            Features::Input(v) => View::I8(v.view()),
            Features::Kept(j) => View::I8(kept(done, *j)?.view()),
            Features::I8(a) => View::I8(a.view()),
            Features::I16(a) => View::I16(a.view()),
        })
    }

    /// The maps widened to `i16` (the classifier's input), `stages` the model's.
    fn into_i16(self, stages: &[Stage]) -> Result<Array4<i16>> {
        Ok(match self {
            Features::Input(v) => v.mapv(i16::from),
            Features::Kept(j) => kept(stages, j)?.mapv(i16::from),
            Features::I8(a) => a.mapv(i16::from),
            Features::I16(a) => a,
        })
    }
}

/// `i16` maps holding `i8` values (a dropout's input): an error if one is outside `i8`, which
/// only another dropout's output can be.
fn narrow_i8(x: &Array4<i16>) -> Result<Array4<i8>> {
    let mut out = Array4::<i8>::zeros(x.raw_dim());
    for (o, &v) in out.iter_mut().zip(x.iter()) {
        *o = i8::try_from(v).map_err(|_| {
            Error::config("a Dropout feature must follow a conv block or pool, not another dropout")
        })?;
    }
    Ok(out)
}
