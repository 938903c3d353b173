//! IntegerSGD of one layer (algorithm.md §5): `P ← P − tdiv(G, lr_inv·amp) − tdiv(P, decay_inv)`,
//! all-or-nothing, with every quotient exact.

use crate::arith::tdiv;
use crate::error::{Error, Result};
use crate::kernels::buffers;
use crate::kernels::gemm::gemm_nt_each;
use crate::kernels::gemm_tn;
use crate::kernels::sgd::{Plan, Rates};
use alloc::format;
use ndarray::{Array, Array1, Array2, ArrayView2, Dimension, Ix2};

/// The IntegerSGD parameters of one layer: `Δ = tdiv(G, lr_inv·amp) (+ tdiv(P, decay_inv))`,
/// `P ← P − Δ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sgd {
    /// Inverse learning rate (paper: 512). A *larger* value is a *smaller* step.
    pub lr_inv: i64,
    /// Per-layer amplification of the inverse learning rate (forward layers: `lr_amp_factor`).
    pub amp: i64,
    /// Inverse weight decay; 0 turns decay off.
    pub decay_inv: i64,
}

impl Sgd {
    /// Validate and build.
    pub fn new(lr_inv: i64, amp: i64, decay_inv: i64) -> Result<Self> {
        let s = Sgd {
            lr_inv,
            amp,
            decay_inv,
        };
        s.validate()?;
        Ok(s)
    }

    /// The checks of [`Sgd::new`], for an `Sgd` whose (public) fields were set directly.
    pub fn validate(&self) -> Result<()> {
        let (lr_inv, amp, decay_inv) = (self.lr_inv, self.amp, self.decay_inv);
        if lr_inv <= 0 || amp <= 0 || decay_inv < 0 {
            return Err(Error::config(format!(
                "IntegerSGD needs lr_inv > 0, amp > 0, decay_inv ≥ 0 (got {lr_inv}, {amp}, {decay_inv})"
            )));
        }
        if lr_inv.checked_mul(amp).is_none() {
            return Err(Error::config("lr_inv · amp overflows i64"));
        }
        Ok(())
    }

    /// The prepared update, or [`Sgd::validate`]'s error: an update never divides by a
    /// divisor [`Sgd::new`] would reject.
    fn plan(&self, layer: &str) -> Result<Plan> {
        let invalid = |m: &str| Error::config(format!("{layer}: {m}"));
        match self.validate() {
            Err(Error::Config(m)) => Err(invalid(&m)),
            Err(e) => Err(e),
            Ok(()) => {
                Plan::new(self.rates()).ok_or_else(|| invalid("IntegerSGD parameters out of range"))
            }
        }
    }

    fn rates(&self) -> Rates {
        Rates {
            lr_inv: self.lr_inv,
            amp: self.amp,
            decay_inv: self.decay_inv,
        }
    }

    /// The new value of one parameter (exact, in `i64`).
    #[inline]
    pub fn step(&self, p: i32, g: i64) -> i64 {
        let div = self.lr_inv * self.amp;
        // Most quotients are 0 (|G| < lr_inv·amp, |P| < decay_inv): skip the slow division then.
        let mut delta = if g.unsigned_abs() < div as u64 {
            0
        } else {
            tdiv(g, div)
        };
        if self.decay_inv > 0 && i64::from(p).unsigned_abs() >= self.decay_inv as u64 {
            delta += tdiv(i64::from(p), self.decay_inv);
        }
        i64::from(p) - delta
    }

    /// Update `params` in place with `grads` (same length). All-or-nothing: if any new value
    /// would leave `i32`, nothing is written and [`Error::Overflow`] names `layer`.
    pub fn apply(&self, params: &mut [i32], grads: &[i64], layer: &str) -> Result<()> {
        let plan = self.plan(layer)?;
        let scan = plan.check(params, grads, layer)?;
        plan.write(params, grads, scan);
        Ok(())
    }

    /// [`Sgd::apply_layer`] for a layer's own arrays: weights of any shape with their gradient
    /// (the same shape), and the bias with its gradient when the layer has one. An array not in
    /// standard layout is put in it first.
    pub fn apply_arrays<D: Dimension>(
        &self,
        weight: &mut Array<i32, D>,
        weight_grad: &Array<i64, D>,
        bias: Option<(&mut Array1<i32>, &Array1<i64>)>,
        layer: &str,
    ) -> Result<()> {
        if weight.shape() != weight_grad.shape() {
            return Err(Error::shape(format!(
                "{layer}: weight has shape {:?} but its gradient {:?}",
                weight.shape(),
                weight_grad.shape()
            )));
        }
        let weight_grad = values(weight_grad);
        match bias {
            Some((b, g)) => {
                let g = values(g);
                let b = Some((slice_mut(b), &g[..]));
                self.apply_layer(slice_mut(weight), &weight_grad, b, layer)
            }
            None => self.apply_layer(slice_mut(weight), &weight_grad, None, layer),
        }
    }

    /// Update a layer's weights and optional bias together, all-or-nothing: if any new value
    /// would leave `i32`, neither is changed and [`Error::Overflow`] names `layer`.
    ///
    /// Allocation-free: a first pass checks that every new value fits `i32` (by a bound, or by
    /// computing them where the bound is not enough), a second pass computes and stores them.
    pub fn apply_layer(
        &self,
        weight: &mut [i32],
        weight_grad: &[i64],
        bias: Option<(&mut [i32], &[i64])>,
        layer: &str,
    ) -> Result<()> {
        let plan = self.plan(layer)?;
        let weight_scan = plan.check(weight, weight_grad, layer)?;
        let bias_scan = match &bias {
            Some((b, g)) => Some(plan.check(b, g, layer)?),
            None => None,
        };
        plan.write(weight, weight_grad, weight_scan);
        if let (Some((b, g)), Some(scan)) = (bias, bias_scan) {
            plan.write(b, g, scan);
        }
        Ok(())
    }

    /// The first half of [`Sgd::apply_arrays`]: check that the update of `weight` (and `bias`)
    /// by these gradients fits `i32` everywhere — the same check, with the same error — and keep
    /// it, unwritten, for [`Staged::commit`]. Nothing is changed, whatever the outcome; a
    /// training step stages every layer's update and commits them only when all succeeded.
    pub(crate) fn stage<D: Dimension>(
        &self,
        weight: &Array<i32, D>,
        weight_grad: Array<i64, D>,
        bias: Option<(&Array1<i32>, Array1<i64>)>,
        layer: &str,
    ) -> Result<Staged<D>> {
        let plan = self.plan(layer)?;
        if weight.shape() != weight_grad.shape() {
            return Err(Error::shape(format!(
                "{layer}: weight has shape {:?} but its gradient {:?}",
                weight.shape(),
                weight_grad.shape()
            )));
        }
        let weight_grad = standard(weight_grad);
        let new_weight = updated(&plan, &values(weight), &weight_grad, layer)?;
        // The gradient is spent: its buffer serves the next step's product of the same size.
        crate::kernels::recycle(weight_grad);
        let new_weight = Array::from_shape_vec(weight.raw_dim(), new_weight)
            .expect("as many values as the weight");
        Ok(Staged {
            weight: new_weight,
            bias: staged_bias(&plan, bias, layer)?,
        })
    }

    /// [`Sgd::stage`] of the weight gradient `δᵀ·x` of a linear layer (`delta`: `batch × out`,
    /// `x`: `batch × in`, `weight`: `out × in`) without the gradient: each block of its rows
    /// goes from the product straight into the new weights while it is in cache
    /// ([`gemm_nt_each`]), so the `i64` sums are never written out and read back. The same
    /// staged update, and the same errors, as `stage(weight, gemm_tn(delta, x)?, bias, layer)`:
    /// when some new value does not fit `i32` that path runs and reports it.
    pub(crate) fn stage_product(
        &self,
        weight: &Array2<i32>,
        delta: ArrayView2<'_, i32>,
        x: ArrayView2<'_, i16>,
        bias: Option<(&Array1<i32>, Array1<i64>)>,
        layer: &str,
    ) -> Result<Staged<Ix2>> {
        let plan = self.plan(layer)?;
        let (rows, cols) = weight.dim();
        if delta.ncols() != rows || x.ncols() != cols || delta.nrows() != x.nrows() {
            return Err(Error::shape(format!(
                "{layer}: weight is {rows}×{cols} but the error is {}×{} and the input {}×{}",
                delta.nrows(),
                delta.ncols(),
                x.nrows(),
                x.ncols()
            )));
        }
        let params = values(weight);
        let mut out = buffers::take_dirty::<i32>(params.len());
        let fits = gemm_nt_each(delta.t(), x.t(), &mut out, |r0, g, o| {
            plan.updated_part(&params[r0 * cols..r0 * cols + g.len()], g, o)
        })
        .map_err(|e| e.in_layer(layer));
        match fits {
            Ok(f) if f.iter().all(|&ok| ok) => Ok(Staged {
                weight: Array2::from_shape_vec((rows, cols), out)
                    .expect("as many values as the weight"),
                bias: staged_bias(&plan, bias, layer)?,
            }),
            fits => {
                buffers::give(out);
                fits?;
                // A new value outside i32: the authoritative path finds it and names it.
                let g = gemm_tn(delta, x).map_err(|e| e.in_layer(layer))?;
                self.stage(weight, g, bias, layer)
            }
        }
    }
}

/// The new bias of a staged update, if the layer has one (the error of the first value that
/// would leave `i32`).
fn staged_bias(
    plan: &Plan,
    bias: Option<(&Array1<i32>, Array1<i64>)>,
    layer: &str,
) -> Result<Option<Array1<i32>>> {
    bias.map(|(b, g)| updated(plan, &values(b), &standard(g), layer).map(Array1::from))
        .transpose()
}

/// The new values of `params` by `plan` and their gradients `grads` (standard layout), in a
/// buffer from the kernels' free list; the error of the first that would leave `i32`.
fn updated<D: Dimension>(
    plan: &Plan,
    params: &[i32],
    grads: &Array<i64, D>,
    layer: &str,
) -> Result<alloc::vec::Vec<i32>> {
    let mut out = buffers::take_dirty::<i32>(params.len());
    match plan.updated(params, slice(grads), &mut out, layer) {
        Ok(()) => Ok(out),
        Err(e) => {
            buffers::give(out);
            Err(e)
        }
    }
}

/// A checked IntegerSGD update of one layer's weights (and bias), not yet written
/// ([`Sgd::stage`]): the new values, computed and checked in one pass; [`Staged::commit`]
/// puts them in place of the parameters they were computed from, dropping it discards the
/// update.
#[derive(Clone, Debug)]
pub(crate) struct Staged<D: Dimension> {
    weight: Array<i32, D>,
    bias: Option<Array1<i32>>,
}

impl<D: Dimension> Staged<D> {
    /// Replace `weight` and `bias` — the parameters [`Sgd::stage`] computed from, unchanged
    /// since — by their new values (in standard layout); the old weights' buffer goes back to
    /// the free list for the next step's update.
    pub(crate) fn commit(self, weight: &mut Array<i32, D>, bias: Option<&mut Array1<i32>>) {
        debug_assert_eq!(
            weight.shape(),
            self.weight.shape(),
            "committed to the staged weight"
        );
        let old = core::mem::replace(weight, self.weight);
        buffers::give(old.into_raw_vec_and_offset().0);
        if let (Some(new), Some(b)) = (self.bias, bias) {
            debug_assert_eq!(b.len(), new.len(), "committed to the staged bias");
            *b = new;
        }
    }
}

/// `a` in standard layout (a no-op for the arrays the kernels return).
fn standard<A: Clone, D: Dimension>(a: Array<A, D>) -> Array<A, D> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// The values of `a` in row-major order, borrowed when it is in standard layout.
fn values<A: Clone, D: Dimension>(a: &Array<A, D>) -> alloc::borrow::Cow<'_, [A]> {
    match a.as_slice() {
        Some(s) => alloc::borrow::Cow::Borrowed(s),
        None => alloc::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

/// The elements of a standard-layout array.
fn slice<A, D: Dimension>(a: &Array<A, D>) -> &[A] {
    a.as_slice().unwrap_or(&[])
}

/// The elements of `a` in row-major order, after putting it in standard layout if it is not.
fn slice_mut<A: Clone, D: Dimension>(a: &mut Array<A, D>) -> &mut [A] {
    if !a.is_standard_layout() {
        *a = a.as_standard_layout().into_owned();
    }
    a.as_slice_mut().unwrap_or(&mut [])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `stage_product` stages the very update `stage` does from the materialised gradient
    /// `δᵀ·x`, and fails with the same error where a new weight leaves `i32`: narrow and wide
    /// errors (the split along K), with and without decay, with a bias, shapes crossing the
    /// product's blocks.
    #[test]
    fn staging_from_the_product_is_staging_its_sums() {
        use crate::rng::Pcg32;
        let mut r = Pcg32::new(5, 9);
        let rates = [
            Sgd::new(512, 1, 0).unwrap(),
            Sgd::new(512, 4, 5_000).unwrap(),
            Sgd::new(1, 1, 0).unwrap(),
        ];
        let (mut errors, mut staged) = (0, 0);
        for case in 0..36 {
            let (batch, outs, ins) = [(64, 200, 784), (3, 7, 5), (17, 33, 130)][case % 3];
            let eb = [100u32, 30_000, 60_000, 1 << 20][case % 4];
            let sgd = rates[case % 3];
            // Weights near the edge of i32 with the unit learning rate: some update overflows.
            let wb = if case % 3 == 2 {
                i32::MAX as u32
            } else {
                1 << 20
            };
            let delta = Array2::from_shape_fn((batch, outs), |_| r.symmetric(eb));
            let x = Array2::from_shape_fn((batch, ins), |_| r.symmetric(127) as i16);
            let w = Array2::from_shape_fn((outs, ins), |_| r.symmetric(wb));
            let b = Array1::from_shape_fn(outs, |_| r.symmetric(wb));
            let gb = Array1::from_shape_fn(outs, |j| {
                (0..batch).map(|i| i64::from(delta[[i, j]])).sum::<i64>()
            });
            let g = gemm_tn(delta.view(), x.view()).unwrap();
            let want = sgd.stage(&w, g, Some((&b, gb.clone())), "layer");
            let got = sgd.stage_product(&w, delta.view(), x.view(), Some((&b, gb)), "layer");
            match (want, got) {
                (Ok(want), Ok(got)) => {
                    assert_eq!(got.weight, want.weight, "case {case}");
                    assert_eq!(got.bias, want.bias, "case {case}");
                    staged += 1;
                }
                (Err(want), Err(got)) => {
                    assert_eq!(format!("{got}"), format!("{want}"), "case {case}");
                    errors += 1;
                }
                (want, got) => panic!("case {case}: {:?} vs {:?}", want.err(), got.err()),
            }
        }
        assert!(errors > 0 && staged > 0, "{errors} errors, {staged} staged");
        // A shape mismatch is an error, not a panic.
        let w = Array2::<i32>::zeros((3, 4));
        let e = Array2::<i32>::zeros((2, 3));
        let x = Array2::<i16>::zeros((2, 5));
        let err = rates[0].stage_product(&w, e.view(), x.view(), None, "fc");
        assert!(matches!(err, Err(Error::Shape(_))), "{:?}", err.err());
    }

    #[test]
    fn sgd_step_matches_spec_formula() {
        let s = Sgd::new(512, 640, 10_000).unwrap();
        // Δ = tdiv(-1_000_000, 327_680) + tdiv(25_000, 10_000) = -3 + 2 = -1 → P = 25_001
        assert_eq!(s.step(25_000, -1_000_000), 25_001);
        // Negative parameter, decay rounds toward zero: tdiv(-19_999, 10_000) = -1
        let s = Sgd::new(512, 1, 10_000).unwrap();
        // Δ = tdiv(1023, 512) + tdiv(−19_999, 10_000) = 1 − 1 = 0
        assert_eq!(s.step(-19_999, 1023), -19_999);
        // Δ = tdiv(1024, 512) + (−1) = 1
        assert_eq!(s.step(-19_999, 1024), -20_000);
        let s = Sgd::new(2, 1, 0).unwrap();
        assert_eq!(s.step(5, -7), 5 - (-3));
    }

    #[test]
    fn sgd_apply_is_all_or_nothing() {
        let s = Sgd::new(1, 1, 0).unwrap();
        let mut p = [1, 2, i32::MAX - 1];
        let err = s.apply(&mut p, &[1, 1, -2], "linear_pred_01").unwrap_err();
        assert!(alloc::format!("{err}").contains("linear_pred_01"));
        assert_eq!(p, [1, 2, i32::MAX - 1]);
        s.apply(&mut p, &[1, 1, -1], "x").unwrap();
        assert_eq!(p, [0, 1, i32::MAX]);
    }

    /// The update as it was first written (one `Sgd::step` per parameter into a fresh vector),
    /// with the exact new value computed in `i128` so that no input can make the reference
    /// itself overflow: the new parameters, or the first offending index and the value the
    /// error reports (the exact value modulo 2⁶⁴, as the `i64` arithmetic of `step` wraps).
    fn reference(s: &Sgd, params: &[i32], grads: &[i64]) -> Result<Vec<i32>, (usize, i64)> {
        let div = i128::from(s.lr_inv) * i128::from(s.amp);
        let mut out = Vec::with_capacity(params.len());
        for (i, (&p, &g)) in params.iter().zip(grads).enumerate() {
            let p = i128::from(p);
            // Rust's `/` truncates toward zero, in i128 as in i64.
            let decay = if s.decay_inv > 0 {
                p / i128::from(s.decay_inv)
            } else {
                0
            };
            let v = p - (i128::from(g) / div + decay);
            // Where `step` itself does not overflow, it agrees with the i128 value.
            if i64::try_from(v).is_ok() && g.unsigned_abs() < 1 << 62 {
                assert_eq!(i128::from(s.step(p as i32, g)), v);
            }
            match i32::try_from(v) {
                Ok(v) => out.push(v),
                Err(_) => return Err((i, v as i64)),
            }
        }
        Ok(out)
    }

    /// `apply` and `apply_layer` (with and without a bias) against [`reference`], including
    /// the all-or-nothing rule and the error text.
    fn check_against_reference(s: &Sgd, params: &[i32], grads: &[i64], bias: &[i32], bg: &[i64]) {
        let expect = reference(s, params, grads);
        let mut got = params.to_vec();
        match (&expect, s.apply(&mut got, grads, "layer_x")) {
            (Ok(e), Ok(())) => assert_eq!(&got, e),
            (Err((i, v)), Err(err)) => {
                assert_eq!(got, params, "unchanged on error");
                let m = alloc::format!("{err}");
                let want = alloc::format!("parameter {i} would become {v}, outside i32");
                assert!(m.contains("layer_x") && m.contains(&want), "{m} / {want}");
            }
            (e, g) => panic!("reference {e:?}, apply {g:?}"),
        }
        let expect_bias = reference(s, bias, bg);
        let (mut w, mut b) = (params.to_vec(), bias.to_vec());
        let r = s.apply_layer(&mut w, grads, Some((&mut b, bg)), "layer_y");
        match (&expect, &expect_bias) {
            (Ok(ew), Ok(eb)) => {
                assert!(r.is_ok());
                assert_eq!((&w, &b), (ew, eb));
            }
            _ => {
                let m = alloc::format!("{}", r.unwrap_err());
                let (i, v) = expect.clone().err().or(expect_bias.clone().err()).unwrap();
                let want = alloc::format!("parameter {i} would become {v}, outside i32");
                assert!(m.contains("layer_y") && m.contains(&want), "{m} / {want}");
                assert_eq!((&w[..], &b[..]), (params, bias), "neither changed on error");
            }
        }
        // Staged (one pass computing and checking the new values), then committed.
        let (mut w, mut b) = (Array1::from(params.to_vec()), Array1::from(bias.to_vec()));
        let grads = (Array1::from(grads.to_vec()), Array1::from(bg.to_vec()));
        let r = s.stage(&w, grads.0, Some((&b, grads.1)), "layer_z");
        match (&expect, &expect_bias, r) {
            (Ok(ew), Ok(eb), Ok(staged)) => {
                staged.commit(&mut w, Some(&mut b));
                assert_eq!(
                    (w.as_slice().unwrap(), b.as_slice().unwrap()),
                    (&ew[..], &eb[..])
                );
            }
            (_, _, Err(err)) if expect.is_err() || expect_bias.is_err() => {
                let m = alloc::format!("{err}");
                let (i, v) = expect.clone().err().or(expect_bias.err()).unwrap();
                let want = alloc::format!("parameter {i} would become {v}, outside i32");
                assert!(m.contains("layer_z") && m.contains(&want), "{m} / {want}");
            }
            (e, eb, r) => panic!("reference {e:?} / {eb:?}, staged {:?}", r.map(|_| ())),
        }
    }

    /// Gradients from all magnitudes: mostly small, some around the divisor, some huge.
    fn grad_strategy() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![
            4 => -100_000i64..=100_000,
            3 => -(1i64 << 31)..(1i64 << 31),
            1 => proptest::num::i64::ANY,
            1 => prop_oneof![
                Just(i64::MIN),
                Just(i64::MAX),
                Just(i64::MIN + 1),
                Just(1i64 << 31),
                Just(-(1i64 << 31)),
                Just((1i64 << 31) - 1),
                Just(4_294_967_291i64),
                Just(-4_294_967_289i64),
            ],
        ]
    }

    fn param_strategy() -> impl proptest::strategy::Strategy<Value = i32> {
        use proptest::prelude::*;
        prop_oneof![
            4 => -50_000i32..=50_000,
            2 => proptest::num::i32::ANY,
            1 => prop_oneof![
                Just(i32::MIN),
                Just(i32::MAX),
                Just(i32::MIN + 1),
                Just(i32::MAX - 1)
            ],
        ]
    }

    fn sgd_strategy() -> impl proptest::strategy::Strategy<Value = Sgd> {
        use proptest::prelude::*;
        (
            prop_oneof![1i64..=4096, Just(512), 1i64..=(1 << 40)],
            prop_oneof![Just(1i64), Just(640), 1i64..=100_000],
            prop_oneof![Just(0i64), 1i64..=64, 1i64..=50_000, 1i64..=(1 << 40)],
        )
            .prop_filter_map("valid", |(l, a, d)| Sgd::new(l, a, d).ok())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        #[test]
        fn apply_matches_reference(
            s in sgd_strategy(),
            pg in proptest::collection::vec((param_strategy(), grad_strategy()), 0..70),
            bias in proptest::collection::vec((param_strategy(), grad_strategy()), 0..20),
        ) {
            let (p, g): (Vec<i32>, Vec<i64>) = pg.into_iter().unzip();
            let (b, bg): (Vec<i32>, Vec<i64>) = bias.into_iter().unzip();
            check_against_reference(&s, &p, &g, &b, &bg);
        }

        #[test]
        fn apply_matches_reference_small_values(
            s in sgd_strategy(),
            pg in proptest::collection::vec((-20_000i32..=20_000, -(1i64 << 30)..(1i64 << 30)), 0..200),
        ) {
            // The common case: every value on the fast path, results in range.
            let (p, g): (Vec<i32>, Vec<i64>) = pg.into_iter().unzip();
            check_against_reference(&s, &p, &g, &[], &[]);
        }
    }

    #[test]
    fn apply_edge_cases_match_reference() {
        let edges_p = [
            0,
            1,
            -1,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            9_999,
            -9_999,
            10_000,
        ];
        let edges_g = [
            0,
            1,
            -1,
            511,
            -511,
            512,
            -512,
            327_679,
            -327_680,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
            1 << 31,
            -(1 << 31),
            (1 << 31) - 1,
            // In [2³¹, 2³²): the 32-bit reciprocals of 7 and 19 are wrong for these.
            4_294_967_291,
            -4_294_967_291,
            4_294_967_289,
        ];
        for s in [
            Sgd::new(7, 1, 7).unwrap(),
            Sgd::new(19, 1, 0).unwrap(),
            Sgd::new(512, 640, 10_000).unwrap(),
            Sgd::new(512, 1, 8_000).unwrap(),
            Sgd::new(512, 640, 0).unwrap(),
            Sgd::new(1, 1, 0).unwrap(),
            Sgd::new(1, 1, 1).unwrap(),
            Sgd::new(1 << 31, 1, 1 << 31).unwrap(),
            Sgd::new((1 << 31) + 1, 1, (1 << 31) + 1).unwrap(),
            Sgd::new(i64::MAX, 1, i64::MAX).unwrap(),
        ] {
            for &p in &edges_p {
                for &g in &edges_g {
                    check_against_reference(&s, &[p], &[g], &[], &[]);
                }
            }
            // Blocks of 8 with one extreme element in various places.
            for pos in 0..19 {
                let mut p: Vec<i32> = (0..19).map(|i| i * 1000 - 9000).collect();
                let mut g: Vec<i64> = (0..19).map(|i| (i - 9) * 700_001).collect();
                check_against_reference(&s, &p, &g, &[], &[]);
                g[pos] = i64::MIN;
                check_against_reference(&s, &p, &g, &[], &[]);
                g[pos] = 3 << 31;
                check_against_reference(&s, &p, &g, &[], &[]);
                // One value in [2³¹, 2³²) in a block, one huge value elsewhere (for the
                // divisor 7 a huge value whose update still fits).
                g[pos] = 4_294_967_291;
                for huge in [i64::MAX, 7 << 30] {
                    g[(pos + 9) % 19] = huge;
                    check_against_reference(&s, &p, &g, &[], &[]);
                }
                g[(pos + 9) % 19] = 0;
                p[pos] = i32::MIN;
                g[pos] = 0;
                check_against_reference(&s, &p, &g, &[], &[]);
            }
        }
    }

    #[test]
    fn apply_large_layer_matches_reference() {
        // A 784×200 layer with paper-sized values, then with one parameter on the slow path.
        let mut r = crate::rng::Pcg32::new(3, 4);
        let p: Vec<i32> = (0..156_800).map(|_| r.symmetric(20_000)).collect();
        let mut g: Vec<i64> = (0..156_800)
            .map(|_| i64::from(r.symmetric(1 << 20)) << r.below(10))
            .collect();
        let bias: Vec<i32> = (0..200).map(|_| r.symmetric(20_000)).collect();
        let bg: Vec<i64> = (0..200).map(|_| i64::from(r.symmetric(1 << 28))).collect();
        for s in [
            Sgd::new(512, 640, 10_000).unwrap(),
            Sgd::new(512, 1, 8_000).unwrap(),
            Sgd::new(3, 7, 0).unwrap(),
        ] {
            check_against_reference(&s, &p, &g, &bias, &bg);
            g[100_003] = 5 << 40;
            check_against_reference(&s, &p, &g, &bias, &bg);
            g[100_003] = 17;
        }
        // An update that overflows in the bias only: neither is changed.
        let s = Sgd::new(1, 1, 0).unwrap();
        let mut bad_bias = bias.clone();
        bad_bias[7] = i32::MIN + 1;
        let mut bad_bg = bg.clone();
        bad_bg[7] = 2;
        check_against_reference(&s, &p, &g, &bad_bias, &bad_bg);
    }

    #[test]
    fn hand_built_invalid_sgd_is_a_config_error() {
        // Fields set directly to values `Sgd::new` rejects: no update, an error naming the layer.
        let s = Sgd {
            lr_inv: -4,
            amp: 1,
            decay_inv: 0,
        };
        let mut p = [10, -10, 3];
        let e = s.apply(&mut p, &[8, 8, -9], "x").unwrap_err();
        assert!(matches!(e, Error::Config(ref m) if m.starts_with("x: IntegerSGD needs")));
        let e = s.apply_layer(&mut p, &[8, 8, -9], None, "x").unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        assert_eq!(p, [10, -10, 3]);
    }

    #[test]
    fn length_mismatch_is_a_shape_error() {
        let s = Sgd::new(512, 1, 0).unwrap();
        let mut p = [1, 2, 3];
        let e = s.apply(&mut p, &[1, 2], "lin").unwrap_err();
        assert!(matches!(e, Error::Shape(ref m) if m == "lin: 3 parameters but 2 gradients"));
        let mut b = [1];
        let e = s
            .apply_layer(&mut p, &[1, 2, 3], Some((&mut b, &[1, 2])), "lin")
            .unwrap_err();
        assert!(matches!(e, Error::Shape(ref m) if m == "lin: 1 parameters but 2 gradients"));
        assert_eq!(p, [1, 2, 3]);
    }

    #[test]
    fn bad_hyper_parameters_are_rejected() {
        assert!(Sgd::new(0, 1, 0).is_err());
        assert!(Sgd::new(1, -1, 0).is_err());
        assert!(Sgd::new(1, 1, -5).is_err());
        assert!(Sgd::new(i64::MAX, 2, 0).is_err());
    }
}
