//! IntegerSGD (SPEC §5): inverse learning rates, per-layer amplification, integer weight decay,
//! integer schedules, plateau and early stopping.

use crate::arith::tdiv;
use crate::error::{Error, Result};
use crate::kernels::sgd::{check_lengths, overflow_at, Plan, Rates};
use alloc::format;
use alloc::vec::Vec;

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
        if lr_inv <= 0 || amp <= 0 || decay_inv < 0 {
            return Err(Error::config(format!(
                "IntegerSGD needs lr_inv > 0, amp > 0, decay_inv ≥ 0 (got {lr_inv}, {amp}, {decay_inv})"
            )));
        }
        if lr_inv.checked_mul(amp).is_none() {
            return Err(Error::config("lr_inv · amp overflows i64"));
        }
        Ok(Sgd {
            lr_inv,
            amp,
            decay_inv,
        })
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
        let Some(plan) = Plan::new(self.rates()) else {
            return self.apply_unchecked_hyper(params, grads, layer);
        };
        let scan = plan.check(params, grads, layer)?;
        plan.write(params, grads, scan);
        Ok(())
    }

    /// [`Sgd::apply_layer`] for a layer's own arrays (standard layout): weights of any shape
    /// with their gradient, and the bias with its gradient when the layer has one.
    pub fn apply_arrays<D: ndarray::Dimension>(
        &self,
        weight: &mut ndarray::Array<i32, D>,
        weight_grad: &ndarray::Array<i64, D>,
        bias: Option<(&mut ndarray::Array1<i32>, &ndarray::Array1<i64>)>,
        layer: &str,
    ) -> Result<()> {
        let bias = bias.map(|(b, g)| {
            (
                b.as_slice_mut().expect("contiguous bias"),
                g.as_slice().expect("contiguous bias gradient"),
            )
        });
        self.apply_layer(
            weight.as_slice_mut().expect("owned standard layout"),
            weight_grad.as_slice().expect("standard layout"),
            bias,
            layer,
        )
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
        let Some(plan) = Plan::new(self.rates()) else {
            let mut w = weight.to_vec();
            self.apply_unchecked_hyper(&mut w, weight_grad, layer)?;
            if let Some((b, g)) = bias {
                self.apply_unchecked_hyper(b, g, layer)?;
            }
            weight.copy_from_slice(&w);
            return Ok(());
        };
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

    /// [`Sgd::apply`] through [`Sgd::step`] one parameter at a time, for an `Sgd` whose fields
    /// were set directly to values [`Sgd::new`] rejects (kept so such values behave as before).
    fn apply_unchecked_hyper(&self, params: &mut [i32], grads: &[i64], layer: &str) -> Result<()> {
        check_lengths(params, grads, layer)?;
        let mut new = Vec::with_capacity(params.len());
        for (i, (&p, &g)) in params.iter().zip(grads).enumerate() {
            let v = self.step(p, g);
            match i32::try_from(v) {
                Ok(v) => new.push(v),
                Err(_) => return Err(overflow_at(layer, i, v)),
            }
        }
        params.copy_from_slice(&new);
        Ok(())
    }
}

/// How the inverse learning rate evolves between epochs (SPEC §5). All integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Keep `lr_inv`.
    #[default]
    Constant,
    /// `lr_inv += base·pct/100` per epoch, capped at `max`.
    Linear {
        /// Percent of the initial value added per epoch.
        pct: i64,
        /// Cap.
        max: i64,
    },
    /// `lr_inv = lr_inv·(100+pct)/100` per epoch, capped at `max`.
    Exponential {
        /// Percent growth per epoch.
        pct: i64,
        /// Cap.
        max: i64,
    },
    /// Double `lr_inv` every `every` epochs, capped at `max`.
    Halving {
        /// Period in epochs.
        every: u32,
        /// Cap.
        max: i64,
    },
}

impl Schedule {
    /// `lr_inv` for the epoch after `epoch` (1-based), given the initial `base` and current value.
    pub fn next(&self, base: i64, current: i64, epoch: u32) -> i64 {
        match *self {
            Schedule::Constant => current,
            Schedule::Linear { pct, max } => (current + base * pct / 100).min(max),
            Schedule::Exponential { pct, max } => (current * (100 + pct) / 100).min(max),
            Schedule::Halving { every, max } => {
                if every > 0 && epoch.is_multiple_of(every) {
                    (current * 2).min(max)
                } else {
                    current
                }
            }
        }
    }
}

/// An exact accuracy `correct / total` (compared without floats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fraction {
    /// Numerator.
    pub correct: u64,
    /// Denominator.
    pub total: u64,
}

impl Fraction {
    /// `self ≥ other + points/100` exactly (`points` in percentage points).
    pub fn improves_on(&self, other: &Fraction, points: u64) -> bool {
        if self.total == 0 {
            return false;
        }
        if other.total == 0 {
            return true;
        }
        // a/b ≥ c/d + p/100  ⇔  100·a·d ≥ 100·c·b + p·b·d
        let (a, b, c, d) = (
            u128::from(self.correct),
            u128::from(self.total),
            u128::from(other.correct),
            u128::from(other.total),
        );
        100 * a * d >= 100 * c * b + u128::from(points) * b * d
    }

    /// Strictly greater.
    pub fn gt(&self, other: &Fraction) -> bool {
        u128::from(self.correct) * u128::from(other.total.max(1))
            > u128::from(other.correct) * u128::from(self.total.max(1))
            || (other.total == 0 && self.total > 0)
    }

    /// Accuracy in basis points (1/100 of a percent), truncated — for integer-only reports.
    pub fn basis_points(&self) -> u64 {
        (self.correct * 10_000).checked_div(self.total).unwrap_or(0)
    }
}

/// The paper's plateau rule and early stopping (SPEC §5), watching test accuracy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plateau {
    /// First epoch (1-based) at which the plateau rule may fire (paper 10).
    pub start_epoch: u32,
    /// Epochs without an improvement of ≥ `min_delta_points` before `lr_inv` is multiplied (15).
    pub patience: u32,
    /// Multiplier of `lr_inv` on a plateau (3).
    pub factor: i64,
    /// Minimum improvement in percentage points (1).
    pub min_delta_points: u64,
    /// Early stopping: first epoch at which it may fire (30); `None` disables it.
    pub early_stop_start: Option<u32>,
    /// Early stopping patience in epochs (35).
    pub early_stop_patience: u32,
    best: Fraction,
    since_best: u32,
    since_lr_change: u32,
}

/// What the plateau watcher decided after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauAction {
    /// Nothing.
    None,
    /// Multiply `lr_inv` by the factor.
    ReduceLr,
    /// Stop training.
    Stop,
}

impl Plateau {
    /// The paper's protocol: from epoch 10, ×3 after 15 epochs without +1 point; early stop from
    /// epoch 30 after 35 epochs without +1 point.
    pub fn paper() -> Self {
        Plateau {
            start_epoch: 10,
            patience: 15,
            factor: 3,
            min_delta_points: 1,
            early_stop_start: Some(30),
            early_stop_patience: 35,
            best: Fraction::default(),
            since_best: 0,
            since_lr_change: 0,
        }
    }

    /// Feed the accuracy of epoch `epoch` (1-based).
    pub fn observe(&mut self, epoch: u32, acc: Fraction) -> PlateauAction {
        if self.best.total == 0 || acc.improves_on(&self.best, self.min_delta_points) {
            self.best = acc;
            self.since_best = 0;
            self.since_lr_change = 0;
        } else {
            self.since_best += 1;
            self.since_lr_change += 1;
        }
        if let Some(start) = self.early_stop_start {
            if epoch >= start && self.since_best >= self.early_stop_patience {
                return PlateauAction::Stop;
            }
        }
        if epoch >= self.start_epoch && self.since_lr_change >= self.patience {
            self.since_lr_change = 0;
            return PlateauAction::ReduceLr;
        }
        PlateauAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                let (i, v) = expect.clone().err().or(expect_bias.err()).unwrap();
                let want = alloc::format!("parameter {i} would become {v}, outside i32");
                assert!(m.contains("layer_y") && m.contains(&want), "{m} / {want}");
                assert_eq!((&w[..], &b[..]), (params, bias), "neither changed on error");
            }
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
    fn hand_built_invalid_sgd_keeps_the_per_parameter_path() {
        // Fields set directly to values `Sgd::new` rejects: `step` decides, as before.
        let s = Sgd {
            lr_inv: -4,
            amp: 1,
            decay_inv: 0,
        };
        let mut p = [10, -10, 3];
        s.apply(&mut p, &[8, 8, -9], "x").unwrap();
        assert_eq!(
            p,
            [
                s.step(10, 8) as i32,
                s.step(-10, 8) as i32,
                s.step(3, -9) as i32
            ]
        );
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

    #[test]
    fn schedules() {
        assert_eq!(
            Schedule::Linear { pct: 10, max: 600 }.next(512, 512, 1),
            563
        );
        assert_eq!(
            Schedule::Linear { pct: 10, max: 600 }.next(512, 563, 2),
            600
        );
        assert_eq!(
            Schedule::Exponential {
                pct: 50,
                max: 10_000
            }
            .next(512, 512, 1),
            768
        );
        assert_eq!(
            Schedule::Halving {
                every: 2,
                max: 4096
            }
            .next(512, 512, 1),
            512
        );
        assert_eq!(
            Schedule::Halving {
                every: 2,
                max: 4096
            }
            .next(512, 512, 2),
            1024
        );
        assert_eq!(Schedule::Constant.next(512, 700, 9), 700);
    }

    #[test]
    fn fraction_comparisons_are_exact() {
        let a = Fraction {
            correct: 8_866,
            total: 10_000,
        };
        let b = Fraction {
            correct: 8_766,
            total: 10_000,
        };
        assert!(a.improves_on(&b, 1));
        let c = Fraction {
            correct: 8_767,
            total: 10_000,
        };
        assert!(!a.improves_on(&c, 1));
        assert!(a.gt(&c) && !c.gt(&a));
        assert_eq!(a.basis_points(), 8_866);
    }

    #[test]
    fn plateau_reduces_then_stops() {
        let mut p = Plateau::paper();
        let flat = Fraction {
            correct: 50,
            total: 100,
        };
        let mut actions = alloc::vec::Vec::new();
        for e in 1..=80 {
            actions.push((e, p.observe(e, flat)));
        }
        let reduces: alloc::vec::Vec<u32> = actions
            .iter()
            .filter(|(_, a)| *a == PlateauAction::ReduceLr)
            .map(|(e, _)| *e)
            .collect();
        // no improvement after epoch 1: 15 epochs later (epoch 16) reduce, then every 15.
        assert_eq!(&reduces[..2], &[16, 31]);
        let stop = actions
            .iter()
            .find(|(_, a)| *a == PlateauAction::Stop)
            .unwrap()
            .0;
        assert_eq!(stop, 36);
    }
}
