//! Optimisation (algorithm.md §5): IntegerSGD with inverse learning rates, per-layer amplification
//! and integer weight decay ([`Sgd`]), the run's settings ([`Hyper`], [`Compat`]), integer
//! schedules of `lr_inv`, the plateau rule and early stopping.

mod gradient;
mod hyper;
mod plateau;
mod schedule;
mod sgd;

pub(crate) use gradient::Gradient;
pub use hyper::{Compat, Hyper};
pub use plateau::{Plateau, PlateauAction};
pub use schedule::Schedule;
pub use sgd::Sgd;
pub(crate) use sgd::Staged;
