//! The NITRO Scaling layer (SPEC §3.3): `y = clip8(tdiv(z, SF))`, `SF = 2⁸·fan_in`; backward is
//! the identity.

use crate::arith::{clip8, tdiv};
use crate::error::{Error, Result};
use ndarray::{Array, Dimension};

/// Scaling by `2⁸ · fan_in` back to the symmetric `i8` range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scaling {
    /// The divisor `SF`.
    pub factor: i64,
}

impl Scaling {
    /// The scaling layer after a layer with `fan_in` inputs per output.
    pub fn for_fan_in(fan_in: usize) -> Result<Self> {
        let f = i64::try_from(fan_in)
            .ok()
            .and_then(|f| f.checked_mul(256))
            .filter(|&f| f > 0)
            .ok_or_else(|| Error::config("scaling fan_in must be positive and < 2^55"))?;
        Ok(Scaling { factor: f })
    }

    /// Forward: `clip8(tdiv(z, SF))` element-wise.
    pub fn forward<D: Dimension>(&self, z: &Array<i64, D>) -> Array<i8, D> {
        let f = self.factor;
        z.mapv(|v| clip8(tdiv(v, f)))
    }
}
