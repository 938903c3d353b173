//! Integer primitives of SPEC §1: truncating division, integer square root, symmetric 8-bit clip,
//! and checked narrowing.

use crate::error::{Error, Result};
use alloc::format;

/// Division truncating toward zero (SPEC §1): `tdiv(-7, 2) == -3`.
///
/// This is Rust's `/` on signed integers, *not* Python's floor division.
///
/// # Panics
/// Only on the two cases integer division itself cannot answer: `b == 0`, and
/// `(i64::MIN, -1)`. The engine only divides by positive constants; use [`checked_tdiv`] on
/// untrusted divisors.
#[inline(always)]
pub const fn tdiv(a: i64, b: i64) -> i64 {
    a / b
}

/// [`tdiv`] that returns `None` instead of panicking (divisor 0, or `i64::MIN / -1`).
#[inline]
pub const fn checked_tdiv(a: i64, b: i64) -> Option<i64> {
    a.checked_div(b)
}

/// Floor of the square root of `n`, exact for every `u64` (Newton iteration, SPEC §1).
pub const fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // Start above the root: 2^ceil(bits/2) > sqrt(n); Newton then decreases monotonically.
    let bits = 64 - n.leading_zeros();
    let mut x: u64 = 1u64 << bits.div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// `min(max(x, -127), 127)` as `i8` (SPEC §1): the symmetric range, -128 is never produced.
#[inline(always)]
pub const fn clip8(x: i64) -> i8 {
    if x > 127 {
        127
    } else if x < -127 {
        -127
    } else {
        x as i8
    }
}

/// Narrow an `i64` to `i32`, or report an [`Error::Overflow`] naming `layer` and `op`.
#[inline]
pub fn narrow_i32(v: i64, layer: &str, op: &'static str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::overflow(layer, op, format!("value {v} does not fit i32")))
}

/// Largest absolute value of a slice, as `u64` (0 for an empty slice). Used for the
/// accumulator-width proofs of SPEC §10.
#[inline]
pub fn max_abs<T: Copy + Into<i64>>(s: &[T]) -> u64 {
    s.iter()
        .map(|&v| v.into().unsigned_abs())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdiv_truncates_toward_zero() {
        assert_eq!(tdiv(-7, 2), -3);
        assert_eq!(tdiv(7, -2), -3);
        assert_eq!(tdiv(-7, -2), 3);
        assert_eq!(tdiv(7, 2), 3);
        assert_eq!(checked_tdiv(i64::MIN, -1), None);
        assert_eq!(checked_tdiv(1, 0), None);
        assert_eq!(checked_tdiv(i64::MIN, 1), Some(i64::MIN));
        assert_eq!(checked_tdiv(i64::MIN + 1, -1), Some(i64::MAX));
    }

    #[test]
    fn tdiv_exhaustive_small() {
        for a in -300i64..=300 {
            for b in (-40i64..=40).filter(|&b| b != 0) {
                let q = tdiv(a, b);
                let r = a - q * b;
                // |r| < |b| and r has the sign of a (or is zero): that is truncation.
                assert!(r.abs() < b.abs(), "{a}/{b}");
                assert!(r == 0 || (r < 0) == (a < 0), "{a}/{b}");
            }
        }
    }

    #[test]
    fn isqrt_exhaustive_small_and_edges() {
        for n in 0u64..100_000 {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
        assert_eq!(isqrt(u64::MAX), 4_294_967_295);
        assert_eq!(isqrt(u64::MAX - 1), 4_294_967_295);
        let big = 4_294_967_295u64 * 4_294_967_295;
        assert_eq!(isqrt(big), 4_294_967_295);
        assert_eq!(isqrt(big - 1), 4_294_967_294);
    }

    #[test]
    fn clip8_is_symmetric() {
        for x in -1000i64..=1000 {
            let c = i64::from(clip8(x));
            assert_eq!(c, x.clamp(-127, 127));
        }
        assert_eq!(clip8(i64::MIN), -127);
        assert_eq!(clip8(i64::MAX), 127);
    }

    #[test]
    fn narrowing_reports_overflow() {
        assert_eq!(
            narrow_i32(i64::from(i32::MAX), "l", "op").unwrap(),
            i32::MAX
        );
        let e = narrow_i32(i64::from(i32::MAX) + 1, "layer_x", "weight update").unwrap_err();
        let m = alloc::format!("{e}");
        assert!(m.contains("layer_x") && m.contains("weight update"), "{m}");
    }

    proptest::proptest! {
        #[test]
        fn tdiv_matches_definition(a in proptest::num::i64::ANY, b in proptest::num::i64::ANY) {
            proptest::prop_assume!(b != 0 && !(a == i64::MIN && b == -1));
            let q = tdiv(a, b);
            // Compare with exact rational truncation computed in i128.
            let (a2, b2) = (i128::from(a), i128::from(b));
            let t = (a2.abs() / b2.abs()) * if (a2 < 0) != (b2 < 0) { -1 } else { 1 };
            proptest::prop_assert_eq!(i128::from(q), t);
        }

        #[test]
        fn isqrt_is_floor_root(n in proptest::num::u64::ANY) {
            let r = u128::from(isqrt(n));
            proptest::prop_assert!(r * r <= u128::from(n));
            proptest::prop_assert!((r + 1) * (r + 1) > u128::from(n));
        }
    }
}
