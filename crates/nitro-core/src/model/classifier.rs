//! The classifier both models end in (algorithm.md §4.2): local-loss linear blocks, each followed
//! by an optional Dropout, then the output `IntegerLinear → Scaling`; and its part of a training
//! step (algorithm.md §4.3). The MLP is this classifier on the flattened input; the CNN puts it
//! after its feature extractor.
//!
//! The layers belong to the model (its public `blocks` and `out`); [`Tail`] and [`TailMut`]
//! borrow them for one operation.

use crate::block::LocalLinearBlock;
use crate::data::Share;
use crate::error::{Error, Result};
use crate::init::{bound, try_uniform, Init};
use crate::kernels::par;
use crate::kernels::Int;
use crate::layers::{ActivationKind, Dropout, Linear, Scaling};
use crate::loss::{loss_and_correct, one_hot, output_error};
use crate::metrics::{LocalStats, StepStats};
use crate::names;
use crate::optim::{Compat, Hyper, Sgd};
use crate::rng::Pcg32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array1, Array2, ArrayView2};

/// The settings of the classifier's layers, common to both models' configurations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub classes: usize,
    pub activation: ActivationKind,
    pub init: Init,
    pub bias: bool,
    pub seed: u64,
    pub dropout_pct: u32,
}

impl Settings {
    /// The paper's defaults for `classes` classes (NITRO-ReLU a=4, Kaiming, no bias, no
    /// dropout, seed 0): what `MlpConfig::new` and `CnnConfig::new` start from.
    pub fn paper(classes: usize) -> Self {
        Settings {
            classes,
            activation: ActivationKind::default(),
            init: Init::Kaiming,
            bias: false,
            seed: 0,
            dropout_pct: 0,
        }
    }
}

/// The [`Settings`] of a model configuration (`MlpConfig`, `CnnConfig`): both carry them as
/// fields of these names.
macro_rules! settings_of {
    ($config:expr) => {{
        let c = $config;
        $crate::model::Settings {
            classes: c.classes,
            activation: c.activation,
            init: c.init,
            bias: c.bias,
            seed: c.seed,
            dropout_pct: c.dropout_pct,
        }
    }};
}
pub(crate) use settings_of;

/// A model configuration `$ty` of its own fields `$field: $value` and the [`Settings`] `$s`.
macro_rules! config_with {
    ($ty:ident { $($field:ident: $value:expr),* $(,)? }, $s:expr) => {{
        let s: $crate::model::Settings = $s;
        $ty {
            $($field: $value,)*
            classes: s.classes,
            activation: s.activation,
            init: s.init,
            bias: s.bias,
            seed: s.seed,
            dropout_pct: s.dropout_pct,
        }
    }};
}
pub(crate) use config_with;

/// The [`Tail`] (or, with `mut`, [`TailMut`]) of a model's classifier fields (`blocks`,
/// `dropouts`, `out`, `out_scale`: both models name them alike).
macro_rules! tail_of {
    ($model:expr) => {
        $crate::model::classifier::Tail {
            blocks: &$model.blocks,
            out: &$model.out,
            out_scale: &$model.out_scale,
        }
    };
    (mut $model:expr) => {
        $crate::model::classifier::TailMut {
            blocks: &mut $model.blocks,
            dropouts: &mut $model.dropouts,
            out: &mut $model.out,
            out_scale: &$model.out_scale,
        }
    };
}
pub(crate) use tail_of;

/// Name and `(out, in)` of every linear layer of a classifier on `inputs` features whose blocks
/// are numbered from `first`, in the order of the models' `linears`: each block's forward layer
/// and head, then the output layer.
pub(crate) fn linear_shapes(
    first: usize,
    inputs: usize,
    widths: &[usize],
    classes: usize,
) -> Vec<(String, (usize, usize))> {
    let mut v = Vec::with_capacity(2 * widths.len() + 1);
    let mut prev = inputs;
    for (j, &w) in widths.iter().enumerate() {
        v.push((names::linear_encoder(first + j), (w, prev)));
        v.push((names::linear_pred(first + j), (classes, w)));
        prev = w;
    }
    v.push((names::output(first + widths.len()), (classes, prev)));
    v
}

/// Freshly initialised blocks (numbered from `first`, on `inputs` features) and output layer.
pub(crate) fn new_layers(
    s: &Settings,
    first: usize,
    inputs: usize,
    widths: &[usize],
) -> Result<(Vec<LocalLinearBlock>, Linear)> {
    let mut blocks = Vec::with_capacity(widths.len());
    let mut prev = inputs;
    for (j, &w) in widths.iter().enumerate() {
        blocks.push(LocalLinearBlock::new(
            first + j,
            prev,
            w,
            s.classes,
            s.activation,
            s.init,
            s.bias,
            s.seed,
        )?);
        prev = w;
    }
    let mut r = Pcg32::new(s.seed, names::OUTPUT_STREAM);
    let b = bound(s.init, s.activation, prev, s.classes);
    let name = names::output(first + blocks.len());
    let w = try_uniform((s.classes, prev), b, &mut r, &name)?;
    let out = Linear::new(name, w, s.bias.then(|| Array1::zeros(s.classes)))?;
    Ok((blocks, out))
}

/// The dropout after each of `n` blocks numbered from `first` (none when the rate is 0).
/// The mask generators of `layers`, in order (part of a resumable run's state).
pub(crate) fn dropout_rngs<'a>(layers: impl Iterator<Item = &'a Dropout>) -> Vec<Pcg32> {
    layers.map(|d| d.rng().clone()).collect()
}

/// Restore the mask generators of `layers` from [`dropout_rngs`]; all or nothing.
pub(crate) fn set_dropout_rngs<'a>(
    layers: impl Iterator<Item = &'a mut Dropout>,
    rngs: &[Pcg32],
) -> Result<()> {
    let mut layers: Vec<&mut Dropout> = layers.collect();
    if layers.len() != rngs.len() {
        return Err(Error::config(format!(
            "the model has {} dropout layers but {} mask generator states were given",
            layers.len(),
            rngs.len()
        )));
    }
    for (l, r) in layers.iter_mut().zip(rngs) {
        l.set_rng(r.clone());
    }
    Ok(())
}

pub(crate) fn dropouts(s: &Settings, first: usize, n: usize) -> Result<Vec<Option<Dropout>>> {
    (first..first + n)
        .map(|i| {
            (s.dropout_pct > 0)
                .then(|| Dropout::new(s.dropout_pct, s.seed, names::dropout_stream(i)))
                .transpose()
        })
        .collect()
}

/// The targets and optimizers of one training step, prepared before any layer runs so that a
/// bad label or setting leaves the model untouched.
pub(crate) struct Step<'a> {
    pub target: Array2<i8>,
    pub labels: &'a [usize],
    pub fwd_sgd: Sgd,
    pub sub_sgd: Sgd,
    pub compat: Compat,
}

impl<'a> Step<'a> {
    pub fn new(labels: &'a [usize], classes: usize, hyper: &Hyper) -> Result<Self> {
        let target = one_hot(labels, classes)?;
        let (fwd_sgd, sub_sgd) = hyper.sgds()?;
        Ok(Step {
            target,
            labels,
            fwd_sgd,
            sub_sgd,
            compat: hyper.compat,
        })
    }
}

/// A model's classifier layers, borrowed for evaluation.
pub(crate) struct Tail<'m> {
    pub blocks: &'m [LocalLinearBlock],
    pub out: &'m Linear,
    pub out_scale: &'m Scaling,
}

impl<'m> Tail<'m> {
    /// Evaluation-mode logits (the output scaling layer's `i8`) for feature rows `x`.
    pub fn infer<T: Int>(&self, x: ArrayView2<'_, T>) -> Result<Array2<i8>> {
        let z = match self.blocks.split_first() {
            None => self.out.infer(x)?,
            Some((first, rest)) => {
                let mut h = first.infer(x)?;
                for b in rest {
                    h = b.infer(h.view())?;
                }
                self.out.infer(h.view())?
            }
        };
        Ok(self.out_scale.forward_consuming(z))
    }

    /// The linear layers: each block's forward layer and head, then the output layer.
    pub fn linears(&self) -> impl Iterator<Item = &'m Linear> {
        self.blocks
            .iter()
            .flat_map(|b| [&b.fwd, &b.head])
            .chain(core::iter::once(self.out))
    }
}

/// A model's classifier layers, borrowed for training.
pub(crate) struct TailMut<'m> {
    pub blocks: &'m mut [LocalLinearBlock],
    pub dropouts: &'m mut [Option<Dropout>],
    pub out: &'m mut Linear,
    pub out_scale: &'m Scaling,
}

/// Local updates that run alongside the classifier's in one training step (the CNN's conv
/// blocks): staged together with them, then all committed or all discarded.
pub(crate) trait Alongside: Send {
    /// Stage every update (checked, not written); one result per block, in order.
    fn stage(&mut self) -> Vec<Result<LocalStats>>;
    /// Write every staged update (`commit`), or drop them all.
    fn settle(&mut self, commit: bool);
    /// Compute every block's local gradients, kept in its layers (no update); one result per
    /// block, in order.
    fn compute(&mut self) -> Vec<Result<LocalStats>>;
    /// Stage the updates of the gradients the blocks hold (`fwd` the forward layers'
    /// IntegerSGD, `sub` the heads'); one result per block, in order.
    fn stage_computed(&mut self, fwd: &Sgd, sub: &Sgd) -> Vec<Result<()>>;
}

/// Nothing alongside (the MLP).
impl Alongside for () {
    fn stage(&mut self) -> Vec<Result<LocalStats>> {
        Vec::new()
    }
    fn settle(&mut self, _commit: bool) {}
    fn compute(&mut self) -> Vec<Result<LocalStats>> {
        Vec::new()
    }
    fn stage_computed(&mut self, _fwd: &Sgd, _sub: &Sgd) -> Vec<Result<()>> {
        Vec::new()
    }
}

impl TailMut<'_> {
    /// The classifier's part of algorithm.md §4.3 on the flattened features `input`, every
    /// update staged as soon as it is computed: training forward (each block saves what its
    /// update needs), output error `δ = ŷ − y` and output update, then every block's local
    /// update, independently (in parallel where available). `alongside` — the feature
    /// extractor's block updates — runs concurrently with the blocks' updates; its statistics
    /// come first. `repeat` re-runs each block's update on the same saved tensors, on top of
    /// the first (algorithm.md §12, item 1): the one step whose second gradient reads an
    /// update of the same step, hence this path; every other step is [`TailMut::compute`]
    /// then [`TailMut::apply`].
    ///
    /// All-or-nothing: every update is staged (checked, not written) and they are written only
    /// when all of them succeeded; on error none is, and the first error in block order
    /// (`alongside`'s first) is returned. No update reads parameters another one of the same
    /// step writes (but for `repeat`'s own), so staging gives the bits of writing each at once.
    pub fn train_step(
        mut self,
        input: Array2<i16>,
        step: &Step<'_>,
        repeat: bool,
        alongside: &mut impl Alongside,
    ) -> Result<StepStats> {
        let (delta, (loss, correct)) =
            self.forward(input, step, Share::whole(step.labels.len()))?;
        self.out
            .stage_backward(delta.view(), false, &step.sub_sgd)?;
        let update = |b: &mut LocalLinearBlock| {
            b.stage_update(
                &step.target,
                step.labels,
                &step.fwd_sgd,
                &step.sub_sgd,
                step.compat,
                repeat,
            )
        };
        let blocks = &mut *self.blocks;
        let (before, own): (Vec<Result<LocalStats>>, Vec<Result<LocalStats>>) =
            par::join(|| alongside.stage(), || par::map_mut(blocks, update));
        let stats = before.into_iter().chain(own).collect::<Result<Vec<_>>>();
        let commit = stats.is_ok();
        par::join(
            || alongside.settle(commit),
            || {
                par::map_mut(blocks, |b| match commit {
                    true => b.commit(),
                    false => b.discard(),
                })
            },
        );
        match commit {
            true => self.out.commit(),
            false => self.out.discard(),
        }
        Ok(StepStats {
            loss,
            correct,
            total: step.labels.len() as u64,
            blocks: stats?,
        })
    }
}

impl TailMut<'_> {
    /// The training forward of the classifier on the rows `share` of a batch, then the output
    /// error `δ = ŷ − y` with the output loss and correct count; the output layer keeps its
    /// input for the update.
    fn forward(
        &mut self,
        mut input: Array2<i16>,
        step: &Step<'_>,
        share: Share,
    ) -> Result<(Array2<i32>, (i64, u64))> {
        for (b, d) in self.blocks.iter_mut().zip(self.dropouts.iter_mut()) {
            input = block_forward(b, d, input, share)?;
        }
        output_forward(self.out, self.out_scale, input, step)
    }

    /// The gradients of the classifier's part of algorithm.md §4.3 on the rows `share` of a
    /// batch, without any update: training forward, output error and output-layer gradient,
    /// every trained block's local gradients, each kept in its layers; `alongside` (the
    /// feature extractor's blocks) computes its own concurrently. Apply them with
    /// [`TailMut::apply`] (or take them out of the layers first). On error the layers keep
    /// nothing (the caller clears them); a forward error comes first, then the first of the
    /// blocks' in order (`alongside`'s first), as if the forward had run before every update.
    pub fn compute(
        self,
        input: Array2<i16>,
        step: &Step<'_>,
        frozen: usize,
        share: Share,
        alongside: &mut impl Alongside,
    ) -> Result<StepStats> {
        let TailMut {
            blocks,
            dropouts,
            out,
            out_scale,
        } = self;
        let output = Output { out, out_scale };
        // `alongside` first: where there is one thread (a device), the feature extractor's
        // update temporaries are gone before the classifier's gradients are computed.
        let (before, (forward, own)) = par::join(
            || alongside.compute(),
            || learn_from(blocks, dropouts, output, input, step, frozen, share),
        );
        let (loss, correct) = forward?;
        Ok(StepStats {
            loss,
            correct,
            total: step.labels.len() as u64,
            blocks: before.into_iter().chain(own).collect::<Result<Vec<_>>>()?,
        })
    }

    /// Apply the gradients the layers hold (from [`TailMut::compute`] or put there) with
    /// IntegerSGD, all-or-nothing: every update is staged (checked, not written) — the output
    /// layer's first, then `alongside`'s and the blocks' in order — and written only when all
    /// succeeded; otherwise none is, and the first error is returned. The first `frozen`
    /// blocks hold no gradients and are left alone.
    pub fn apply(
        self,
        fwd_sgd: &Sgd,
        sub_sgd: &Sgd,
        frozen: usize,
        alongside: &mut impl Alongside,
    ) -> Result<()> {
        let frozen = frozen.min(self.blocks.len());
        let out = self.out.stage_gradient(sub_sgd);
        let blocks = &mut self.blocks[frozen..];
        let stage = |b: &mut LocalLinearBlock| b.stage_gradients(fwd_sgd, sub_sgd);
        let (before, own) = par::join(
            || alongside.stage_computed(fwd_sgd, sub_sgd),
            || par::map_mut(blocks, stage),
        );
        let result = out.and_then(|()| before.into_iter().chain(own).collect::<Result<Vec<()>>>());
        let commit = result.is_ok();
        par::join(
            || alongside.settle(commit),
            || {
                par::map_mut(blocks, |b| match commit {
                    true => b.commit(),
                    false => b.discard(),
                })
            },
        );
        match commit {
            true => self.out.commit(),
            false => self.out.discard(),
        }
        result.map(|_| ())
    }
}

/// The output layers of a classifier, borrowed for a training step.
struct Output<'m> {
    out: &'m mut Linear,
    out_scale: &'m Scaling,
}

/// The training forward of `blocks` (with their `dropouts`; the first `frozen` in evaluation
/// mode) and then `output` on `input`, ending in the output layer's gradient; every trained
/// block's local gradients as soon as its forward is done, while the forward goes on (a
/// block's update reads only what its own forward saved: algorithm.md §4.3 — so the order
/// changes no bit). Returns the forward's result — the output loss and correct count — and
/// each trained block's, in order.
fn learn_from(
    blocks: &mut [LocalLinearBlock],
    dropouts: &mut [Option<Dropout>],
    output: Output<'_>,
    input: Array2<i16>,
    step: &Step<'_>,
    frozen: usize,
    share: Share,
) -> (Result<(i64, u64)>, Vec<Result<LocalStats>>) {
    debug_assert_eq!(blocks.len(), dropouts.len(), "one dropout slot per block");
    let (Some((b, rest)), Some((d, drest))) =
        (blocks.split_first_mut(), dropouts.split_first_mut())
    else {
        let Output { out, out_scale } = output;
        let result = output_forward(out, out_scale, input, step).and_then(|(delta, stats)| {
            out.compute_backward(delta.view(), false)?;
            Ok(stats)
        });
        return (result, Vec::new());
    };
    if frozen > 0 {
        return match b.infer(input.view()) {
            Ok(h) => learn_from(
                rest,
                drest,
                output,
                h.mapv(i16::from),
                step,
                frozen - 1,
                share,
            ),
            Err(e) => (Err(e), Vec::new()),
        };
    }
    let next = match block_forward(b, d, input, share) {
        Ok(next) => next,
        Err(e) => return (Err(e), Vec::new()),
    };
    let (mine, (forward, mut theirs)) = par::join(
        || b.compute_gradients(&step.target, step.labels, step.compat),
        || learn_from(rest, drest, output, next, step, 0, share),
    );
    theirs.insert(0, mine);
    (forward, theirs)
}

/// A block's training forward (it saves what its update needs) and its dropout: the next
/// block's input.
fn block_forward(
    b: &mut LocalLinearBlock,
    dropout: &mut Option<Dropout>,
    input: Array2<i16>,
    share: Share,
) -> Result<Array2<i16>> {
    let h = b.forward_owned(input, true)?;
    Ok(match dropout {
        Some(d) => d.forward_share(&h, true, share),
        None => h.mapv(i16::from),
    })
}

/// The output layer's training forward (it keeps its input) and scaling on the last block's
/// output, then the output error `δ = ŷ − y` with the output loss and correct count.
fn output_forward(
    out: &mut Linear,
    out_scale: &Scaling,
    input: Array2<i16>,
    step: &Step<'_>,
) -> Result<(Array2<i32>, (i64, u64))> {
    let pred = out_scale.forward(&out.forward_owned(input, true)?);
    let stats = loss_and_correct(&pred, &step.target, step.labels);
    Ok((output_error(&pred, &step.target, step.compat), stats))
}

/// The linear layer called `name` among a classifier's layers.
pub(crate) fn linear_mut<'m>(
    blocks: &'m mut [LocalLinearBlock],
    out: &'m mut Linear,
    name: &str,
) -> Option<&'m mut Linear> {
    if out.name == name {
        return Some(out);
    }
    blocks.iter_mut().find_map(|b| {
        if b.fwd.name == name {
            Some(&mut b.fwd)
        } else if b.head.name == name {
            Some(&mut b.head)
        } else {
            None
        }
    })
}
