//! Data-parallel training (algorithm.md §4.3): the gradient sums of one training step, computed
//! on a share of the batch, added up exactly across shares, and applied once.
//!
//! Why a split batch gives the same update, bit for bit: in one step every layer's gradient is
//! `Σ over the batch's rows` of a function of that row and of the weights *before* the step
//! (the whole model's forward runs first and every block's update reads only what it saved;
//! no quantity of the step depends on the whole batch — no division by the batch size, no
//! batch statistics). The `i64` sums are exact and integer addition is associative, so the sum
//! of the shares' sums *is* the batch's sum; IntegerSGD (`tdiv(G, lr_inv·amp)`, algorithm.md
//! §5) then runs once on that total. Dividing each share's gradient would not be the same.
//!
//! The two random draws of a step are handled so that a sample's draw does not depend on who
//! computes it: the dropout masks of the whole batch are drawn by every share from the same
//! generator state, each using its own rows (`Dropout::forward_share`), so every share ends in
//! the generator state of the unsplit step (carried here and checked equal when shares are
//! added); the shuffling and augmentation happen before the batch is split (the epoch loop).
//!
//! Not supported: the original implementation's second update of a CNN's classifier blocks
//! ([`crate::Compat::Reference`], algorithm.md §12 item 1), whose second gradient needs the
//! first update applied — [`Gradients`] of such a step are refused with an error saying so.

use crate::error::{Error, Result};
use crate::metrics::{LocalStats, StepStats};
use crate::optim::Gradient;
use crate::rng::Pcg32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array, Array1, Dimension};

/// The exact `i64` gradient sums of one layer's parameters (row-major, the parameter's shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerGradient {
    /// The layer's name ([`crate::names`]).
    pub name: String,
    /// The weight's shape.
    pub shape: Vec<usize>,
    /// `Σ` over the share's rows of the weight gradient, row-major.
    pub weight: Vec<i64>,
    /// The same for the bias, when the layer has one.
    pub bias: Option<Vec<i64>>,
}

impl LayerGradient {
    pub(crate) fn from_gradient<D: Dimension>(name: &str, g: Gradient<D>) -> Self {
        let shape = g.weight.shape().to_vec();
        LayerGradient {
            name: name.into(),
            shape,
            weight: row_major(g.weight),
            bias: g.bias.map(row_major),
        }
    }

    /// The layer's [`Gradient`] in the dimension `D` of its parameters; an error naming the
    /// layer when the shape does not fit.
    pub(crate) fn into_gradient<D: Dimension>(self) -> Result<Gradient<D>> {
        let bad = || Error::shape(format!("{}: gradient of shape {:?}", self.name, self.shape));
        let dim = D::from_dimension(&ndarray::IxDyn(&self.shape)).ok_or_else(bad)?;
        let weight = Array::from_shape_vec(dim, self.weight).map_err(|_| bad())?;
        Ok(Gradient {
            weight,
            bias: self.bias.map(Array1::from),
        })
    }

    fn checked_add(&self, other: &LayerGradient) -> Result<LayerGradient> {
        if self.name != other.name
            || self.shape != other.shape
            || self.weight.len() != other.weight.len()
            || self.bias.as_ref().map(Vec::len) != other.bias.as_ref().map(Vec::len)
        {
            return Err(Error::shape(format!(
                "cannot add the gradient of {} {:?} to that of {} {:?}: shares of one step of \
                 one model list the same layers",
                self.name, self.shape, other.name, other.shape
            )));
        }
        let add = |a: &[i64], b: &[i64], what: &'static str| -> Result<Vec<i64>> {
            a.iter()
                .zip(b)
                .enumerate()
                .map(|(i, (&x, &y))| {
                    x.checked_add(y).ok_or_else(|| {
                        Error::overflow(
                            &self.name,
                            what,
                            format!("gradient sum {i}: {x} + {y} exceeds i64"),
                        )
                    })
                })
                .collect()
        };
        Ok(LayerGradient {
            name: self.name.clone(),
            shape: self.shape.clone(),
            weight: add(&self.weight, &other.weight, "gradient sum")?,
            bias: match (&self.bias, &other.bias) {
                (Some(a), Some(b)) => Some(add(a, b, "bias gradient sum")?),
                _ => None,
            },
        })
    }
}

fn row_major<D: Dimension>(a: Array<i64, D>) -> Vec<i64> {
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    a.into_raw_vec_and_offset().0
}

/// The gradient sums of one training step over a share of the batch
/// ([`Share`](crate::data::Share)), with what the step reports: the output loss and correct
/// count, every trained block's, and the dropout generators' states after the step. Shares of
/// one step add up ([`Gradients::checked_add`]) to the step over the whole batch, which a model
/// applies ([`crate::Mlp::apply_gradients`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gradients {
    /// The rows covered: `start .. end` of a batch of `total`.
    pub start: usize,
    /// One past the last row covered.
    pub end: usize,
    /// Rows in the whole batch.
    pub total: usize,
    /// Output loss `Σ (y − ŷ)²` over the rows covered.
    pub loss: i64,
    /// Rows covered whose output arg-max is the label.
    pub correct: u64,
    /// Each trained block's local loss and correct count over the rows covered.
    pub blocks: Vec<LocalStats>,
    /// The dropout layers' generators after the step (the same for every share).
    pub dropout_rngs: Vec<Pcg32>,
    /// Every trained layer's gradient sums, in the model's layer order.
    pub layers: Vec<LayerGradient>,
}

/// Magic and version of [`Gradients::to_bytes`].
const MAGIC: &[u8; 8] = b"NITROGR1";

impl Gradients {
    /// The sums a model computed for `share`: its statistics over those rows, the dropout
    /// generators after the step and every trained layer's sums (both model kinds).
    pub(crate) fn of_share(
        share: &crate::data::Share,
        stats: StepStats,
        dropout_rngs: Vec<Pcg32>,
        layers: Vec<LayerGradient>,
    ) -> Gradients {
        Gradients {
            start: share.start,
            end: share.start + share.rows,
            total: share.total,
            loss: stats.loss,
            correct: stats.correct,
            blocks: stats.blocks,
            dropout_rngs,
            layers,
        }
    }

    /// `true` when the rows covered are the whole batch (what may be applied).
    pub fn is_whole(&self) -> bool {
        self.start == 0 && self.end == self.total
    }

    /// The sums of `self` and of the share that follows it (`other.start == self.end`, same
    /// batch), exactly: an [`Error::Overflow`] names the layer if a sum leaves `i64`; a shape
    /// error if the two are not shares of one step of one model (different layers, shapes,
    /// batch, overlapping or non-adjacent rows, or different dropout generator states).
    pub fn checked_add(&self, other: &Gradients) -> Result<Gradients> {
        if other.start != self.end || other.total != self.total {
            return Err(Error::shape(format!(
                "gradients of rows {}..{} of {} and of rows {}..{} of {} are not consecutive \
                 shares of one batch: add the shares in row order",
                self.start, self.end, self.total, other.start, other.end, other.total
            )));
        }
        if self.layers.len() != other.layers.len() || self.blocks.len() != other.blocks.len() {
            return Err(Error::shape(format!(
                "gradients of {} layers ({} blocks) and of {} layers ({} blocks) are not of one \
                 model",
                self.layers.len(),
                self.blocks.len(),
                other.layers.len(),
                other.blocks.len()
            )));
        }
        if self.dropout_rngs != other.dropout_rngs {
            return Err(Error::shape(
                "the shares' dropout generators ended in different states: the replicas did \
                 not start the step from the same state",
            ));
        }
        let sum = |a: i64, b: i64, what: &str| {
            a.checked_add(b)
                .ok_or_else(|| Error::overflow(what, "loss sum", format!("{a} + {b}")))
        };
        let count = |a: u64, b: u64| {
            a.checked_add(b)
                .ok_or_else(|| Error::overflow("step", "correct count", format!("{a} + {b}")))
        };
        let blocks = self
            .blocks
            .iter()
            .zip(&other.blocks)
            .map(|(a, b)| {
                Ok(LocalStats {
                    loss: sum(a.loss, b.loss, "block loss")?,
                    correct: count(a.correct, b.correct)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let layers = self
            .layers
            .iter()
            .zip(&other.layers)
            .map(|(a, b)| a.checked_add(b))
            .collect::<Result<Vec<_>>>()?;
        Ok(Gradients {
            start: self.start,
            end: other.end,
            total: self.total,
            loss: sum(self.loss, other.loss, "output loss")?,
            correct: count(self.correct, other.correct)?,
            blocks,
            dropout_rngs: self.dropout_rngs.clone(),
            layers,
        })
    }

    /// What the step reports (`train_step`'s result) for the rows covered.
    pub fn stats(&self) -> StepStats {
        StepStats {
            loss: self.loss,
            correct: self.correct,
            total: (self.end - self.start) as u64,
            blocks: self.blocks.clone(),
        }
    }

    /// Number of gradient sums (one per trained parameter): the communication volume of a
    /// step is 8 bytes each, plus [`Gradients::to_bytes`]'s small header.
    pub fn num_sums(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// A self-describing little-endian encoding (to send to another process):
    /// `NITROGR1`, the rows, the statistics, the generator states, then per layer its name,
    /// shape and `i64` sums.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 8 * self.num_sums());
        out.extend_from_slice(MAGIC);
        let mut u = |v: u64| out.extend_from_slice(&v.to_le_bytes());
        u(self.start as u64);
        u(self.end as u64);
        u(self.total as u64);
        u(self.loss as u64);
        u(self.correct);
        u(self.blocks.len() as u64);
        for b in &self.blocks {
            u(b.loss as u64);
            u(b.correct);
        }
        u(self.dropout_rngs.len() as u64);
        for r in &self.dropout_rngs {
            let (s, i) = r.to_parts();
            u(s);
            u(i);
        }
        u(self.layers.len() as u64);
        for l in &self.layers {
            out.extend_from_slice(&(l.name.len() as u64).to_le_bytes());
            out.extend_from_slice(l.name.as_bytes());
            out.extend_from_slice(&(l.shape.len() as u64).to_le_bytes());
            for &d in &l.shape {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            for part in core::iter::once(Some(&l.weight)).chain(core::iter::once(l.bias.as_ref())) {
                match part {
                    None => out.extend_from_slice(&u64::MAX.to_le_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                        for &x in v {
                            out.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                }
            }
        }
        out
    }

    /// Read [`Gradients::to_bytes`]; a format error for anything else (truncated, wrong
    /// magic, sizes that do not fit the buffer or each other).
    pub fn from_bytes(bytes: &[u8]) -> Result<Gradients> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(Error::format("not gradient sums (NITROGR1)"));
        }
        let (start, end, total) = (r.usize()?, r.usize()?, r.usize()?);
        if start > end || end > total {
            return Err(Error::format(format!(
                "gradient sums of rows {start}..{end} of {total}"
            )));
        }
        let (loss, correct) = (r.u64()? as i64, r.u64()?);
        let blocks = (0..r.count(16)?)
            .map(|_| {
                Ok(LocalStats {
                    loss: r.u64()? as i64,
                    correct: r.u64()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dropout_rngs = (0..r.count(16)?)
            .map(|_| {
                let (s, i) = (r.u64()?, r.u64()?);
                Pcg32::from_parts(s, i).ok_or_else(|| Error::format("a generator state is invalid"))
            })
            .collect::<Result<Vec<_>>>()?;
        let layers = (0..r.count(24)?)
            .map(|_| {
                let n = r.count(1)?;
                let name = String::from_utf8(r.take(n)?.to_vec())
                    .map_err(|_| Error::format("a layer name is not UTF-8"))?;
                let shape = (0..r.count(8)?)
                    .map(|_| r.usize())
                    .collect::<Result<Vec<_>>>()?;
                let weight = r.values()?.ok_or_else(|| Error::format("no weight sums"))?;
                let bias = r.values()?;
                if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(weight.len()) {
                    return Err(Error::format(format!(
                        "{name}: {} weight sums for shape {shape:?}",
                        weight.len()
                    )));
                }
                Ok(LayerGradient {
                    name,
                    shape,
                    weight,
                    bias,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if r.at != bytes.len() {
            return Err(Error::format("trailing bytes after the gradient sums"));
        }
        Ok(Gradients {
            start,
            end,
            total,
            loss,
            correct,
            blocks,
            dropout_rngs,
            layers,
        })
    }
}

/// A layer whose gradient of the step in progress can be taken out and put back (`Linear`,
/// `Conv2d`).
pub(crate) trait HoldsGradient {
    /// The layer's name.
    fn layer_name(&self) -> &str;
    /// Its gradient, taken out.
    fn take(&mut self) -> Result<Option<LayerGradient>>;
    /// Keep `g` as its gradient; a shape error unless it fits.
    fn put(&mut self, g: LayerGradient) -> Result<()>;
}

impl HoldsGradient for crate::layers::Linear {
    fn layer_name(&self) -> &str {
        &self.name
    }
    fn take(&mut self) -> Result<Option<LayerGradient>> {
        let name = self.name.clone();
        Ok(self
            .take_gradient()?
            .map(|g| LayerGradient::from_gradient(&name, g)))
    }
    fn put(&mut self, g: LayerGradient) -> Result<()> {
        self.put_gradient(g.into_gradient()?)
    }
}

impl HoldsGradient for crate::layers::Conv2d {
    fn layer_name(&self) -> &str {
        &self.name
    }
    fn take(&mut self) -> Result<Option<LayerGradient>> {
        let name = self.name.clone();
        Ok(self
            .take_gradient()
            .map(|g| LayerGradient::from_gradient(&name, g)))
    }
    fn put(&mut self, g: LayerGradient) -> Result<()> {
        self.put_gradient(g.into_gradient()?)
    }
}

/// Move the classifier's gradients — each block's forward layer and head, in order, then the
/// output layer — to the end of `out`.
pub(crate) fn take_classifier(
    blocks: &mut [crate::block::LocalLinearBlock],
    last: &mut crate::layers::Linear,
    out: &mut Vec<LayerGradient>,
) -> Result<()> {
    for b in blocks {
        for l in b.layers_mut() {
            take_into(l, out)?;
        }
    }
    take_into(last, out)
}

/// Move the gradient `layer` holds (if any) to the end of `out`.
pub(crate) fn take_into(
    layer: &mut impl HoldsGradient,
    out: &mut Vec<LayerGradient>,
) -> Result<()> {
    if let Some(g) = layer.take()? {
        out.push(g);
    }
    Ok(())
}

/// Put the next gradient of `layers` into `layer`: an error unless it is that layer's.
pub(crate) fn put_next(
    layer: &mut impl HoldsGradient,
    layers: &mut impl Iterator<Item = LayerGradient>,
) -> Result<()> {
    match layers.next() {
        Some(g) if g.name == layer.layer_name() => layer.put(g),
        Some(g) => Err(Error::shape(format!(
            "gradient sums of {} where the model's layer {} comes: sums of another model",
            g.name,
            layer.layer_name()
        ))),
        None => Err(Error::shape(format!(
            "no gradient sums for the model's layer {}: sums of another model",
            layer.layer_name()
        ))),
    }
}

/// An error unless every gradient was put into a layer.
pub(crate) fn no_more(mut layers: impl Iterator<Item = LayerGradient>) -> Result<()> {
    match layers.next() {
        None => Ok(()),
        Some(g) => Err(Error::shape(format!(
            "gradient sums of {}, which the model does not have: sums of another model",
            g.name
        ))),
    }
}

/// The dropout generator states `g` carries, after checking that it covers a whole batch and
/// fits a model with `dropouts` dropout layers.
pub(crate) fn check_whole(g: &Gradients, dropouts: usize) -> Result<Vec<Pcg32>> {
    if !g.is_whole() {
        return Err(Error::shape(format!(
            "gradient sums of rows {}..{} of a batch of {}: add every share of the batch \
             (Gradients::checked_add) before applying",
            g.start, g.end, g.total
        )));
    }
    if g.dropout_rngs.len() != dropouts {
        return Err(Error::shape(format!(
            "gradient sums with {} dropout generator states for a model with {dropouts} \
             dropout layers",
            g.dropout_rngs.len()
        )));
    }
    Ok(g.dropout_rngs.clone())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Error::format("gradient sums truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| Error::format("a size exceeds usize"))
    }
    /// A count of items of at least `min_bytes` each, checked against the bytes left (so a
    /// corrupt count cannot make a huge allocation).
    fn count(&mut self, min_bytes: usize) -> Result<usize> {
        let n = self.usize()?;
        match n.checked_mul(min_bytes) {
            Some(b) if b <= self.bytes.len() - self.at => Ok(n),
            _ => Err(Error::format("gradient sums truncated")),
        }
    }
    fn values(&mut self) -> Result<Option<Vec<i64>>> {
        let n = self.u64()?;
        if n == u64::MAX {
            return Ok(None);
        }
        self.at -= 8;
        let n = self.count(8)?;
        Ok(Some(
            (0..n)
                .map(|_| self.u64().map(|v| v as i64))
                .collect::<Result<Vec<_>>>()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: usize, end: usize, w: i64) -> Gradients {
        Gradients {
            start,
            end,
            total: 4,
            loss: 7,
            correct: 1,
            blocks: alloc::vec![LocalStats {
                loss: 3,
                correct: 1
            }],
            dropout_rngs: alloc::vec![Pcg32::new(1, 2)],
            layers: alloc::vec![LayerGradient {
                name: "linear_01".into(),
                shape: alloc::vec![1, 2],
                weight: alloc::vec![w, -w],
                bias: Some(alloc::vec![5]),
            }],
        }
    }

    #[test]
    fn shares_add_in_order_and_round_trip() {
        let s = part(0, 1, 2).checked_add(&part(1, 4, 40)).unwrap();
        assert!(s.is_whole());
        assert_eq!(s.layers[0].weight, [42, -42]);
        assert_eq!(s.layers[0].bias, Some(alloc::vec![10]));
        assert_eq!((s.loss, s.correct, s.blocks[0].loss), (14, 2, 6));
        assert_eq!(Gradients::from_bytes(&s.to_bytes()).unwrap(), s);
        // Out of order, overlapping, or from diverged replicas: refused.
        assert!(part(1, 4, 1).checked_add(&part(0, 1, 1)).is_err());
        assert!(part(0, 2, 1).checked_add(&part(1, 4, 1)).is_err());
        let mut other = part(1, 4, 1);
        other.dropout_rngs[0].next_u32();
        assert!(part(0, 1, 1).checked_add(&other).is_err());
    }

    #[test]
    fn an_overflowing_sum_is_an_error_naming_the_layer() {
        let e = part(0, 1, i64::MAX)
            .checked_add(&part(1, 4, 1))
            .unwrap_err();
        assert!(
            matches!(e, Error::Overflow { ref layer, .. } if layer == "linear_01"),
            "{e}"
        );
    }

    #[test]
    fn malformed_bytes_are_format_errors() {
        let b = part(0, 4, 3).to_bytes();
        for cut in [0, 7, 8, 30, b.len() - 1] {
            assert!(matches!(
                Gradients::from_bytes(&b[..cut]),
                Err(Error::Format(_))
            ));
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            Gradients::from_bytes(&long),
            Err(Error::Format(_))
        ));
        let mut bad = b;
        bad[0] = b'X';
        assert!(matches!(Gradients::from_bytes(&bad), Err(Error::Format(_))));
    }
}
