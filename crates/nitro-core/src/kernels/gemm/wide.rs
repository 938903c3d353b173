//! The `i32` engine: operands as row-major `i32`, for products the pair engine cannot take (an
//! operand wider than the exact `i16` split, or a forced accumulation). Dot products in `i32`
//! blocks of at most the proven chunk length, added into `i64`; or everything in `i64`.

use super::proof::Accum;
use crate::kernels::cpu::Int;
use crate::kernels::par;
use alloc::borrow::Cow;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// Reduction block: operands of a micro-tile (2 rows × KBLOCK) stay in L1.
const KBLOCK: usize = 2048;
/// Column block: NB rows of B (× KBLOCK) stay in L2 while every row of A passes over them.
const NB: usize = 64;

/// `C = A·Bᵀ` (`A: m×k`, `B: n×k`) with accumulation `acc` (proven by the caller), on AVX2
/// when `simd` (only when AVX2 is detected).
pub(super) fn gemm<A: Int, B: Int>(
    a: &ArrayView2<'_, A>,
    b: &ArrayView2<'_, B>,
    acc: Accum,
    simd: bool,
) -> Array2<i64> {
    let (m, n, k) = (a.nrows(), b.nrows(), a.ncols());
    let (pa, pb) = (row_major(a), row_major(b));
    let mut c = alloc::vec![0i64; m * n];
    if n == 0 || m == 0 {
        return Array2::from_shape_vec((m, n), c).expect("m*n elements");
    }
    let chunk = acc.chunk_len(k);
    // Rows of C per task: at least 2 (the micro-tile height).
    let rows_per_task = par::rows_per_task(m, m * n * k).max(2);
    par::for_each_chunk_mut(&mut c, rows_per_task * n, |t, cblock| {
        let i0 = t * rows_per_task;
        let rows = cblock.len() / n;
        let a = &pa[i0 * k..(i0 + rows) * k];
        if chunk == 0 {
            block_i64(a, &pb, cblock, rows, n, k);
        } else {
            block_i32(a, &pb, cblock, (rows, n, k), chunk.min(KBLOCK), simd);
        }
    });
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

/// The operand as a row-major `i32` slice: borrowed when it already is one, copied otherwise.
fn row_major<'a, T: Int>(a: &'a ArrayView2<'_, T>) -> Cow<'a, [i32]> {
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<i32>() {
        if let Some(s) = a.as_slice() {
            // SAFETY: T is i32 (checked through TypeId just above).
            let s: &'a [i32] =
                unsafe { core::slice::from_raw_parts(s.as_ptr() as *const i32, s.len()) };
            return Cow::Borrowed(s);
        }
    }
    let mut out = Vec::with_capacity(a.len());
    for row in a.rows() {
        out.extend(row.iter().map(|&v| Into::<i32>::into(v)));
    }
    Cow::Owned(out)
}

/// `C[rows×n] = A[rows×k]·B[n×k]ᵀ`, all in `i64` (the path for unprovable operands).
fn block_i64(a: &[i32], b: &[i32], c: &mut [i64], rows: usize, n: usize, k: usize) {
    for i in 0..rows {
        let ar = &a[i * k..(i + 1) * k];
        for j in 0..n {
            let br = &b[j * k..(j + 1) * k];
            c[i * n + j] = ar
                .iter()
                .zip(br)
                .map(|(&x, &y)| i64::from(x) * i64::from(y))
                .sum();
        }
    }
}

/// `C[rows×n] += A·Bᵀ`, blocked: reductions of `kb` terms (proven to fit `i32`) per micro-tile,
/// added into the `i64` result; B processed in column blocks of [`NB`] rows.
fn block_i32(
    a: &[i32],
    b: &[i32],
    c: &mut [i64],
    (rows, n, k): (usize, usize, usize),
    kb: usize,
    simd: bool,
) {
    let mut k0 = 0;
    while k0 < k {
        let k1 = (k0 + kb).min(k);
        let mut j0 = 0;
        while j0 < n {
            let j1 = (j0 + NB).min(n);
            let mut i = 0;
            while i < rows {
                // Two rows of A (the second duplicated at the edge, its results discarded).
                let i_b = (i + 1).min(rows - 1);
                let ar = [&a[i * k + k0..i * k + k1], &a[i_b * k + k0..i_b * k + k1]];
                let mut j = j0;
                while j < j1 {
                    let jj: [usize; 4] = core::array::from_fn(|t| (j + t).min(j1 - 1));
                    let br: [&[i32]; 4] =
                        core::array::from_fn(|t| &b[jj[t] * k + k0..jj[t] * k + k1]);
                    let tile = tile_2x4(ar, br, simd);
                    let ncols = (j1 - j).min(4);
                    for (r, trow) in tile.iter().enumerate().take(if i_b == i { 1 } else { 2 }) {
                        let crow = &mut c[(i + r) * n + j..(i + r) * n + j + ncols];
                        for (cv, &t) in crow.iter_mut().zip(trow) {
                            *cv += i64::from(t);
                        }
                    }
                    j += 4;
                }
                i += 2;
            }
            j0 = j1;
        }
        k0 = k1;
    }
}

/// The 2×4 dot products of two rows of A with four rows of B (equal lengths). The caller has
/// proven that every partial sum fits `i32` (algorithm.md §10): each SIMD lane is a partial sum of
/// the proven total, bounded by `Σ|aᵢ·bᵢ| ≤ max|A|·max|B|·K ≤ 2³¹−1`.
#[inline]
fn tile_2x4(a: [&[i32]; 2], b: [&[i32]; 4], simd: bool) -> [[i32; 4]; 2] {
    #[cfg(nitro_x86_simd)]
    {
        if simd {
            // SAFETY: `simd` is only true when AVX2 is allowed and detected.
            return unsafe { crate::kernels::x86::avx2::tile_i32(a, b) };
        }
    }
    let _ = simd;
    let mut out = [[0i32; 4]; 2];
    for (orow, ar) in out.iter_mut().zip(a) {
        for (o, bc) in orow.iter_mut().zip(b) {
            *o = ar.iter().zip(bc).map(|(&x, &y)| x * y).sum();
        }
    }
    out
}
