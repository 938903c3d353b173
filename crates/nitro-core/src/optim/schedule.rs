//! How the inverse learning rate evolves between epochs (algorithm.md §5), in integers.

/// How the inverse learning rate evolves between epochs (algorithm.md §5). All integer.
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
    /// Computed exactly in `i128` and capped at `max` (and at the `i64` range, so that no
    /// setting wraps: a value that is not a valid `lr_inv` is refused by the next step).
    pub fn next(&self, base: i64, current: i64, epoch: u32) -> i64 {
        let (b, c) = (i128::from(base), i128::from(current));
        let capped = |v: i128, max: i64| v.clamp(i128::from(i64::MIN), i128::from(max)) as i64;
        match *self {
            Schedule::Constant => current,
            Schedule::Linear { pct, max } => capped(c + b * i128::from(pct) / 100, max),
            Schedule::Exponential { pct, max } => capped(c * (100 + i128::from(pct)) / 100, max),
            Schedule::Halving { every, max } => {
                if every > 0 && epoch % every == 0 {
                    capped(c * 2, max)
                } else {
                    current
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn schedules_never_wrap() {
        let max = i64::MAX;
        let halving = Schedule::Halving { every: 1, max };
        assert_eq!(halving.next(1, i64::MAX, 1), i64::MAX);
        let linear = Schedule::Linear { pct: i64::MAX, max };
        assert_eq!(linear.next(i64::MAX, i64::MAX, 1), i64::MAX);
        let shrink = Schedule::Exponential { pct: i64::MIN, max };
        assert_eq!(shrink.next(512, i64::MAX, 1), i64::MIN);
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
}
