//! Integer tensors: the `ndarray` types the engine passes between layers, named by role, with
//! their storage widths (SPEC §10).
//!
//! | role | type | why this width |
//! |---|---|---|
//! | inputs and activations | [`Acts`] (`i8`) | scaling layers clip to `[−127, 127]` (SPEC §3.3) |
//! | activations after dropout | [`WideActs`] (`i16`) | dropout rescales by up to 20× (SPEC §3.6) |
//! | weights | [`Weights`] (`i32`) | measured weights exceed `i16` within the paper's schedule |
//! | errors | [`Errors`] (`i32`) | `δ·W` of a head grows beyond `i16`; narrowing is checked |
//! | products and gradients | [`Wide`] (`i64`) | exact results of the proven GEMM (SPEC §10) |

use ndarray::{Array2, Array4};

/// `i8` activations, `batch × features`.
pub type Acts = Array2<i8>;
/// `i16` activations (after dropout), `batch × features`.
pub type WideActs = Array2<i16>;
/// `i32` weight matrix, `out × in`.
pub type Weights = Array2<i32>;
/// `i32` convolution weights, `F × C × k × k`.
pub type ConvWeights = Array4<i32>;
/// `i32` errors, `batch × features`.
pub type Errors = Array2<i32>;
/// `i64` exact products and gradients.
pub type Wide = Array2<i64>;

/// The storage type of a tensor in a saved model or an exported blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// 8-bit signed.
    I8,
    /// 16-bit signed.
    I16,
    /// 32-bit signed.
    I32,
    /// 64-bit signed.
    I64,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 => 4,
            DType::I64 => 8,
        }
    }

    /// Whether `v` fits this type.
    pub const fn fits(self, v: i64) -> bool {
        match self {
            DType::I8 => v >= i8::MIN as i64 && v <= i8::MAX as i64,
            DType::I16 => v >= i16::MIN as i64 && v <= i16::MAX as i64,
            DType::I32 => v >= i32::MIN as i64 && v <= i32::MAX as i64,
            DType::I64 => true,
        }
    }
}

pub use crate::arith::max_abs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_ranges() {
        assert!(DType::I8.fits(-128) && !DType::I8.fits(128));
        assert!(DType::I16.fits(32_767) && !DType::I16.fits(-32_769));
        assert!(DType::I32.fits(i64::from(i32::MIN)) && !DType::I32.fits(1 << 31));
        assert_eq!(DType::I32.size(), 4);
        assert_eq!(max_abs(&[3i32, -7, 5]), 7);
    }
}
