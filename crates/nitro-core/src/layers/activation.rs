//! Integer activations (algorithm.md §3.4). Inputs are the `i8` outputs of a scaling layer, so
//! `x ∈ [−127, 127]`; backward divides the error by a per-element *inverse slope*.

use super::saved::no_forward;
use crate::arith::{tdiv, DivU31};
use crate::error::{Error, Result};
use crate::kernels::buffers;
use crate::kernels::lookup::lookup_array;
use crate::kernels::map::zip_with;
use crate::kernels::sparse::SparseDelta;
use alloc::format;
use ndarray::{Array, Dimension, IxDyn, Zip};

/// The activation functions of algorithm.md §3.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationKind {
    /// The paper's NITRO-ReLU with inverse negative slope `a` (default 4) and mean correction.
    NitroRelu {
        /// Inverse negative slope.
        a: u8,
    },
    /// NITRO-ReLU without the mean correction.
    PocketLeakyRelu {
        /// Inverse negative slope.
        a: u8,
    },
    /// `clamp(x, 0, 127)`.
    PocketRelu,
    /// Piecewise-linear tanh.
    PocketTanh,
    /// PocketReLU between two applications of the ±1 bipolar mask.
    BipolarPocketRelu,
    /// PocketLeakyReLU between two applications of the ±1 bipolar mask.
    BipolarPocketLeakyRelu {
        /// Inverse negative slope.
        a: u8,
    },
}

/// `a → μ_a`, the mean correction of NITRO-ReLU (algorithm.md §3.4).
const MU_TABLE: [(u8, i8); 9] = [
    (3, 31),
    (4, 36),
    (5, 38),
    (7, 40),
    (8, 42),
    (10, 43),
    (15, 44),
    (16, 44),
    (20, 45),
];

/// The mean correction `μ_a`, or `None` for an `a` the spec does not define.
pub fn nitro_relu_mu(a: u8) -> Option<i8> {
    MU_TABLE.iter().find(|(k, _)| *k == a).map(|(_, m)| *m)
}

impl Default for ActivationKind {
    fn default() -> Self {
        ActivationKind::NitroRelu { a: 4 }
    }
}

impl ActivationKind {
    /// Check the parameter against the spec's table.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ActivationKind::NitroRelu { a }
            | ActivationKind::PocketLeakyRelu { a }
            | ActivationKind::BipolarPocketLeakyRelu { a } => {
                if nitro_relu_mu(a).is_none() {
                    return Err(Error::config(format!(
                        "inverse negative slope a={a} is not one of 3, 4, 5, 7, 8, 10, 15, 16, 20"
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Short stable name (used in files and the Python API).
    pub fn name(&self) -> &'static str {
        match self {
            ActivationKind::NitroRelu { .. } => "nitro_relu",
            ActivationKind::PocketLeakyRelu { .. } => "pocket_leaky_relu",
            ActivationKind::PocketRelu => "pocket_relu",
            ActivationKind::PocketTanh => "pocket_tanh",
            ActivationKind::BipolarPocketRelu => "bipolar_pocket_relu",
            ActivationKind::BipolarPocketLeakyRelu { .. } => "bipolar_pocket_leaky_relu",
        }
    }

    /// Parse [`ActivationKind::name`] plus the slope parameter `a` (ignored where unused).
    pub fn from_name(name: &str, a: u8) -> Result<Self> {
        let k = match name {
            "nitro_relu" => ActivationKind::NitroRelu { a },
            "pocket_leaky_relu" => ActivationKind::PocketLeakyRelu { a },
            "pocket_relu" => ActivationKind::PocketRelu,
            "pocket_tanh" => ActivationKind::PocketTanh,
            "bipolar_pocket_relu" => ActivationKind::BipolarPocketRelu,
            "bipolar_pocket_leaky_relu" => ActivationKind::BipolarPocketLeakyRelu { a },
            other => {
                return Err(Error::config(format!(
                    "unknown activation {other:?}; expected one of nitro_relu, pocket_leaky_relu, \
                     pocket_relu, pocket_tanh, bipolar_pocket_relu, bipolar_pocket_leaky_relu"
                )))
            }
        };
        k.validate()?;
        Ok(k)
    }

    /// The slope parameter `a` (0 where the activation has none).
    pub fn slope(&self) -> u8 {
        match *self {
            ActivationKind::NitroRelu { a }
            | ActivationKind::PocketLeakyRelu { a }
            | ActivationKind::BipolarPocketLeakyRelu { a } => a,
            _ => 0,
        }
    }

    fn is_bipolar(&self) -> bool {
        matches!(
            self,
            ActivationKind::BipolarPocketRelu | ActivationKind::BipolarPocketLeakyRelu { .. }
        )
    }

    /// The un-masked function (bipolar variants use their inner activation).
    fn inner(&self) -> ActivationKind {
        match *self {
            ActivationKind::BipolarPocketRelu => ActivationKind::PocketRelu,
            ActivationKind::BipolarPocketLeakyRelu { a } => ActivationKind::PocketLeakyRelu { a },
            k => k,
        }
    }

    /// Forward of one element (non-bipolar semantics; bipolar kinds apply their inner function).
    pub fn forward_scalar(&self, x: i8) -> i8 {
        let x = i64::from(x);
        let y = match self.inner() {
            ActivationKind::NitroRelu { a } => {
                let mu = i64::from(nitro_relu_mu(a).unwrap_or(0));
                x.clamp(0, 127) + tdiv(x.clamp(-127, 0), i64::from(a)) - mu
            }
            ActivationKind::PocketLeakyRelu { a } => {
                x.clamp(0, 127) + tdiv(x.clamp(-127, 0), i64::from(a))
            }
            ActivationKind::PocketRelu => x.clamp(0, 127),
            ActivationKind::PocketTanh => {
                if x >= 127 {
                    127
                } else if x >= 75 {
                    tdiv(x, 3) + 83
                } else if x >= 32 {
                    x + 32
                } else if x >= -31 {
                    2 * x
                } else if x >= -74 {
                    x - 32
                } else if x >= -127 {
                    tdiv(x, 3) - 83
                } else {
                    -127
                }
            }
            _ => unreachable!("inner() never returns a bipolar kind"),
        };
        // Every branch above stays within [-127, 127] for x in [-128, 127].
        y as i8
    }

    /// Inverse slope at `x`; `None` stands for ∞ (no error passes).
    pub fn inverse_slope(&self, x: i8) -> Option<i64> {
        let x = i64::from(x);
        match self.inner() {
            ActivationKind::NitroRelu { a } | ActivationKind::PocketLeakyRelu { a } => {
                if (0..127).contains(&x) {
                    Some(1)
                } else if (-127..0).contains(&x) {
                    Some(i64::from(a))
                } else {
                    None
                }
            }
            ActivationKind::PocketRelu => (x > 0 && x <= 127).then_some(1),
            ActivationKind::PocketTanh => {
                if x >= 127 {
                    None
                } else if x >= 75 {
                    Some(8)
                } else if x >= 32 {
                    Some(2)
                } else if x >= -31 {
                    Some(1)
                } else if x >= -74 {
                    Some(2)
                } else if x >= -127 {
                    Some(8)
                } else {
                    None
                }
            }
            _ => unreachable!("inner() never returns a bipolar kind"),
        }
    }

    /// Backward of one element: `tdiv(δ, s(x))`, 0 where `s = ∞`.
    pub fn backward_scalar(&self, x: i8, delta: i32) -> i32 {
        match self.inverse_slope(x) {
            // |tdiv(δ, s)| ≤ |δ|, so the result fits i32.
            Some(s) => tdiv(i64::from(delta), s) as i32,
            None => 0,
        }
    }

    /// [`ActivationKind::forward_scalar`] of every `i8`, indexed by `x as u8`.
    fn forward_table(&self) -> [i8; 256] {
        core::array::from_fn(|i| self.forward_scalar(i as u8 as i8))
    }

    /// The inverse slope of every `i8` (indexed by `x as u8`) as an exact reciprocal; `s = ∞`
    /// is the divisor 0, whose quotient is 0. `None` if a slope is not positive (an unvalidated
    /// kind: [`ActivationKind::backward_scalar`] keeps its behaviour then).
    fn backward_table(&self) -> Option<[DivU31; 256]> {
        let mut t = [DivU31::new(0); 256];
        for (i, d) in t.iter_mut().enumerate() {
            match self.inverse_slope(i as u8 as i8) {
                Some(s) if s <= 0 => return None,
                Some(s) => *d = DivU31::new(s as u64),
                None => {}
            }
        }
        Some(t)
    }
}

/// Inputs at least this long are mapped through a table of all 256 results.
const TABLE_MIN_LEN: usize = 256;

/// [`ActivationKind::backward_scalar`] with the slope's reciprocal from
/// [`ActivationKind::backward_table`]: `tdiv(δ, s) = ±⌊|δ| / s⌋`, exact for `|δ| < 2³¹` (every
/// `δ` but `i32::MIN`, which takes the division).
#[inline(always)]
fn backward_by_table(kind: ActivationKind, table: &[DivU31; 256], x: i8, delta: i32) -> i32 {
    if delta != i32::MIN {
        by_reciprocal(table, x, delta)
    } else {
        kind.backward_scalar(x, delta)
    }
}

/// [`backward_by_table`] without its branch, for a `δ ≠ i32::MIN` (`|δ| < 2³¹`, the
/// reciprocal's exact range; `|q| ≤ |δ|` fits `i32`): the loop over a tensor vectorises.
#[inline(always)]
fn by_reciprocal(table: &[DivU31; 256], x: i8, delta: i32) -> i32 {
    let d = i64::from(delta);
    let sign = (d >> 63) as u64;
    let abs = ((d as u64) ^ sign).wrapping_sub(sign);
    (table[usize::from(x as u8)].div(abs) ^ sign).wrapping_sub(sign) as i64 as i32
}

/// The bipolar mask sign at a flat index of a tensor of `shape` (algorithm.md §3.4):
/// `batch×features` → −1 on odd features; NCHW → −1 where `i + j` is odd.
fn bipolar_negative(shape: &[usize], flat: usize) -> bool {
    match shape.len() {
        4 => {
            let (h, w) = (shape[2], shape[3]);
            let j = flat % w;
            let i = (flat / w) % h;
            (i + j) % 2 == 1
        }
        _ => {
            let f = *shape.last().unwrap_or(&1);
            (flat % f.max(1)) % 2 == 1
        }
    }
}

/// An activation layer: the function plus its saved input.
#[derive(Clone, Debug)]
pub struct Activation {
    /// Which function.
    pub kind: ActivationKind,
    saved: Option<Array<i8, IxDyn>>,
}

impl Activation {
    /// A layer for `kind` (validated).
    pub fn new(kind: ActivationKind) -> Result<Self> {
        kind.validate()?;
        Ok(Activation { kind, saved: None })
    }

    /// Forward; the input is saved in training mode.
    pub fn forward<D: Dimension>(&mut self, x: Array<i8, D>, train: bool) -> Array<i8, D> {
        let y = self.infer(&x);
        self.saved = if train { Some(x.into_dyn()) } else { None };
        y
    }

    /// The forward as a table of every input byte (`table[x as u8]`), for the kinds whose
    /// output depends on the value alone (not the bipolar ones, which depend on the position).
    pub(crate) fn table(&self) -> Option<[i8; 256]> {
        (!self.kind.is_bipolar()).then(|| self.kind.forward_table())
    }

    /// Forward without saving.
    pub fn infer<D: Dimension>(&self, x: &Array<i8, D>) -> Array<i8, D> {
        let k = self.kind;
        if k.is_bipolar() {
            let shape = x.shape().to_vec();
            let mut y = x.clone();
            for (i, v) in y.iter_mut().enumerate() {
                *v = if bipolar_negative(&shape, i) {
                    -k.forward_scalar(-*v)
                } else {
                    k.forward_scalar(*v)
                };
            }
            y
        } else if x.len() >= TABLE_MIN_LEN {
            lookup_array(x.view(), &k.forward_table())
        } else {
            x.mapv(|v| k.forward_scalar(v))
        }
    }

    /// Backward: `δ_in = tdiv(δ, s(x))` with the saved input.
    pub fn backward<D: Dimension>(&mut self, delta: Array<i32, D>) -> Result<Array<i32, D>> {
        let x = self.saved.take().ok_or_else(|| no_forward("activation"))?;
        if x.shape() != delta.shape() {
            return Err(Error::shape(format!(
                "activation: error shape {:?} differs from input shape {:?}",
                delta.shape(),
                x.shape()
            )));
        }
        let d = backward_with_input(self.kind, x.view(), delta);
        // The saved input is spent: its buffer serves the next forward (kernels/buffers.rs).
        buffers::give_array(x);
        Ok(d)
    }

    /// [`Activation::backward`] of a sparse error, entry by entry in place: each value becomes
    /// what the dense backward gives at its position (the entries left out are zero, and
    /// `tdiv(0, s) = 0`, so they stay zero).
    pub fn backward_sparse(&mut self, delta: &mut SparseDelta) -> Result<()> {
        let x = self.saved.take().ok_or_else(|| no_forward("activation"))?;
        let (n, f, h, w) = delta.dim();
        if x.shape() != [n, f, h, w] {
            return Err(Error::shape(format!(
                "activation: error shape {:?} differs from input shape {:?}",
                [n, f, h, w],
                x.shape()
            )));
        }
        let kind = self.kind;
        let xs = x.as_standard_layout();
        let xv = xs.as_slice().expect("standard layout");
        for (i, d) in delta.entries_mut() {
            // As in `backward_with_input`: bipolar kinds take the slope at the masked input.
            let xm = if kind.is_bipolar() && bipolar_negative(x.shape(), i) {
                -xv[i]
            } else {
                xv[i]
            };
            *d = kind.backward_scalar(xm, *d);
        }
        drop(xs);
        buffers::give_array(x);
        Ok(())
    }
}

/// `δ_in = tdiv(δ, s(x))` element-wise; for bipolar kinds the slope is taken at the masked input
/// (the mask multiplies δ twice, which cancels).
pub fn backward_with_input<D: Dimension>(
    kind: ActivationKind,
    x: ndarray::ArrayView<'_, i8, IxDyn>,
    mut delta: Array<i32, D>,
) -> Array<i32, D> {
    let table = if delta.len() >= TABLE_MIN_LEN {
        kind.backward_table()
    } else {
        None
    };
    if kind.is_bipolar() {
        let shape = x.shape().to_vec();
        for (i, (d, &xv)) in delta.iter_mut().zip(x.iter()).enumerate() {
            let xm = if bipolar_negative(&shape, i) { -xv } else { xv };
            *d = match &table {
                Some(t) => backward_by_table(kind, t, xm, *d),
                None => kind.backward_scalar(xm, *d),
            };
        }
    } else {
        let x = x
            .into_shape_with_order(delta.raw_dim())
            .expect("same shape checked");
        match (&table, x.as_slice(), delta.as_slice_mut()) {
            // Contiguous and without i32::MIN (a scan that vectorises): branch-free.
            (Some(t), Some(xs), Some(ds)) if !ds.contains(&i32::MIN) => {
                zip_with(xs, ds, |xv, d| by_reciprocal(t, xv, d))
            }
            (Some(t), _, _) => Zip::from(&mut delta)
                .and(&x)
                .for_each(|d, &xv| *d = backward_by_table(kind, t, xv, *d)),
            (None, _, _) => Zip::from(&mut delta)
                .and(&x)
                .for_each(|d, &xv| *d = kind.backward_scalar(xv, *d)),
        }
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn kinds() -> alloc::vec::Vec<ActivationKind> {
        let mut v = alloc::vec![
            ActivationKind::PocketRelu,
            ActivationKind::PocketTanh,
            ActivationKind::BipolarPocketRelu,
        ];
        for (a, _) in MU_TABLE {
            v.push(ActivationKind::NitroRelu { a });
            v.push(ActivationKind::PocketLeakyRelu { a });
            v.push(ActivationKind::BipolarPocketLeakyRelu { a });
        }
        // A slope outside the table (unvalidated kind): still consistent.
        v.push(ActivationKind::PocketLeakyRelu { a: 6 });
        v
    }

    #[test]
    fn tables_match_the_scalar_functions() {
        let deltas = [
            0,
            1,
            -1,
            2,
            -3,
            7,
            -8,
            1000,
            -999_999,
            i32::MAX,
            i32::MAX - 1,
            i32::MIN,
            i32::MIN + 1,
            1 << 30,
            -(1 << 30) - 5,
        ];
        for k in kinds() {
            let f = k.forward_table();
            let b = k.backward_table().expect("positive slopes");
            for x in i8::MIN..=i8::MAX {
                assert_eq!(f[usize::from(x as u8)], k.forward_scalar(x), "{k:?} {x}");
                for d in deltas {
                    assert_eq!(
                        backward_by_table(k, &b, x, d),
                        k.backward_scalar(x, d),
                        "{k:?} {x} {d}"
                    );
                }
            }
        }
        // A zero slope is left to the scalar path.
        assert!(ActivationKind::PocketLeakyRelu { a: 0 }
            .backward_table()
            .is_none());
    }

    #[test]
    fn large_inputs_match_the_scalar_functions() {
        let mut r = crate::rng::Pcg32::new(9, 9);
        // Every i8 (the ends ±127 and −128 included), errors of every magnitude; and the same
        // errors with one i32::MIN (which takes the division).
        let x = Array2::from_shape_fn((20, 50), |(i, j)| (i * 50 + j) as u8 as i8);
        let d = Array2::from_shape_fn((20, 50), |_| r.next_u32() as i32 >> r.below(31));
        let mut with_min = d.clone();
        with_min[(3, 7)] = i32::MIN;
        for (k, d) in kinds()
            .into_iter()
            .flat_map(|k| [(k, d.clone()), (k, with_min.clone())])
        {
            let mut layer = Activation::new(k).unwrap_or(Activation {
                kind: k,
                saved: None,
            });
            let y = layer.forward(x.clone(), true);
            let back = layer.backward(d.clone()).unwrap();
            for (i, ((&xv, &yv), (&dv, &bv))) in x
                .iter()
                .zip(y.iter())
                .zip(d.iter().zip(back.iter()))
                .enumerate()
            {
                let neg = k.is_bipolar() && bipolar_negative(x.shape(), i);
                let (fy, xm) = if neg {
                    (-k.forward_scalar(-xv), -xv)
                } else {
                    (k.forward_scalar(xv), xv)
                };
                assert_eq!(yv, fy, "{k:?} forward at {i}");
                assert_eq!(bv, k.backward_scalar(xm, dv), "{k:?} backward at {i}");
            }
        }
    }
}
