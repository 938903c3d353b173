//! Integer primitives of algorithm.md §1: truncating division, integer square root, symmetric 8-bit
//! clip, and checked narrowing.

use crate::error::{Error, Result};
use alloc::format;

/// Division truncating toward zero (algorithm.md §1): `tdiv(-7, 2) == -3`.
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

/// Floor of the square root of `n`, exact for every `u64` (Newton iteration, algorithm.md §1).
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

/// `min(max(x, -127), 127)` as `i8` (algorithm.md §1): the symmetric range, -128 is never produced.
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
/// accumulator-width proofs of algorithm.md §10.
#[inline]
pub fn max_abs<T: Copy + Into<i64>>(s: &[T]) -> u64 {
    s.iter()
        .map(|&v| v.into().unsigned_abs())
        .max()
        .unwrap_or(0)
}

/// Exact `⌊n / d⌋` for `0 ≤ n < 2³¹` and a fixed divisor `d ≥ 1`, by one 32×32→64-bit multiply
/// and a shift (the `vpmuludq` of AVX2, so loops over it vectorise). Callers check `n < 2³¹`.
///
/// Proof (Granlund–Montgomery style). Let `N = 31`, `l = ⌈log₂ d⌉` (so `d ≤ 2ˡ`, and `d > 2ˡ⁻¹`
/// when `l ≥ 1`), `s = N + l`, `m = ⌈2ˢ / d⌉`, and write `m·d = 2ˢ + e` with `0 ≤ e < d`. For
/// `0 ≤ n < 2ᴺ` with `n = q·d + r`, `0 ≤ r < d`:
/// `n·m / 2ˢ = n/d + n·e/(d·2ˢ)` and `0 ≤ n·e/(d·2ˢ) < 2ᴺ·d/(d·2ᴺ⁺ˡ) = 2⁻ˡ ≤ 1/d`, so
/// `q ≤ n·m/2ˢ < q + r/d + 1/d ≤ q + 1`, i.e. `⌊n·m/2ˢ⌋ = q`.
/// Size of `m`: for `d = 1`, `m = 2ᴺ`. For `l ≥ 1`, `2ˢ/d < 2ᴺ⁺¹`, and `m = 2ᴺ⁺¹` would need
/// `2ᴺ⁺ˡ > (2ᴺ⁺¹ − 1)·d ≥ (2ᴺ⁺¹ − 1)(2ˡ⁻¹ + 1)`, i.e. `2ˡ⁻¹ + 1 > 2ᴺ⁺¹`, false for `l ≤ N + 1`.
/// So `m < 2ᴺ⁺¹ = 2³²` fits `u32` whenever `d ≤ 2³¹` (`l ≤ 31`, `s ≤ 62`), and `n·m < 2⁶³`.
/// For `d > 2³¹` every quotient of an `n < 2³¹` is 0: `m = 0` (and `s = 0`) gives exactly that,
/// and so does the divisor `d = 0`, which stands for "no division" (a switched-off decay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DivU31 {
    m: u32,
    s: u32,
}

impl DivU31 {
    /// The multiplier and shift for `d` (`d = 0` or `d > 2³¹`: the constant quotient 0).
    pub(crate) const fn new(d: u64) -> Self {
        if d == 0 || d > 1 << 31 {
            return DivU31 { m: 0, s: 0 };
        }
        let l = 64 - (d - 1).leading_zeros(); // ⌈log₂ d⌉ (0 for d = 1)
        let s = 31 + l;
        // ⌈2ˢ / d⌉ < 2³² (see above); 2ˢ ≤ 2⁶² fits u64.
        let m = (1u64 << s).div_ceil(d);
        DivU31 { m: m as u32, s }
    }

    /// `⌊n / d⌋`, exact for `n < 2³¹` (for larger `n` the low 32 bits are used: not a quotient).
    #[inline(always)]
    pub(crate) fn div(self, n: u64) -> u64 {
        (u64::from(n as u32) * u64::from(self.m)) >> self.s
    }

    /// The multiplier and the shift, for a vector kernel that divides the same way.
    #[cfg(nitro_x86_simd)]
    #[inline]
    pub(crate) fn parts(self) -> (u32, u32) {
        (self.m, self.s)
    }
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

    #[test]
    fn div_u31_exhaustive_small_divisors_and_edges() {
        // Every divisor up to 2^12 against dividends near every multiple boundary and the ends.
        for d in 1u64..=4096 {
            let v = DivU31::new(d);
            let mut ns: alloc::vec::Vec<u64> = (0..=3 * d + 2).collect();
            ns.extend([(1 << 31) - 1, (1 << 31) - 2, (1 << 30), (1 << 30) - 1]);
            let top = ((1u64 << 31) - 1) / d * d;
            ns.extend([top, top.saturating_sub(1), top.saturating_sub(d)]);
            for n in ns.into_iter().filter(|&n| n < 1 << 31) {
                assert_eq!(v.div(n), n / d, "{n}/{d}");
            }
        }
        // Divisors at and around powers of two up to and beyond 2^31, and the "off" divisor.
        for k in 0..=40u32 {
            for d in [(1u64 << k).saturating_sub(1), 1 << k, (1 << k) + 1] {
                let v = DivU31::new(d);
                for n in [
                    0,
                    1,
                    d.saturating_sub(1),
                    d,
                    d + 1,
                    (1 << 31) - 1,
                    123_456_789,
                ] {
                    if n < 1 << 31 {
                        assert_eq!(v.div(n), n.checked_div(d).unwrap_or(0), "{n}/{d}");
                    }
                }
            }
        }
        // The divisors of the paper's settings, every dividend of a 2^20 range.
        for d in [
            512u64, 327_680, 8_000, 10_000, 12_000, 3_000, 29_000, 6_000, 500,
        ] {
            let v = DivU31::new(d);
            for n in 0..(1 << 20) {
                assert_eq!(v.div(n), n / d);
            }
        }
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
        fn div_u31_is_exact(n in 0u64..(1 << 31), d in 1u64..=(1 << 31)) {
            proptest::prop_assert_eq!(DivU31::new(d).div(n), n / d);
        }

        #[test]
        fn div_u31_is_exact_small_divisors(n in 0u64..(1 << 31), d in 1u64..100_000) {
            proptest::prop_assert_eq!(DivU31::new(d).div(n), n / d);
        }

        #[test]
        fn isqrt_is_floor_root(n in proptest::num::u64::ANY) {
            let r = u128::from(isqrt(n));
            proptest::prop_assert!(r * r <= u128::from(n));
            proptest::prop_assert!((r + 1) * (r + 1) > u128::from(n));
        }
    }
}
