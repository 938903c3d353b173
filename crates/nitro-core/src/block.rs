//! Local-loss blocks (SPEC §4.1): forward layers plus a learning head with its own loss. No error
//! crosses a block boundary.

use crate::error::Result;
use crate::init::{bound, uniform, Init};
use crate::kernels::Int;
use crate::layers::{Activation, ActivationKind, Linear, Scaling};
use crate::optim::Sgd;
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// How the original implementation differs from the clean algorithm (SPEC §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compat {
    /// The clean algorithm of SPEC §3–§5 (default).
    #[default]
    Exact,
    /// Reproduce the original implementation bit for bit (SPEC §12).
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
            o => Err(crate::Error::config(format!(
                "compat must be \"exact\" or \"reference\", got {o:?}"
            ))),
        }
    }
}

/// The error `ŷ − y` of a classifier output (SPEC §4.1), exact or wrapped to `i8` (SPEC §12).
pub fn output_error(pred: &Array2<i8>, target: &Array2<i8>, compat: Compat) -> Array2<i32> {
    let mut d = Array2::<i32>::zeros(pred.raw_dim());
    ndarray::Zip::from(&mut d)
        .and(pred)
        .and(target)
        .for_each(|d, &p, &t| {
            let e = i32::from(p) - i32::from(t);
            *d = match compat {
                Compat::Exact => e,
                // The original stored the difference in an int8 (two's-complement wrap).
                Compat::Reference => i32::from(e as i8),
            };
        });
    d
}

/// Loss `Σ (y − ŷ)²` and the number of rows whose arg-max (first on ties) is the label.
pub fn loss_and_correct(pred: &Array2<i8>, target: &Array2<i8>, labels: &[usize]) -> (i64, u64) {
    let loss = pred
        .iter()
        .zip(target.iter())
        .map(|(&p, &t)| {
            let d = i64::from(p) - i64::from(t);
            d * d
        })
        .sum();
    let correct = argmax_rows(pred)
        .iter()
        .zip(labels)
        .filter(|(a, b)| a == b)
        .count() as u64;
    (loss, correct)
}

/// Index of the largest value in each row, first on ties (SPEC §4.4).
pub fn argmax_rows<T: Copy + Ord>(a: &Array2<T>) -> Vec<usize> {
    a.rows()
        .into_iter()
        .map(|r| {
            let mut best = 0;
            for (i, v) in r.iter().enumerate() {
                if *v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// The number of rows of `x` whose prediction equals the label, predicting `chunk` rows at a
/// time (bounded memory for large evaluation sets).
pub fn count_correct_chunked<'a>(
    x: ArrayView2<'a, i8>,
    labels: &[usize],
    chunk: usize,
    predict: impl Fn(ArrayView2<'a, i8>) -> Result<Vec<usize>>,
) -> Result<u64> {
    let chunk = chunk.max(1);
    let mut correct = 0u64;
    for start in (0..x.nrows()).step_by(chunk) {
        let end = (start + chunk).min(x.nrows());
        let p = predict(x.slice_move(ndarray::s![start..end, ..]))?;
        correct += p
            .iter()
            .zip(&labels[start..end])
            .filter(|(a, b)| a == b)
            .count() as u64;
    }
    Ok(correct)
}

/// Local loss and accuracy of one block for one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// `Σ (y − ŷ)²` of the head.
    pub loss: i64,
    /// Rows the head classified correctly.
    pub correct: u64,
}

/// `IntegerLinear(in→out) → Scaling → activation`, with head `IntegerLinear(out→classes) → Scaling`.
#[derive(Clone, Debug)]
pub struct LocalLinearBlock {
    /// The forward linear layer.
    pub fwd: Linear,
    /// Its scaling layer.
    pub fwd_scale: Scaling,
    /// The activation.
    pub act: Activation,
    /// The learning head's linear layer.
    pub head: Linear,
    /// The head's scaling layer.
    pub head_scale: Scaling,
    saved_out: Option<Array2<i8>>,
}

impl LocalLinearBlock {
    #[allow(clippy::too_many_arguments)]
    /// A freshly initialised block; `index` names its layers (`linear_encoder_{index:02}` and
    /// `linear_pred_{index:02}`), and seeds their streams.
    pub fn new(
        index: usize,
        inputs: usize,
        outputs: usize,
        classes: usize,
        kind: ActivationKind,
        init: Init,
        bias: bool,
        seed: u64,
    ) -> Result<Self> {
        let mut r = Pcg32::new(seed, index as u64);
        let w = uniform(
            (outputs, inputs),
            bound(init, kind, inputs, outputs),
            &mut r,
        );
        let mut r = Pcg32::new(seed, 1000 + index as u64);
        let h = uniform(
            (classes, outputs),
            bound(init, kind, outputs, classes),
            &mut r,
        );
        let b1 = bias.then(|| ndarray::Array1::zeros(outputs));
        let b2 = bias.then(|| ndarray::Array1::zeros(classes));
        Self::from_layers(
            Linear::new(format!("linear_encoder_{index:02}"), w, b1)?,
            Linear::new(format!("linear_pred_{index:02}"), h, b2)?,
            kind,
        )
    }

    /// A block from existing layers (e.g. loaded from a file).
    pub fn from_layers(fwd: Linear, head: Linear, kind: ActivationKind) -> Result<Self> {
        if head.in_features() != fwd.out_features() {
            return Err(crate::Error::shape(format!(
                "{} has {} inputs but {} has {} outputs",
                head.name,
                head.in_features(),
                fwd.name,
                fwd.out_features()
            )));
        }
        Ok(LocalLinearBlock {
            fwd_scale: Scaling::for_fan_in(fwd.in_features())?,
            head_scale: Scaling::for_fan_in(head.in_features())?,
            act: Activation::new(kind)?,
            fwd,
            head,
            saved_out: None,
        })
    }

    /// Forward through the block's forward layers; in training mode everything needed for the
    /// local update is saved.
    pub fn forward<T: Int>(&mut self, x: ArrayView2<'_, T>, train: bool) -> Result<Array2<i8>>
    where
        i16: From<T>,
    {
        let z = self.fwd.forward(x, train)?;
        Ok(self.forward_rest(z, train))
    }

    /// [`LocalLinearBlock::forward`] of an owned `i16` input, kept without a copy for the update.
    pub(crate) fn forward_owned(&mut self, x: Array2<i16>, train: bool) -> Result<Array2<i8>> {
        let z = self.fwd.forward_owned(x, train)?;
        Ok(self.forward_rest(z, train))
    }

    /// Scaling and activation of the forward layer's output `z`.
    fn forward_rest(&mut self, z: Array2<i64>, train: bool) -> Array2<i8> {
        let s = self.fwd_scale.forward(&z);
        let h = self.act.forward(s, train);
        self.saved_out = if train { Some(h.clone()) } else { None };
        h
    }

    /// Evaluation-mode forward without touching saved state.
    pub fn infer<T: Int>(&self, x: ArrayView2<'_, T>) -> Result<Array2<i8>> {
        let z = self.fwd.infer(x)?;
        Ok(self.act.infer(&self.fwd_scale.forward(&z)))
    }

    /// The head's prediction for a block output `h`.
    pub fn head_predict(&self, h: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        Ok(self.head_scale.forward(&self.head.infer(h)?))
    }

    /// The local update of SPEC §4.1/§4.3 on what the training forward saved: head forward,
    /// local error, head update (passing `δ·W_head` back), activation backward, forward-layer
    /// update. `repeat` re-runs it on the same saved tensors (SPEC §12, item 1).
    pub fn local_update(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
        repeat: bool,
    ) -> Result<LocalStats> {
        let h = self.saved_out.take().ok_or_else(|| {
            crate::Error::config(format!(
                "{}: local update without a training forward",
                self.fwd.name
            ))
        })?;
        let (fwd_saved, act_saved) = if repeat {
            (Some(self.fwd.clone()), Some(self.act.clone()))
        } else {
            (None, None)
        };
        let stats = self.update_once(&h, target, labels, fwd_sgd, head_sgd, compat)?;
        if let (Some(f), Some(a)) = (fwd_saved, act_saved) {
            // Restore the saved forward input and activation input, keeping the new weights.
            let w = core::mem::replace(&mut self.fwd, f);
            self.fwd.weight = w.weight;
            self.fwd.bias = w.bias;
            self.act = a;
            self.update_once(&h, target, labels, fwd_sgd, head_sgd, compat)?;
        }
        Ok(stats)
    }

    fn update_once(
        &mut self,
        h: &Array2<i8>,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
    ) -> Result<LocalStats> {
        let zh = self.head.forward(h.view(), true)?;
        let pred = self.head_scale.forward(&zh);
        let (loss, correct) = loss_and_correct(&pred, target, labels);
        let delta = output_error(&pred, target, compat);
        let back = self
            .head
            .backward(delta.view(), true, head_sgd)?
            .expect("input error requested");
        let d_act = self.act.backward(back)?;
        self.fwd.backward(d_act.view(), false, fwd_sgd)?;
        Ok(LocalStats { loss, correct })
    }

    /// Drop saved training state.
    pub fn clear(&mut self) {
        self.saved_out = None;
        self.fwd.clear();
        self.head.clear();
    }
}
