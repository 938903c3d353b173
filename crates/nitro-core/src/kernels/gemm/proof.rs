//! The accumulator-width proof of algorithm.md §10: from bounds of the operands' magnitudes and the
//! reduction length, the cheapest accumulation that cannot overflow.

use crate::error::{Error, Result};
use alloc::format;

/// How the sums of one product are accumulated (algorithm.md §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accum {
    /// Whole reduction in `i32`.
    I32,
    /// Reduction split into chunks of this many terms, each summed in `i32`, chunks added in `i64`.
    Chunked(usize),
    /// Everything in `i64`.
    I64,
}

impl Accum {
    /// The fastest exact accumulation for a reduction of length `k` over operands bounded by
    /// `max_a` and `max_b` in absolute value.
    pub fn prove(max_a: u64, max_b: u64, k: usize) -> Accum {
        let limit = i32::MAX as u64;
        let per_term = max_a.saturating_mul(max_b);
        if per_term == 0 {
            return Accum::I32;
        }
        if per_term > limit {
            return Accum::I64;
        }
        let chunk = (limit / per_term) as usize;
        if chunk >= k {
            Accum::I32
        } else {
            Accum::Chunked(chunk)
        }
    }

    /// Terms per `i32` chunk for a reduction of length `k` (0 means "use i64").
    pub(super) fn chunk_len(self, k: usize) -> usize {
        match self {
            Accum::I32 => k.max(1),
            Accum::Chunked(c) => c,
            Accum::I64 => 0,
        }
    }

    /// Pairs per `i32` block of the pair engine: `⌊chunk/2⌋`, or `None` when not even one pair
    /// is proven to fit (or the accumulation is `i64`).
    pub(super) fn pairs_per_block(self, k: usize) -> Option<usize> {
        match self {
            Accum::I64 => None,
            p => {
                let pairs = p.chunk_len(k) / 2;
                (pairs >= 1 || k <= 1).then_some(pairs.max(1))
            }
        }
    }

    /// The forced accumulation made no less safe than the proven one, or the proven one.
    pub(super) fn forced(forced: Option<Accum>, proven: Accum, k: usize) -> Accum {
        match forced {
            None => proven,
            Some(Accum::I64) => Accum::I64,
            Some(_) if proven == Accum::I64 => Accum::I64,
            Some(p) if p.chunk_len(k) <= proven.chunk_len(k) => p,
            Some(_) => proven,
        }
    }
}

/// Check that every dot product of length `k` fits `i64` (it always does for the operand sizes
/// of NITRO-D; this guards arbitrary inputs).
pub(super) fn prove_i64(max_a: u64, max_b: u64, k: usize) -> Result<()> {
    let bound = u128::from(max_a) * u128::from(max_b) * k as u128;
    if bound > i64::MAX as u128 {
        return Err(Error::overflow(
            "gemm",
            "product",
            format!("a sum of {k} products of |a| ≤ {max_a} and |b| ≤ {max_b} may exceed i64"),
        ));
    }
    Ok(())
}

/// The inner dimensions of a product agree.
pub(super) fn check_k(ka: usize, kb: usize) -> Result<()> {
    if ka != kb {
        return Err(Error::shape(format!(
            "matrix product: inner dimensions {ka} and {kb} differ"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_boundaries() {
        assert_eq!(Accum::prove(127, 127, 1000), Accum::I32);
        assert_eq!(Accum::prove(0, 1 << 40, 5), Accum::I32);
        // 2^31-1 = 2147483647; 46341^2 > 2^31 - 1
        assert_eq!(Accum::prove(46_341, 46_341, 1), Accum::I64);
        assert_eq!(Accum::prove(1 << 15, 1 << 15, 2), Accum::Chunked(1));
        assert_eq!(Accum::prove(1000, 1000, 3000), Accum::Chunked(2147));
        assert_eq!(Accum::prove(1000, 1000, 2147), Accum::I32);
    }

    #[test]
    fn forcing_never_loosens_the_proof() {
        let k = 100;
        assert_eq!(
            Accum::forced(Some(Accum::I32), Accum::Chunked(7), k),
            Accum::Chunked(7)
        );
        assert_eq!(
            Accum::forced(Some(Accum::Chunked(3)), Accum::Chunked(7), k),
            Accum::Chunked(3)
        );
        assert_eq!(
            Accum::forced(Some(Accum::Chunked(3)), Accum::I64, k),
            Accum::I64
        );
        assert_eq!(Accum::forced(Some(Accum::I64), Accum::I32, k), Accum::I64);
        assert_eq!(Accum::forced(None, Accum::Chunked(9), k), Accum::Chunked(9));
        assert_eq!(Accum::Chunked(9).pairs_per_block(k), Some(4));
        assert_eq!(Accum::Chunked(1).pairs_per_block(k), None);
        assert_eq!(Accum::I64.pairs_per_block(k), None);
    }
}
