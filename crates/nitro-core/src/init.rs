//! Integer He/Glorot initialisation (algorithm.md §6): a bound from integer formulas, then weights
//! uniform in `[−bound, bound]` from a seeded [`Pcg32`].

use crate::arith::isqrt;
use crate::error::{Error, Result};
use crate::layers::ActivationKind;
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array, Dimension, IntoDimension, ShapeBuilder};

/// Which bound formula to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// He/Kaiming (fan-in) with the activation's gain.
    Kaiming,
    /// Glorot/Xavier with the activation's gain (the spec uses it for PocketTanh).
    Xavier,
    /// `isqrt(64·32767 / fan_in)`.
    Std,
}

impl Init {
    /// The spec's default for an activation: Xavier for PocketTanh, Kaiming otherwise.
    pub fn default_for(kind: ActivationKind) -> Init {
        match kind {
            ActivationKind::PocketTanh => Init::Xavier,
            _ => Init::Kaiming,
        }
    }

    /// Stable name.
    pub fn name(&self) -> &'static str {
        match self {
            Init::Kaiming => "kaiming",
            Init::Xavier => "xavier",
            Init::Std => "std",
        }
    }

    /// Parse [`Init::name`].
    pub fn from_name(s: &str) -> Result<Init> {
        match s {
            "kaiming" => Ok(Init::Kaiming),
            "xavier" => Ok(Init::Xavier),
            "std" => Ok(Init::Std),
            o => Err(Error::config(alloc::format!(
                "unknown init {o:?}; expected kaiming, xavier or std"
            ))),
        }
    }
}

/// Gain ×1000 of an activation (algorithm.md §6).
pub fn gain_x1000(kind: ActivationKind) -> u64 {
    match kind {
        ActivationKind::PocketTanh => 1667,
        ActivationKind::PocketRelu | ActivationKind::BipolarPocketRelu => 1414,
        ActivationKind::NitroRelu { a }
        | ActivationKind::PocketLeakyRelu { a }
        | ActivationKind::BipolarPocketLeakyRelu { a } => match a {
            3 => 1342,
            4 => 1372,
            5 => 1387,
            7 => 1400,
            8 => 1403,
            10 => 1407,
            15 | 16 => 1411,
            _ => 1412,
        },
    }
}

/// The uniform bound for a weight with the given fans (capped at 64).
pub fn bound(init: Init, kind: ActivationKind, fan_in: usize, fan_out: usize) -> u32 {
    let g = gain_x1000(kind);
    let b = match init {
        Init::Kaiming => (g * 128 * 1732) / (isqrt(fan_in as u64).max(1) * 1_000_000),
        Init::Xavier => (g * 128 * 2449) / (isqrt((fan_in + fan_out) as u64).max(1) * 1_000_000),
        Init::Std => isqrt((64 * 32767) / (fan_in as u64).max(1)),
    };
    b.min(64) as u32
}

/// A weight tensor of `shape` with entries uniform in `[−bound, bound]` drawn from `rng`
/// in row-major order.
pub fn uniform<D: Dimension, Sh: ShapeBuilder<Dim = D>>(
    shape: Sh,
    bound: u32,
    rng: &mut Pcg32,
) -> Array<i32, D> {
    let mut a = Array::<i32, D>::zeros(shape);
    for v in a.iter_mut() {
        *v = rng.symmetric(bound);
    }
    a
}

/// [`uniform`] (the same values) with a fallible allocation: when the memory for the tensor
/// cannot be had, an [`Error::Config`] naming `layer` and the size instead of an abort.
pub fn try_uniform<Sh: IntoDimension>(
    shape: Sh,
    bound: u32,
    rng: &mut Pcg32,
    layer: &str,
) -> Result<Array<i32, Sh::Dim>> {
    let dim = shape.into_dimension();
    let too_big = || {
        Error::config(format!(
            "{layer}: cannot allocate a {:?} weight tensor",
            dim.slice()
        ))
    };
    let n = dim.size_checked().ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| too_big())?;
    v.extend((0..n).map(|_| rng.symmetric(bound)));
    Array::from_shape_vec(dim, v).map_err(|e| Error::shape(format!("{layer}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_from_spec_formulas() {
        let k = ActivationKind::NitroRelu { a: 4 };
        // (1372·128·1732)/(28·10⁶) = 304_166_912 / 28_000_000 = 10
        assert_eq!(bound(Init::Kaiming, k, 784, 200), 10);
        // fan_in 50: isqrt = 7 → 304_166_912 / 7_000_000 = 43
        assert_eq!(bound(Init::Kaiming, k, 50, 10), 43);
        // fan_in 1: capped at 64
        assert_eq!(bound(Init::Kaiming, k, 1, 10), 64);
        // Xavier tanh, 784+200: isqrt(984)=31 → (1667·128·2449)/(31·10⁶) = 16
        assert_eq!(
            bound(Init::Xavier, ActivationKind::PocketTanh, 784, 200),
            16
        );
        // std: isqrt(64·32767/784) = isqrt(2674) = 51
        assert_eq!(bound(Init::Std, k, 784, 200), 51);
    }
}
