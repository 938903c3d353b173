//! How the inverse learning rate evolves between epochs (SPEC §5), in integers.

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

#[cfg(test)]
mod tests {
    use super::*;
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
