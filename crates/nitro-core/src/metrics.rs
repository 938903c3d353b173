//! What training measures, in integers: exact accuracies (`correct / total`, compared without
//! floats) and the losses of one step. The per-epoch report (`EpochMetrics`) is in `train.rs`.

use alloc::vec::Vec;

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
        // a/b ≥ c/d + p/100  ⇔  100·a·d ≥ 100·c·b + p·b·d, in 256 bits: exact for every u64.
        let (a, b, c, d) = (self.correct, self.total, other.correct, other.total);
        let rhs = add256(mul3(100, c, b), mul3(points, b, d));
        mul3(100, a, d) >= rhs
    }

    /// Strictly greater.
    pub fn gt(&self, other: &Fraction) -> bool {
        u128::from(self.correct) * u128::from(other.total.max(1))
            > u128::from(other.correct) * u128::from(self.total.max(1))
            || (other.total == 0 && self.total > 0)
    }

    /// Accuracy in basis points (1/100 of a percent), truncated — for integer-only reports.
    pub fn basis_points(&self) -> u64 {
        let bp = (u128::from(self.correct) * 10_000).checked_div(u128::from(self.total));
        bp.map_or(0, |v| u64::try_from(v).unwrap_or(u64::MAX))
    }
}

/// `x·y·z` exactly, as 256 bits `(high, low)`.
fn mul3(x: u64, y: u64, z: u64) -> (u128, u128) {
    let p = u128::from(x) * u128::from(y);
    let z = u128::from(z);
    // p·z = (p₁·2⁶⁴ + p₀)·z = p₁z·2⁶⁴ + p₀z, both partial products below 2¹²⁸.
    let (lo, mid) = ((p & u128::from(u64::MAX)) * z, (p >> 64) * z);
    let (low, carry) = lo.overflowing_add(mid << 64);
    ((mid >> 64) + u128::from(carry), low)
}

/// The sum of two 256-bit values `(high, low)` (below 2²⁵⁵ here: no overflow).
fn add256(a: (u128, u128), b: (u128, u128)) -> (u128, u128) {
    let (low, carry) = a.1.overflowing_add(b.1);
    (a.0 + b.0 + u128::from(carry), low)
}

/// Local loss and accuracy of one block for one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// `Σ (y − ŷ)²` of the head.
    pub loss: i64,
    /// Rows the head classified correctly.
    pub correct: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
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
    fn fraction_comparisons_are_exact_for_every_u64() {
        let big = |correct, total| Fraction { correct, total };
        let m = u64::MAX;
        // (m−1)/m ≥ (m−2)/m + p/100 ⇔ 100 ≥ p·m: only for p = 0.
        assert!(big(m - 1, m).improves_on(&big(m - 2, m), 0));
        assert!(!big(m - 1, m).improves_on(&big(m - 2, m), 1));
        assert!(big(m, m).improves_on(&big(0, m), 100));
        assert!(!big(m, m).improves_on(&big(1, m), 100));
        assert!(!big(1, 2).improves_on(&big(1, 2), m));
        assert_eq!(big(m, m).basis_points(), 10_000);
        assert_eq!(big(m, 1).basis_points(), u64::MAX);
        // Against a u128 evaluation where that does not overflow.
        let mut r = crate::rng::Pcg32::new(4, 4);
        for _ in 0..2000 {
            let v = |r: &mut crate::rng::Pcg32| u64::from(r.next_u32()) >> r.below(32);
            let (a, b, c, d, p) = (
                v(&mut r),
                v(&mut r) + 1,
                v(&mut r),
                v(&mut r) + 1,
                r.below(200),
            );
            let (a, b, c, d, p) = (a as u128, b as u128, c as u128, d as u128, p as u128);
            let want = 100 * a * d >= 100 * c * b + p * b * d;
            let got = big(a as u64, b as u64).improves_on(&big(c as u64, d as u64), p as u64);
            assert_eq!(got, want, "{a}/{b} vs {c}/{d} + {p}");
        }
    }
}
