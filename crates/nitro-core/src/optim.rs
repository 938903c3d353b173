//! IntegerSGD (SPEC §5): inverse learning rates, per-layer amplification, integer weight decay,
//! integer schedules, plateau and early stopping.

use crate::arith::tdiv;
use crate::error::{Error, Result};
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
        if params.len() != grads.len() {
            return Err(Error::shape(format!(
                "{layer}: {} parameters but {} gradients",
                params.len(),
                grads.len()
            )));
        }
        let mut new = Vec::with_capacity(params.len());
        for (i, (&p, &g)) in params.iter().zip(grads).enumerate() {
            let v = self.step(p, g);
            match i32::try_from(v) {
                Ok(v) => new.push(v),
                Err(_) => {
                    return Err(Error::overflow(
                        layer,
                        "weight update",
                        format!("parameter {i} would become {v}, outside i32"),
                    ))
                }
            }
        }
        params.copy_from_slice(&new);
        Ok(())
    }
}

impl Sgd {
    /// Update a layer's weights and optional bias together, all-or-nothing: if any new value
    /// would leave `i32`, neither is changed and [`Error::Overflow`] names `layer`.
    pub fn apply_layer(
        &self,
        weight: &mut [i32],
        weight_grad: &[i64],
        bias: Option<(&mut [i32], &[i64])>,
        layer: &str,
    ) -> Result<()> {
        let mut w = weight.to_vec();
        self.apply(&mut w, weight_grad, layer)?;
        if let Some((b, g)) = bias {
            self.apply(b, g, layer)?;
        }
        weight.copy_from_slice(&w);
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
                if every > 0 && epoch % every == 0 {
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
