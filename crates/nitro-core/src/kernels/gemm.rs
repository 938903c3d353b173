//! Exact integer matrix products with the accumulator width proven per SPEC §10.
//!
//! Every product `C = A·Bᵀ` is computed exactly into `i64`. The path is chosen from cheap
//! magnitude bounds before the product runs:
//!
//! * [`Path::I32`] — `max|A|·max|B|·K ≤ 2³¹−1`: every partial sum of a dot product fits `i32`,
//!   so the whole reduction runs in `i32` (the fast, vectorisable kernel).
//! * [`Path::Chunked`] — a single product fits `i32` but the full sum may not: the reduction
//!   dimension is split into chunks of `c = ⌊(2³¹−1) / (max|A|·max|B|)⌋` terms, each summed in
//!   `i32`, and the chunk sums are added in `i64`.
//! * [`Path::I64`] — a single product may exceed `i32`: everything in `i64`.
//!
//! All three paths give the exact integer result (tested against a naive `i64` oracle); they
//! only differ in speed. Because integer addition is exact and no path can overflow, results
//! are bit-identical for any thread count.

use crate::arith::max_abs;
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// Integer element types accepted by the kernels (all fit in `i32`).
pub trait Int: Copy + Send + Sync + Into<i64> + Into<i32> + 'static {}
impl Int for i8 {}
impl Int for i16 {}
impl Int for i32 {}

/// The accumulation strategy of one product (SPEC §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Whole reduction in `i32`.
    I32,
    /// Reduction split into chunks of this many terms, each summed in `i32`, chunks added in `i64`.
    Chunked(usize),
    /// Everything in `i64`.
    I64,
}

impl Path {
    /// The fastest exact path for a reduction of length `k` over operands bounded by
    /// `max_a` and `max_b` in absolute value.
    pub fn prove(max_a: u64, max_b: u64, k: usize) -> Path {
        let limit = i32::MAX as u64;
        let per_term = max_a.saturating_mul(max_b);
        if per_term == 0 {
            return Path::I32;
        }
        if per_term > limit {
            return Path::I64;
        }
        let chunk = (limit / per_term) as usize;
        if chunk >= k {
            Path::I32
        } else {
            Path::Chunked(chunk)
        }
    }

    /// Terms per `i32` chunk for a reduction of length `k` (0 means "use i64").
    fn chunk_len(self, k: usize) -> usize {
        match self {
            Path::I32 => k.max(1),
            Path::Chunked(c) => c,
            Path::I64 => 0,
        }
    }
}

/// Check that every dot product of length `k` fits `i64` (it always does for the operand sizes
/// of NITRO-D; this guards arbitrary inputs).
fn prove_i64(max_a: u64, max_b: u64, k: usize) -> Result<()> {
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

fn check_k(ka: usize, kb: usize) -> Result<()> {
    if ka != kb {
        return Err(Error::shape(format!(
            "matrix product: inner dimensions {ka} and {kb} differ"
        )));
    }
    Ok(())
}

/// `C = A·Bᵀ` with `A: m×k`, `B: n×k`, exactly, into `i64`; path proven from the operands.
pub fn gemm_nt<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    check_k(a.ncols(), b.ncols())?;
    let pa = pack_rows(a);
    let pb = pack_rows(b);
    let k = a.ncols();
    let (ma, mb) = (max_abs(&pa), max_abs(&pb));
    prove_i64(ma, mb, k)?;
    let path = Path::prove(ma, mb, k);
    Ok(gemm_packed(&pa, &pb, a.nrows(), b.nrows(), k, path))
}

/// `C = A·B` with `A: m×k`, `B: k×n`.
pub fn gemm_nn<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt(a, b.t())
}

/// `C = Aᵀ·B` with `A: k×m`, `B: k×n`.
pub fn gemm_tn<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt(a.t(), b.t())
}

/// `A·Bᵀ` on a forced path — for tests and benchmarks. The caller vouches for the path's
/// precondition (a too-optimistic path is rejected by re-proving and falling back).
pub fn gemm_nt_with<A: Int, B: Int>(
    a: ArrayView2<'_, A>,
    b: ArrayView2<'_, B>,
    path: Path,
) -> Result<Array2<i64>> {
    check_k(a.ncols(), b.ncols())?;
    let pa = pack_rows(a);
    let pb = pack_rows(b);
    let k = a.ncols();
    let (ma, mb) = (max_abs(&pa), max_abs(&pb));
    prove_i64(ma, mb, k)?;
    let proven = Path::prove(ma, mb, k);
    // Never let a forced path be less safe than the proof: compare chunk lengths.
    let safe = match (path, proven) {
        (_, Path::I64) => Path::I64,
        (Path::I64, _) => Path::I64,
        (p, q) => {
            if p.chunk_len(k) <= q.chunk_len(k) {
                p
            } else {
                q
            }
        }
    };
    Ok(gemm_packed(&pa, &pb, a.nrows(), b.nrows(), k, safe))
}

/// Copy a matrix view into a row-major `i32` buffer (any input layout, incl. transposed views).
fn pack_rows<T: Int>(a: ArrayView2<'_, T>) -> Vec<i32> {
    let mut out = Vec::with_capacity(a.len());
    if let Some(s) = a.as_slice() {
        out.extend(s.iter().map(|&v| Into::<i32>::into(v)));
    } else {
        for row in a.rows() {
            out.extend(row.iter().map(|&v| Into::<i32>::into(v)));
        }
    }
    out
}

/// Work below this many multiply-adds stays on the calling thread.
#[cfg(feature = "parallel")]
const PAR_THRESHOLD: usize = 1 << 18;

fn gemm_packed(pa: &[i32], pb: &[i32], m: usize, n: usize, k: usize, path: Path) -> Array2<i64> {
    let mut c = alloc::vec![0i64; m * n];
    let chunk = path.chunk_len(k);
    if n > 0 && m > 0 {
        let row = |(i, crow): (usize, &mut [i64])| {
            let arow = &pa[i * k..(i + 1) * k];
            for (j, cv) in crow.iter_mut().enumerate() {
                *cv = dot(arow, &pb[j * k..(j + 1) * k], chunk);
            }
        };
        #[cfg(feature = "parallel")]
        {
            if m * n * k >= PAR_THRESHOLD && m > 1 {
                use rayon::prelude::*;
                c.par_chunks_mut(n).enumerate().for_each(row);
            } else {
                c.chunks_mut(n).enumerate().for_each(row);
            }
        }
        #[cfg(not(feature = "parallel"))]
        c.chunks_mut(n).enumerate().for_each(row);
    }
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

/// Exact dot product; `chunk` terms per `i32` partial sum (0 = all in `i64`).
#[inline]
fn dot(a: &[i32], b: &[i32], chunk: usize) -> i64 {
    if chunk == 0 {
        return a
            .iter()
            .zip(b)
            .map(|(&x, &y)| i64::from(x) * i64::from(y))
            .sum();
    }
    let mut total = 0i64;
    for (ca, cb) in a.chunks(chunk).zip(b.chunks(chunk)) {
        total += i64::from(dot_i32(ca, cb));
    }
    total
}

/// `i32` dot product; the caller has proven that every partial sum fits (SPEC §10).
#[inline]
fn dot_i32(a: &[i32], b: &[i32]) -> i32 {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { dot_i32_avx2(a, b) };
        }
    }
    dot_i32_portable(a, b)
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn dot_i32_avx2(a: &[i32], b: &[i32]) -> i32 {
    // Same portable code, compiled with AVX2 enabled so LLVM vectorises it 8 lanes wide.
    dot_i32_portable(a, b)
}

#[inline(always)]
fn dot_i32_portable(a: &[i32], b: &[i32]) -> i32 {
    // Eight independent lanes; each lane's partial sum is a partial sum of the proven total,
    // so it fits i32 as well (|partial| ≤ Σ|a_i·b_i| ≤ bound).
    let mut acc = [0i32; 8];
    let (ca, ra) = a.split_at(a.len() - a.len() % 8);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(8).zip(cb.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Pcg32;

    fn oracle(a: &Array2<i32>, b: &Array2<i32>) -> Array2<i64> {
        let (m, k) = a.dim();
        let n = b.nrows();
        Array2::from_shape_fn((m, n), |(i, j)| {
            (0..k)
                .map(|t| i64::from(a[[i, t]]) * i64::from(b[[j, t]]))
                .sum()
        })
    }

    fn random(r: &mut Pcg32, rows: usize, cols: usize, bound: u32) -> Array2<i32> {
        Array2::from_shape_fn((rows, cols), |_| r.symmetric(bound))
    }

    #[test]
    fn path_proof_boundaries() {
        assert_eq!(Path::prove(127, 127, 1000), Path::I32);
        assert_eq!(Path::prove(0, 1 << 40, 5), Path::I32);
        // 2^31-1 = 2147483647; 46341^2 > 2^31 - 1
        assert_eq!(Path::prove(46_341, 46_341, 1), Path::I64);
        assert_eq!(Path::prove(1 << 15, 1 << 15, 2), Path::Chunked(1));
        assert_eq!(Path::prove(1000, 1000, 3000), Path::Chunked(2147));
        assert_eq!(Path::prove(1000, 1000, 2147), Path::I32);
    }

    #[test]
    fn all_paths_match_oracle_on_random_shapes() {
        let mut r = Pcg32::new(3, 0);
        for case in 0..60 {
            let m = 1 + r.below(9) as usize;
            let n = 1 + r.below(9) as usize;
            let k = 1 + r.below(300) as usize;
            let bound = [1u32, 127, 30_000, 1 << 20, (1 << 30) - 1][case % 5];
            let a = random(&mut r, m, k, bound);
            let b = random(&mut r, n, k, 127);
            let want = oracle(&a, &b);
            assert_eq!(
                gemm_nt(a.view(), b.view()).unwrap(),
                want,
                "auto case {case}"
            );
            for p in [Path::I32, Path::Chunked(1), Path::Chunked(7), Path::I64] {
                assert_eq!(
                    gemm_nt_with(a.view(), b.view(), p).unwrap(),
                    want,
                    "{p:?} case {case}"
                );
            }
        }
    }

    #[test]
    fn i32_overflowing_product_is_exact() {
        // Each sum is 4000 · (2^20 · 2^10) = 2^30 · 4000 ≫ 2^31: must take the chunked path.
        let a = Array2::from_elem((2, 4000), 1i32 << 20);
        let b = Array2::from_elem((3, 4000), -(1i32 << 10));
        let c = gemm_nt(a.view(), b.view()).unwrap();
        assert!(c.iter().all(|&v| v == -4000i64 * (1 << 30)));
        // Products that alone exceed i32: the i64 path.
        let a = Array2::from_elem((1, 2), i32::MAX);
        let b = Array2::from_elem((1, 2), i32::MIN);
        assert_eq!(
            gemm_nt(a.view(), b.view()).unwrap()[[0, 0]],
            2 * i64::from(i32::MAX) * i64::from(i32::MIN)
        );
        // A sum that cannot be represented even in i64 is an error, not a wrap.
        let a = Array2::from_elem((1, 3), i32::MAX);
        let b = Array2::from_elem((1, 3), i32::MIN);
        assert!(matches!(
            gemm_nt(a.view(), b.view()),
            Err(Error::Overflow { .. })
        ));
        assert!(matches!(gemm_nt(a.view(), b.t()), Err(Error::Shape(_))));
    }

    #[test]
    fn transposed_forms_match() {
        let mut r = Pcg32::new(9, 1);
        let a = random(&mut r, 5, 7, 100);
        let b = random(&mut r, 7, 4, 100);
        let want = oracle(&a, &b.t().to_owned());
        assert_eq!(gemm_nn(a.view(), b.view()).unwrap(), want);
        let at = a.t().to_owned();
        assert_eq!(gemm_tn(at.view(), b.view()).unwrap(), want);
    }

    #[test]
    fn large_product_parallel_matches_oracle() {
        let mut r = Pcg32::new(5, 5);
        let a = random(&mut r, 64, 300, 127);
        let b = random(&mut r, 40, 300, 40_000);
        assert_eq!(gemm_nt(a.view(), b.view()).unwrap(), oracle(&a, &b));
    }
}
