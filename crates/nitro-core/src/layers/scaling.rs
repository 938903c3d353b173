//! The NITRO Scaling layer (algorithm.md §3.3): `y = clip8(tdiv(z, SF))`, `SF = 2⁸·fan_in`;
//! backward is the identity.

use crate::arith::{clip8, tdiv, DivU31};
use crate::error::{Error, Result};
use crate::kernels::map::map_array;
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

    /// The element function `z ↦ clip8(tdiv(z, SF))` (for fused epilogues; [`Scaling::forward`]
    /// applies it to a tensor).
    pub fn scalar(&self) -> impl Fn(i64) -> i8 + Copy + Send + Sync {
        let f = self.factor;
        // A factor set by hand to ≤ 0 takes the plain division (DivU31 needs a positive one).
        let r = (f > 0).then(|| DivU31::new(f as u64));
        // Every |v| ≥ 128·f gives a quotient ≥ 128, which clip8 makes ±127, and so does
        // 128·f itself: so |v| may be capped at 128·f before dividing, which keeps the
        // dividend below 2³¹ — the reciprocal's exact range — whenever 128·f < 2³¹ (any
        // fan-in below 2¹⁶), with no branch (the loops over it vectorise).
        let cap = r.filter(|_| f < 1 << 24).map(|r| (r, 128 * f as u64));
        move |v: i64| {
            // tdiv(v, f) = ±⌊|v| / f⌋.
            let sign = (v >> 63) as u64;
            let abs = ((v as u64) ^ sign).wrapping_sub(sign);
            match (cap, r) {
                (Some((r, cap)), _) => {
                    clip8((r.div(abs.min(cap)) ^ sign).wrapping_sub(sign) as i64)
                }
                // By the exact reciprocal where |v| < 2³¹ (nearly always).
                (None, Some(r)) if abs >> 31 == 0 => {
                    clip8((r.div(abs) ^ sign).wrapping_sub(sign) as i64)
                }
                _ => clip8(tdiv(v, f)),
            }
        }
    }

    /// Forward: `clip8(tdiv(z, SF))` element-wise.
    pub fn forward<D: Dimension>(&self, z: &Array<i64, D>) -> Array<i8, D> {
        map_array(z.view(), self.scalar())
    }

    /// [`Scaling::forward`] of a product that is not needed afterwards: its buffer goes back
    /// to the kernels' free list, so the next step's product of the same size does not ask the
    /// allocator for fresh (zeroed) memory.
    pub fn forward_consuming<D: Dimension>(&self, z: Array<i64, D>) -> Array<i8, D> {
        let y = self.forward(&z);
        crate::kernels::recycle(z);
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;
    use proptest::prelude::*;

    fn check(factor: i64, z: &[i64]) {
        let s = Scaling { factor };
        let y = s.forward(&Array1::from(z.to_vec()));
        for (&v, &o) in z.iter().zip(y.iter()) {
            assert_eq!(o, clip8(tdiv(v, factor)), "{v} / {factor}");
        }
    }

    #[test]
    fn forward_matches_the_formula_at_the_edges() {
        let mut z = alloc::vec![
            0,
            1,
            -1,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
            1 << 31,
            -(1 << 31)
        ];
        z.extend([(1 << 31) - 1, -(1 << 31) + 1, 4_294_967_291, -4_294_967_291]);
        for fan_in in [
            1usize,
            2,
            3,
            7,
            50,
            100,
            200,
            784,
            3072,
            1 << 20,
            1 << 23,
            1 << 24,
        ] {
            let f = Scaling::for_fan_in(fan_in).unwrap().factor;
            let mut zz = z.clone();
            for k in -130i64..=130 {
                zz.extend([k * f, k * f - 1, k * f + 1]);
            }
            check(f, &zz);
        }
        // (A negative factor is only reachable by setting the field by hand; −1 would divide
        // i64::MIN by −1, which panics in the formula itself.)
        for f in [
            1,
            2,
            7,
            (1 << 31) - 1,
            1 << 31,
            (1 << 31) + 1,
            i64::MAX,
            -5,
            -2,
        ] {
            check(f, &z);
        }
    }

    proptest::proptest! {
        #[test]
        fn forward_matches_the_formula(
            f in prop_oneof![1i64..=(1 << 33), any::<i64>().prop_filter("divisor", |&f| !(-1..=0).contains(&f))],
            z in proptest::collection::vec(prop_oneof![-(1i64 << 40)..(1i64 << 40), any::<i64>()], 0..40),
        ) {
            check(f, &z);
        }
    }
}
