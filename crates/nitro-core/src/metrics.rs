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
}
