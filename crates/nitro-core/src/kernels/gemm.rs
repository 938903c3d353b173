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

pub use super::pack16::RowSource;
use super::pack16::{self, Narrow, SPLIT_MAX};
use crate::error::{Error, Result};
use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};
use ndarray::{Array2, ArrayView2};

/// Integer element types accepted by the kernels (all fit in `i32`).
pub trait Int: Copy + Send + Sync + Into<i64> + Into<i32> + 'static {
    /// The largest magnitude a value of the type can have (`|MIN|`).
    const BOUND: u64;
}
impl Int for i8 {
    const BOUND: u64 = 128;
}
impl Int for i16 {
    const BOUND: u64 = 32_768;
}
impl Int for i32 {
    const BOUND: u64 = 1 << 31;
}

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

/// Which kernels a product may use. The default allows everything; tests force each variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Pack operands as `i16` when both fit (|v| ≤ 32767): twice the throughput per instruction.
    pub allow_i16: bool,
    /// Use explicit SIMD (AVX2) when the CPU has it.
    pub allow_simd: bool,
}

impl Dispatch {
    /// Every combination: `i16` packing on/off × SIMD on/off (for tests that cover each path).
    pub const ALL: [Dispatch; 4] = [
        Dispatch {
            allow_i16: true,
            allow_simd: true,
        },
        Dispatch {
            allow_i16: true,
            allow_simd: false,
        },
        Dispatch {
            allow_i16: false,
            allow_simd: true,
        },
        Dispatch {
            allow_i16: false,
            allow_simd: false,
        },
    ];
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch {
            allow_i16: true,
            allow_simd: true,
        }
    }
}

/// The dispatch used by [`gemm_nt`], [`gemm_nn`] and [`gemm_tn`] (and so by every layer):
/// [`Dispatch::default`] unless changed with [`set_dispatch`].
pub fn dispatch() -> Dispatch {
    let v = DISPATCH.load(Ordering::Relaxed);
    Dispatch {
        allow_i16: v & 1 == 0,
        allow_simd: v & 2 == 0,
    }
}

/// Restrict the kernels every layer uses, process-wide — for tests that compare whole training
/// runs across kernel paths (results are identical on every path; only speed differs).
pub fn set_dispatch(d: Dispatch) {
    let v = u8::from(!d.allow_i16) | (u8::from(!d.allow_simd) << 1);
    DISPATCH.store(v, Ordering::Relaxed);
}

/// Bits of the process-wide dispatch: 1 = no `i16` packing, 2 = no SIMD (0 = everything).
static DISPATCH: AtomicU8 = AtomicU8::new(0);

/// `C = A·Bᵀ` with `A: m×k`, `B: n×k`, exactly, into `i64`; path proven from the operands.
pub fn gemm_nt<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt_with(a, b, None, dispatch())
}

/// `C = A·B` with `A: m×k`, `B: k×n`.
pub fn gemm_nn<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt(a, b.t())
}

/// `C = Aᵀ·B` with `A: k×m`, `B: k×n`.
pub fn gemm_tn<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt(a.t(), b.t())
}

/// `A·Bᵀ` with an optionally forced accumulation path and restricted kernels — for tests and
/// benchmarks. A forced path is never allowed to be less safe than the proof: if it is, the
/// proven path is used instead.
///
/// Kernel choice: when both operands fit `i16` (`|v| ≤ 32767`, found while packing them), the
/// packed `i16` engine ([`super::pack16`]) runs with `i32` blocks of at most `chunk/2` pairs.
/// When one operand is wider (typically errors, `|v| ≤ 32767·32768`) and the other fits `i16`,
/// the wide one is split exactly into high and low `i16` halves, both products run on the `i16`
/// engine and are recombined (`C = C_hi·2¹⁵ + C_lo`). Everything else takes the `i32` or `i64`
/// paths below.
pub fn gemm_nt_with<A: Int, B: Int>(
    a: ArrayView2<'_, A>,
    b: ArrayView2<'_, B>,
    path: Option<Path>,
    dispatch: Dispatch,
) -> Result<Array2<i64>> {
    check_k(a.ncols(), b.ncols())?;
    let k = a.ncols();
    let (m, n) = (a.nrows(), b.nrows());
    let simd = dispatch.allow_simd && has_avx2();
    if dispatch.allow_i16 && path != Some(Path::I64) {
        let (pa, pb) = (
            pack16::pack_a(&a, Narrow::Direct),
            pack16::pack_b(&b, Narrow::Direct),
        );
        match (pa, pb) {
            (Some(pa), Some(pb)) => {
                prove_i64(pa.max, pb.max, k)?;
                let chosen = choose(path, Path::prove(pa.max, pb.max, k), k);
                if let Some(kc) = pairs_per_block(chosen, k) {
                    let c = pack16::gemm16(&pa, &pb, kc, simd);
                    pa.release();
                    pb.release();
                    return Ok(Array2::from_shape_vec((m, n), c).expect("m*n elements"));
                }
            }
            // One side too wide for i16: split it exactly (unless a path was forced).
            (None, Some(pb)) if path.is_none() => {
                if let Some(c) = split_a(&a, pb, simd)? {
                    return Ok(c);
                }
            }
            (Some(pa), None) if path.is_none() => {
                let mb = view_max_abs(&b);
                prove_i64(pa.max, mb, k)?;
                if mb <= SPLIT_MAX {
                    if let Some(pb) = pack16::pack_b(&b, Narrow::Split) {
                        if let Some(kc) = pairs_per_block(Path::prove(pa.max, pb.max, k), k) {
                            let c = pack16::gemm16(&pa, &pb, kc, simd);
                            pa.release();
                            pb.release();
                            return Ok(combine_cols(c, m, n));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let (ma, mb) = (view_max_abs(&a), view_max_abs(&b));
    prove_i64(ma, mb, k)?;
    let path = choose(path, Path::prove(ma, mb, k), k);
    let (pa, pb) = (packed::<A, i32>(&a), packed::<B, i32>(&b));
    Ok(gemm_packed(&pa, &pb, m, n, k, path, simd))
}

/// `A·Bᵀ` for an A wider than `i16` (up to `32767·32768`) and a packed B: A split exactly into
/// high and low halves, one product on the `i16` engine, recombined. `None` if A is too wide or
/// no pair is proven to fit `i32` (the caller then takes the general paths).
fn split_a<A: Int>(
    a: &ArrayView2<'_, A>,
    pb: pack16::Packed16<u32>,
    simd: bool,
) -> Result<Option<Array2<i64>>> {
    let (m, k, n) = (a.nrows(), a.ncols(), pb.rows);
    let ma = view_max_abs(a);
    prove_i64(ma, pb.max, k)?;
    if ma <= SPLIT_MAX {
        if let Some(pa) = pack16::pack_a(a, Narrow::Split) {
            if let Some(kc) = pairs_per_block(Path::prove(pa.max, pb.max, k), k) {
                let c = pack16::gemm16(&pa, &pb, kc, simd);
                pa.release();
                pb.release();
                return Ok(Some(combine_rows(c, m, n)));
            }
            pa.release();
        }
    }
    pb.release();
    Ok(None)
}

/// `C = A·Bᵀ` where B (`n×k`) is given row by row ([`RowSource`], e.g. the patches of a
/// convolution, never materialised): packed straight from its rows on the `i16` engine (A direct
/// or split as in [`gemm_nt_with`]); otherwise B is materialised and takes [`gemm_nt`]'s paths.
pub fn gemm_nt_rows<A: Int>(a: ArrayView2<'_, A>, b: &dyn RowSource) -> Result<Array2<i64>> {
    check_k(a.ncols(), b.cols())?;
    let d = dispatch();
    let (m, n, k) = (a.nrows(), b.rows(), b.cols());
    let simd = d.allow_simd && has_avx2();
    if d.allow_i16 {
        if let Some(pb) = pack16::pack_b_rows(b) {
            match pack16::pack_a(&a, Narrow::Direct) {
                Some(pa) => {
                    prove_i64(pa.max, pb.max, k)?;
                    if let Some(kc) = pairs_per_block(Path::prove(pa.max, pb.max, k), k) {
                        let c = pack16::gemm16(&pa, &pb, kc, simd);
                        pa.release();
                        pb.release();
                        return Ok(Array2::from_shape_vec((m, n), c).expect("m*n elements"));
                    }
                    pa.release();
                    pb.release();
                }
                None => {
                    if let Some(c) = split_a(&a, pb, simd)? {
                        return Ok(c);
                    }
                }
            }
        }
    }
    let mut mat = Array2::<i16>::zeros((n, k));
    for (r, mut row) in mat.rows_mut().into_iter().enumerate() {
        b.row(r, row.as_slice_mut().expect("standard layout"));
    }
    gemm_nt_with(a, mat.view(), None, d)
}

/// `C = A·Bᵀ` where A (`m×k`) is given row by row ([`RowSource`]) and B is a matrix: the
/// orientation to use when A is the long operand (e.g. convolution patches `(N·Ho·Wo)×(C·k·k)`
/// times weights `F×(C·k·k)`), so that C's rows are short. B direct or split as in
/// [`gemm_nt_with`]; otherwise A is materialised and takes [`gemm_nt`]'s paths.
pub fn gemm_rows_nt<B: Int>(a: &dyn RowSource, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    check_k(a.cols(), b.ncols())?;
    let d = dispatch();
    let (m, n, k) = (a.rows(), b.nrows(), a.cols());
    let simd = d.allow_simd && has_avx2();
    if d.allow_i16 {
        if let Some(pa) = pack16::pack_a_rows(a) {
            let direct = pack16::pack_b(&b, Narrow::Direct);
            let (pb, split) = match direct {
                Some(pb) => (Some(pb), false),
                None if view_max_abs(&b) <= SPLIT_MAX => (pack16::pack_b(&b, Narrow::Split), true),
                None => (None, false),
            };
            if let Some(pb) = pb {
                prove_i64(pa.max, pb.max, k)?;
                let kc = pairs_per_block(Path::prove(pa.max, pb.max, k), k);
                if let Some(kc) = kc {
                    let c = pack16::gemm16(&pa, &pb, kc, simd);
                    pa.release();
                    pb.release();
                    return Ok(if split {
                        combine_cols(c, m, n)
                    } else {
                        Array2::from_shape_vec((m, n), c).expect("m*n elements")
                    });
                }
                pb.release();
            }
            pa.release();
        }
    }
    let mut mat = Array2::<i16>::zeros((m, k));
    for (r, mut row) in mat.rows_mut().into_iter().enumerate() {
        a.row(r, row.as_slice_mut().expect("standard layout"));
    }
    gemm_nt_with(mat.view(), b, None, d)
}

/// The forced path made no less safe than the proven one, or the proven one.
fn choose(forced: Option<Path>, proven: Path, k: usize) -> Path {
    match forced {
        None => proven,
        Some(p) => safest(p, proven, k),
    }
}

/// Pairs per `i32` block of the `i16` engine: `⌊chunk/2⌋`, or `None` when not even one pair is
/// proven to fit (or the path is `i64`).
fn pairs_per_block(path: Path, k: usize) -> Option<usize> {
    match path {
        Path::I64 => None,
        p => {
            let pairs = p.chunk_len(k) / 2;
            (pairs >= 1 || k <= 1).then_some(pairs.max(1))
        }
    }
}

/// `C[i][j] = C'[i][j]·2¹⁵ + C'[m+i][j]` for a product whose A was split (rows: high halves,
/// then low halves), in place (no second buffer: the embedded heap is small). Cannot overflow:
/// the caller proved the whole product fits `i64`.
fn combine_rows(mut c: Vec<i64>, m: usize, n: usize) -> Array2<i64> {
    let (hi, lo) = c.split_at_mut(m * n);
    for (h, &l) in hi.iter_mut().zip(lo.iter()) {
        *h = *h * 32_768 + l;
    }
    c.truncate(m * n);
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

/// As [`combine_rows`] for a split B (each row: high halves `0..n`, then low halves `n..2n`),
/// in place: entry `(i, j)` moves from `2n·i + j` down to `n·i + j`, never over an unread one.
fn combine_cols(mut c: Vec<i64>, m: usize, n: usize) -> Array2<i64> {
    for i in 0..m {
        for j in 0..n {
            let (h, l) = (c[2 * n * i + j], c[2 * n * i + n + j]);
            c[n * i + j] = h * 32_768 + l;
        }
    }
    c.truncate(m * n);
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

fn safest(p: Path, q: Path, k: usize) -> Path {
    match (p, q) {
        (_, Path::I64) | (Path::I64, _) => Path::I64,
        (p, q) if p.chunk_len(k) <= q.chunk_len(k) => p,
        (_, q) => q,
    }
}

fn view_max_abs<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    pack16::max_abs_view(a)
}

#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(all(not(feature = "std"), target_arch = "x86_64", target_feature = "avx2"))]
    {
        true
    }
    #[cfg(not(any(
        all(feature = "std", target_arch = "x86_64"),
        all(not(feature = "std"), target_arch = "x86_64", target_feature = "avx2")
    )))]
    {
        false
    }
}

/// Narrowing conversion used by packing; only called after the magnitude check.
trait Packed: Copy + Default + Send + Sync + Into<i64> + 'static {
    fn from_i32(v: i32) -> Self;
}
impl Packed for i16 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i16 // |v| ≤ 32767 was checked by the caller
    }
}
impl Packed for i32 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v
    }
}

/// The operand as a row-major slice of `P`: borrowed when it already is one, packed otherwise.
fn packed<'a, T: Int, P: Packed>(a: &'a ArrayView2<'_, T>) -> Cow<'a, [P]> {
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<P>() {
        if let Some(s) = a.as_slice() {
            // SAFETY: T and P are the same type (checked through TypeId just above).
            let s: &'a [P] =
                unsafe { core::slice::from_raw_parts(s.as_ptr() as *const P, s.len()) };
            return Cow::Borrowed(s);
        }
    }
    Cow::Owned(pack_rows(*a))
}

/// Copy a matrix view into a row-major buffer (any input layout, incl. transposed views).
fn pack_rows<T: Int, P: Packed>(a: ArrayView2<'_, T>) -> Vec<P> {
    let mut out = Vec::with_capacity(a.len());
    if let Some(s) = a.as_slice() {
        out.extend(s.iter().map(|&v| P::from_i32(v.into())));
    } else {
        for row in a.rows() {
            out.extend(row.iter().map(|&v| P::from_i32(v.into())));
        }
    }
    out
}

/// Work below this many multiply-adds stays on the calling thread.
#[cfg(feature = "parallel")]
const PAR_THRESHOLD: usize = 1 << 18;
/// Reduction block: operands of a micro-tile (6 rows × KBLOCK) stay in L1.
const KBLOCK: usize = 2048;
/// Column block: NB rows of B (× KBLOCK) stay in L2 while every row of A passes over them.
const NB: usize = 64;

fn gemm_packed<P: Kernel>(
    pa: &[P],
    pb: &[P],
    m: usize,
    n: usize,
    k: usize,
    path: Path,
    simd: bool,
) -> Array2<i64> {
    let mut c = alloc::vec![0i64; m * n];
    if n == 0 || m == 0 {
        return Array2::from_shape_vec((m, n), c).expect("m*n elements");
    }
    let chunk = path.chunk_len(k);
    // Rows of C per task: at least 2 (the micro-tile height), about 4 tasks per thread.
    #[cfg(feature = "parallel")]
    let rows_per_task = {
        let tasks = 4 * rayon::current_num_threads();
        m.div_ceil(tasks).max(2)
    };
    #[cfg(not(feature = "parallel"))]
    let rows_per_task = m;
    let task = |(t, cblock): (usize, &mut [i64])| {
        let i0 = t * rows_per_task;
        let rows = cblock.len() / n;
        let a = &pa[i0 * k..(i0 + rows) * k];
        if chunk == 0 {
            block_i64(a, pb, cblock, rows, n, k);
        } else {
            block_i32(a, pb, cblock, rows, n, k, chunk.min(KBLOCK), simd);
        }
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        if m * n * k >= PAR_THRESHOLD && m > rows_per_task {
            c.par_chunks_mut(rows_per_task * n)
                .enumerate()
                .for_each(task);
        } else {
            c.chunks_mut(rows_per_task * n).enumerate().for_each(task);
        }
    }
    #[cfg(not(feature = "parallel"))]
    c.chunks_mut(rows_per_task * n).enumerate().for_each(task);
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

/// `C[rows×n] += A[rows×k]·B[n×k]ᵀ`, all in `i64` (the path for unprovable operands).
fn block_i64<P: Packed>(a: &[P], b: &[P], c: &mut [i64], rows: usize, n: usize, k: usize) {
    for i in 0..rows {
        let ar = &a[i * k..(i + 1) * k];
        for j in 0..n {
            let br = &b[j * k..(j + 1) * k];
            c[i * n + j] = ar.iter().zip(br).map(|(&x, &y)| x.into() * y.into()).sum();
        }
    }
}

/// `C[rows×n] += A·Bᵀ`, blocked: reductions of `kb` terms (proven to fit `i32`) per micro-tile,
/// added into the `i64` result; B processed in column blocks of [`NB`] rows.
#[allow(clippy::too_many_arguments)]
fn block_i32<P: Kernel>(
    a: &[P],
    b: &[P],
    c: &mut [i64],
    rows: usize,
    n: usize,
    k: usize,
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
                    let br: [&[P]; 4] =
                        core::array::from_fn(|t| &b[jj[t] * k + k0..jj[t] * k + k1]);
                    let tile = P::tile_2x4(ar, br, simd);
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

/// The `i32`-accumulating micro-kernels, per packed width. The caller has proven that every
/// partial sum fits `i32` (SPEC §10): each SIMD lane and each pair sum of `vpmaddwd` is a
/// partial sum of the proven total, bounded by `Σ|aᵢ·bᵢ| ≤ max|A|·max|B|·K ≤ 2³¹−1`.
trait Kernel: Packed {
    /// The 2×4 dot products of two rows of A with four rows of B (equal lengths).
    fn tile_2x4(a: [&[Self]; 2], b: [&[Self]; 4], simd: bool) -> [[i32; 4]; 2];
}

impl Kernel for i32 {
    #[inline]
    fn tile_2x4(a: [&[i32]; 2], b: [&[i32]; 4], simd: bool) -> [[i32; 4]; 2] {
        #[cfg(target_arch = "x86_64")]
        {
            if simd {
                // SAFETY: `simd` is only true when AVX2 was detected (or enabled at compile time).
                return unsafe { tile_i32_avx2(a, b) };
            }
        }
        let _ = simd;
        tile_portable(a, b)
    }
}

impl Kernel for i16 {
    #[inline]
    fn tile_2x4(a: [&[i16]; 2], b: [&[i16]; 4], simd: bool) -> [[i32; 4]; 2] {
        #[cfg(target_arch = "x86_64")]
        {
            if simd {
                // SAFETY: as above.
                return unsafe { tile_i16_avx2(a, b) };
            }
        }
        let _ = simd;
        tile_portable(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hsum_avx2(v: core::arch::x86_64::__m256i) -> i32 {
    use core::arch::x86_64::*;
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` holds exactly 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, v) };
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_i16_avx2(a: [&[i16]; 2], b: [&[i16]; 4]) -> [[i32; 4]; 2] {
    use core::arch::x86_64::*;
    let n = a[0].len();
    let mut acc = [[_mm256_setzero_si256(); 4]; 2];
    let mut t = 0;
    while t + 16 <= n {
        // SAFETY: t + 16 ≤ n, the length of every slice (unaligned loads).
        let va: [__m256i; 2] = core::array::from_fn(|r| unsafe {
            _mm256_loadu_si256(a[r].as_ptr().add(t) as *const __m256i)
        });
        for (c, bc) in b.iter().enumerate() {
            let vb = unsafe { _mm256_loadu_si256(bc.as_ptr().add(t) as *const __m256i) };
            acc[0][c] = _mm256_add_epi32(acc[0][c], _mm256_madd_epi16(va[0], vb));
            acc[1][c] = _mm256_add_epi32(acc[1][c], _mm256_madd_epi16(va[1], vb));
        }
        t += 16;
    }
    let mut out = [[0i32; 4]; 2];
    for r in 0..2 {
        for c in 0..4 {
            // SAFETY: AVX2 is enabled for this function.
            let mut s = unsafe { hsum_avx2(acc[r][c]) };
            for u in t..n {
                s += i32::from(a[r][u]) * i32::from(b[c][u]);
            }
            out[r][c] = s;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_i32_avx2(a: [&[i32]; 2], b: [&[i32]; 4]) -> [[i32; 4]; 2] {
    use core::arch::x86_64::*;
    let n = a[0].len();
    let mut acc = [[_mm256_setzero_si256(); 4]; 2];
    let mut t = 0;
    while t + 8 <= n {
        // SAFETY: t + 8 ≤ n, the length of every slice (unaligned loads).
        let va: [__m256i; 2] = core::array::from_fn(|r| unsafe {
            _mm256_loadu_si256(a[r].as_ptr().add(t) as *const __m256i)
        });
        for (c, bc) in b.iter().enumerate() {
            let vb = unsafe { _mm256_loadu_si256(bc.as_ptr().add(t) as *const __m256i) };
            acc[0][c] = _mm256_add_epi32(acc[0][c], _mm256_mullo_epi32(va[0], vb));
            acc[1][c] = _mm256_add_epi32(acc[1][c], _mm256_mullo_epi32(va[1], vb));
        }
        t += 8;
    }
    let mut out = [[0i32; 4]; 2];
    for r in 0..2 {
        for c in 0..4 {
            // SAFETY: AVX2 is enabled for this function.
            let mut s = unsafe { hsum_avx2(acc[r][c]) };
            for u in t..n {
                s += a[r][u] * b[c][u];
            }
            out[r][c] = s;
        }
    }
    out
}

#[inline(always)]
fn tile_portable<P: Packed>(a: [&[P]; 2], b: [&[P]; 4]) -> [[i32; 4]; 2]
where
    i32: From<P>,
{
    let mut out = [[0i32; 4]; 2];
    for (orow, ar) in out.iter_mut().zip(a) {
        for (o, bc) in orow.iter_mut().zip(b) {
            *o = ar
                .iter()
                .zip(bc)
                .map(|(&x, &y)| i32::from(x) * i32::from(y))
                .sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Pcg32;

    const DISPATCHES: [Dispatch; 4] = Dispatch::ALL;

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
        for case in 0..140 {
            let m = 1 + r.below(9) as usize;
            let n = 1 + r.below(9) as usize;
            let k = 1 + r.below(300) as usize;
            let bound = [1u32, 127, 30_000, 32_767, 32_768, 1 << 20, (1 << 30) - 1][case % 7];
            let a = random(&mut r, m, k, bound);
            let b = random(&mut r, n, k, 127);
            let want = oracle(&a, &b);
            assert_eq!(
                gemm_nt(a.view(), b.view()).unwrap(),
                want,
                "auto case {case}"
            );
            for p in [
                Path::I32,
                Path::Chunked(1),
                Path::Chunked(7),
                Path::Chunked(33),
                Path::I64,
            ] {
                for d in DISPATCHES {
                    assert_eq!(
                        gemm_nt_with(a.view(), b.view(), Some(p), d).unwrap(),
                        want,
                        "{p:?} {d:?} case {case}"
                    );
                }
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
    fn blocked_shapes_match_oracle() {
        // Larger than one K block and one column block, odd rows, columns not a multiple of 4.
        let mut r = Pcg32::new(11, 3);
        for (m, n, k, ba, bb) in [
            (5, 150, 5000, 127, 30_000),
            (3, 67, 2049, 40_000, 127),
            (7, 9, 4100, 1 << 20, 1 << 9),
        ] {
            let a = random(&mut r, m, k, ba);
            let b = random(&mut r, n, k, bb);
            let want = oracle(&a, &b);
            for d in DISPATCHES {
                assert_eq!(
                    gemm_nt_with(a.view(), b.view(), None, d).unwrap(),
                    want,
                    "{m}x{n}x{k} {d:?}"
                );
            }
            assert_eq!(
                gemm_nt_with(
                    a.view(),
                    b.view(),
                    Some(Path::Chunked(100)),
                    Dispatch::default()
                )
                .unwrap(),
                want
            );
        }
    }

    #[test]
    fn split_products_match_oracle() {
        let mut r = Pcg32::new(21, 4);
        for (bound, k) in [
            (40_000u32, 300usize),
            (1 << 29, 70),
            (32_767 * 32_768, 3000),
        ] {
            let a = random(&mut r, 6, k, bound);
            let b = random(&mut r, 9, k, 127);
            // Extremes of the split range on both signs.
            let mut a2 = a.clone();
            a2[[0, 0]] = -(bound as i32);
            a2[[1, 1]] = bound as i32;
            let want = oracle(&a2, &b);
            assert_eq!(
                gemm_nt(a2.view(), b.view()).unwrap(),
                want,
                "A wide, bound {bound}"
            );
            assert_eq!(
                gemm_nt(b.view(), a2.view()).unwrap(),
                want.t().to_owned(),
                "B wide, bound {bound}"
            );
        }
        // The exact split of SPEC §10 at its extremes: v = hi·2¹⁵ + lo, 0 ≤ lo ≤ 32767, |hi| ≤ 32767.
        let vals = [
            -1i32,
            0,
            32_767,
            32_768,
            -32_768,
            -1_073_709_056,
            1_073_709_056,
        ];
        for v in vals {
            let (hi, lo) = (v >> 15, v & 0x7fff);
            assert_eq!(i64::from(hi) * 32_768 + i64::from(lo), i64::from(v));
            assert!(
                (0..=32_767).contains(&lo) && hi.unsigned_abs() <= 32_767,
                "{v}"
            );
        }
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
