//! The paper's plateau rule and early stopping (algorithm.md §5), watching test accuracy.

use crate::metrics::Fraction;

/// The paper's plateau rule and early stopping (algorithm.md §5), watching test accuracy.
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

    /// The counters `(best accuracy, epochs since the best, epochs since the last lr change)`:
    /// with the settings, everything the watcher's future depends on.
    pub fn counters(&self) -> (Fraction, u32, u32) {
        (self.best, self.since_best, self.since_lr_change)
    }

    /// The watcher with its counters restored (from [`Plateau::counters`]).
    pub fn with_counters(mut self, best: Fraction, since_best: u32, since_lr_change: u32) -> Self {
        self.best = best;
        self.since_best = since_best;
        self.since_lr_change = since_lr_change;
        self
    }

    /// Feed the accuracy of epoch `epoch` (1-based).
    pub fn observe(&mut self, epoch: u32, acc: Fraction) -> PlateauAction {
        if self.best.total == 0 || acc.improves_on(&self.best, self.min_delta_points) {
            self.best = acc;
            self.since_best = 0;
            self.since_lr_change = 0;
        } else {
            self.since_best = self.since_best.saturating_add(1);
            self.since_lr_change = self.since_lr_change.saturating_add(1);
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
