//! The `i16` product engine: operands packed as pairs of `i16` along the reduction, an
//! outer-product micro-kernel of [`MR`]`×`[`NR`] outputs, cache blocking along `K`, and `i32`
//! accumulators whose width the caller has proven (SPEC §10).
//!
//! Layout. The reduction `K` is walked in pairs `(2q, 2q+1)` (an odd `K` is padded with a zero):
//!
//! * A (`m×k`, the rows of C) is packed in panels of [`MR`] rows; for each pair `q` a panel holds
//!   `MR` 32-bit words, word `r` = `a[r][2q]` in its low half and `a[r][2q+1]` in its high half.
//! * B (`n×k`, the columns of C) is packed in panels of [`NR`] rows; for each pair `q` a panel
//!   holds `NR` lanes of two `i16`, lane `l` = `(b[l][2q], b[l][2q+1])`.
//!
//! One step of the micro-kernel broadcasts an A word to all lanes and multiplies it with a B
//! pair-vector: `vpmaddwd` yields, per lane, `a[r][2q]·b[l][2q] + a[r][2q+1]·b[l][2q+1]` — two
//! terms of `C[r][l]` — added to an `i32` accumulator. Rows and columns beyond the operands are
//! packed as zeros and never written back.
//!
//! Exactness. Packed values satisfy `|v| ≤ 32767`, so a pair sum is at most `2·32767² < 2³¹`.
//! An accumulator after `kc` pairs holds a partial sum of `2·kc` terms of one dot product; the
//! caller chooses `kc ≤ chunk/2` where `chunk` is the proven number of terms whose sum fits
//! `i32` ([`super::gemm::Path`]), so no lane can overflow. Block sums are added into `i64`.

use alloc::vec::Vec;
use ndarray::ArrayView2;

use super::gemm::Int;
use super::pool;

/// Rows of C per micro-tile.
pub(crate) const MR: usize = 6;
/// Columns of C per micro-tile (two AVX2 vectors of eight `i32`).
pub(crate) const NR: usize = 16;
/// Pairs of the reduction per cache block: a B micro-panel (`KC·NR·4` bytes = 16 KiB) stays in
/// L1 while the A panels of a group stream past it.
pub(crate) const KC: usize = 256;
/// Pairs per K block when C is large (≥ [`C_LARGE`] entries): each block reads and writes all
/// of C once, so fewer, longer blocks save more memory traffic than L1 residency gains.
const KC_LARGE: usize = 640;
/// Entries of C (8 bytes each) from which [`KC_LARGE`] applies (1 MiB: beyond L2).
const C_LARGE: usize = 1 << 17;
/// A panels per L2 group (see [`block`]).
const MC: usize = 24;

/// Largest magnitude packed directly as `i16`.
pub(crate) const I16_MAX: u64 = 32_767;
/// Largest magnitude whose high half `v >> 15` still fits `i16` (and stays within ±32767).
pub(crate) const SPLIT_MAX: u64 = 32_767 * 32_768;

/// How a wide operand is turned into `i16` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Narrow {
    /// Every `|v| ≤ 32767`: rows packed as they are.
    Direct,
    /// `v = hi·2¹⁵ + lo` with `hi = v >> 15`, `lo = v & 0x7fff`: the packed operand has twice the
    /// rows, the high halves first (rows `0..rows`), then the low halves.
    Split,
}

/// An operand packed for the micro-kernel, with the largest magnitude it holds.
pub(crate) struct Packed16<W> {
    pub(crate) data: Vec<W>,
    /// Logical rows (twice the operand's rows when split).
    pub(crate) rows: usize,
    /// Pairs along the reduction.
    pub(crate) kp: usize,
    /// Largest `|v|` among the packed values.
    pub(crate) max: u64,
}

/// Where packed row `i` comes from: the operand row and the exact narrowing `(v >> shift) & mask`
/// (`Direct`: `v`; split: `v >> 15` for the high rows `0..m`, `v & 0x7fff` for the low rows).
#[inline(always)]
fn source(how: Narrow, m: usize, i: usize) -> (usize, u32, i32) {
    match how {
        Narrow::Direct => (i, 0, -1),
        Narrow::Split if i < m => (i, 15, -1),
        Narrow::Split => (i - m, 0, 0x7fff),
    }
}

fn packed_rows<T>(a: &ArrayView2<'_, T>, how: Narrow) -> usize {
    match how {
        Narrow::Direct => a.nrows(),
        Narrow::Split => 2 * a.nrows(),
    }
}

/// Largest magnitude of the operand's values.
pub(crate) fn max_abs_view<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if super::gemm::has_avx2() {
            // SAFETY: AVX2 was detected; the body is the same safe code, compiled for AVX2.
            return unsafe { max_abs_view_avx2(a) };
        }
    }
    max_abs_view_impl(a)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_abs_view_avx2<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    max_abs_view_impl(a)
}

#[inline(always)]
fn max_abs_view_impl<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    if T::BOUND <= I16_MAX {
        // Narrow types need no scan for the i16 decision; their exact maximum still matters
        // only for the chunk length, where the type bound is a safe over-estimate.
        return T::BOUND;
    }
    let abs = |m: u32, v: &T| m.max(Into::<i32>::into(*v).unsigned_abs());
    let mx = match a.as_slice_memory_order() {
        Some(s) => s.iter().fold(0u32, abs),
        None => a.iter().fold(0u32, abs),
    };
    u64::from(mx)
}

/// An upper bound of the packed values' magnitudes, from the operand's bound `m`: the values
/// themselves, or the split halves (`|v >> 15| ≤ ⌈m / 2¹⁵⌉`, `0 ≤ v & 0x7fff ≤ min(m, 32767)`).
fn packed_bound(m: u64, how: Narrow) -> u64 {
    match how {
        Narrow::Direct => m,
        Narrow::Split => m.div_ceil(32_768).max(m.min(I16_MAX)),
    }
}

/// Element `(i, t)` of the operand, narrowed.
#[inline(always)]
fn get<T: Int>(a: &ArrayView2<'_, T>, i: usize, t: usize, shift: u32, mask: i32) -> i32 {
    // SAFETY: callers only pass i < nrows and t < ncols.
    let v: i32 = unsafe { (*a.uget((i, t))).into() };
    (v >> shift) & mask
}

/// The pair word of two `i16` values (low half: the even term).
#[inline(always)]
fn word(x0: i32, x1: i32) -> u32 {
    u32::from(x0 as u16) | (u32::from(x1 as u16) << 16)
}

/// Pack A as [`MR`]-row panels of pair words. Returns `None` if a packed value would exceed
/// `i16` (`|v| > 32767`, known from the operand's bound before anything is packed).
pub(crate) fn pack_a<T: Int>(a: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16<u32>> {
    pack::<T, MR>(a, how)
}

/// Pack B as [`NR`]-row panels of pair words (one 32-bit word per lane and pair, the even term
/// in the low half). `None` if a value exceeds `i16` (as [`pack_a`]).
pub(crate) fn pack_b<T: Int>(b: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16<u32>> {
    pack::<T, NR>(b, how)
}

/// Pack an operand as panels of `W` rows: for each pair `q`, `W` consecutive words, word `r` =
/// row `r`'s `(v[2q], v[2q+1])`. A and B share this layout (`W` = [`MR`] or [`NR`]).
fn pack<T: Int, const W: usize>(a: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16<u32>> {
    #[cfg(target_arch = "x86_64")]
    {
        if super::gemm::has_avx2() {
            // SAFETY: AVX2 was detected; the body is the same safe code, compiled for AVX2.
            return unsafe { pack_avx2::<T, W>(a, how) };
        }
    }
    pack_impl::<T, W>(a, how)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_avx2<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    how: Narrow,
) -> Option<Packed16<u32>> {
    pack_impl::<T, W>(a, how)
}

#[inline(always)]
fn pack_impl<T: Int, const W: usize>(a: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16<u32>> {
    let (m, k) = a.dim();
    let mx = packed_bound(max_abs_view(a), how);
    if mx > I16_MAX {
        return None;
    }
    let rows = packed_rows(a, how);
    let kp = k.div_ceil(2);
    let mut data = pool::take_dirty::<u32>(rows.div_ceil(W) * kp * W);
    let row_major = k > 0 && a.strides()[1] == 1;
    let col_major = k > 0 && m > 0 && a.strides()[0] == 1;
    for_panels(&mut data, kp * W, |p, dst| {
        let live = W.min(rows - p * W);
        if live < W {
            dst.fill(0); // rows past the operand stay zero
        }
        let srcs: [(usize, u32, i32); W] =
            core::array::from_fn(|r| source(how, m, (p * W + r).min(rows - 1)));
        if row_major {
            for (r, &(src, sh, mask)) in srcs.iter().enumerate().take(live) {
                let row = a.row(src);
                let row = row.as_slice().expect("unit stride row");
                let conv = |v: T| (Into::<i32>::into(v) >> sh) & mask;
                for (d, pair) in dst.chunks_exact_mut(W).zip(row.chunks_exact(2)) {
                    d[r] = word(conv(pair[0]), conv(pair[1]));
                }
                if k % 2 == 1 {
                    dst[(kp - 1) * W + r] = word(conv(row[k - 1]), 0);
                }
            }
        } else if col_major {
            // Column t is contiguous over rows: read two columns per pair.
            for (q, d) in dst.chunks_exact_mut(W).enumerate() {
                let c0 = a.column(2 * q);
                let c0 = c0.as_slice().expect("unit stride column");
                let c1 = (2 * q + 1 < k).then(|| a.column(2 * q + 1));
                let c1 = c1
                    .as_ref()
                    .map(|c| c.as_slice().expect("unit stride column"));
                for (r, &(src, sh, mask)) in srcs.iter().enumerate().take(live) {
                    let x0 = (Into::<i32>::into(c0[src]) >> sh) & mask;
                    let x1 = c1.map_or(0, |c| (Into::<i32>::into(c[src]) >> sh) & mask);
                    d[r] = word(x0, x1);
                }
            }
        } else {
            for (q, d) in dst.chunks_exact_mut(W).enumerate() {
                for (r, &(src, sh, mask)) in srcs.iter().enumerate().take(live) {
                    let x0 = get(a, src, 2 * q, sh, mask);
                    let x1 = if 2 * q + 1 < k {
                        get(a, src, 2 * q + 1, sh, mask)
                    } else {
                        0
                    };
                    d[r] = word(x0, x1);
                }
            }
        }
    });
    Some(Packed16 {
        data,
        rows,
        kp,
        max: mx,
    })
}

/// Run `fill(panel, storage)` over consecutive panels of `len` words each — on several threads
/// when there is enough to pack. Panels are disjoint, so the result does not depend on the order.
fn for_panels<F: Fn(usize, &mut [u32]) + Sync + Send>(data: &mut [u32], len: usize, fill: F) {
    if len == 0 {
        return;
    }
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        if data.len() >= 1 << 18 && rayon::current_num_threads() > 1 {
            data.par_chunks_exact_mut(len)
                .enumerate()
                .for_each(|(p, d)| fill(p, d));
            return;
        }
    }
    for (p, d) in data.chunks_exact_mut(len).enumerate() {
        fill(p, d);
    }
}

/// A matrix given row by row (e.g. convolution patches, never materialised): the kernels pack
/// it straight from the rows it writes.
pub trait RowSource: Sync {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Length of every row (the reduction dimension).
    fn cols(&self) -> usize;
    /// An upper bound of every value's magnitude.
    fn bound(&self) -> u64;
    /// Write row `r` into `out` (`out.len() == cols()`).
    fn row(&self, r: usize, out: &mut [i16]);
}

/// Pack the rows of a [`RowSource`] as A panels; `None` if its bound exceeds `i16`.
pub(crate) fn pack_a_rows(src: &dyn RowSource) -> Option<Packed16<u32>> {
    pack_rows::<MR>(src)
}

/// Pack the rows of a [`RowSource`] as B panels; `None` if its bound exceeds `i16`.
pub(crate) fn pack_b_rows(src: &dyn RowSource) -> Option<Packed16<u32>> {
    pack_rows::<NR>(src)
}

/// Panels of `W` rows (the layout of [`pack`]) written from a row source.
fn pack_rows<const W: usize>(src: &dyn RowSource) -> Option<Packed16<u32>> {
    let (rows, k) = (src.rows(), src.cols());
    let mx = src.bound();
    if mx > I16_MAX {
        return None;
    }
    let kp = k.div_ceil(2);
    let mut data = pool::take_dirty::<u32>(rows.div_ceil(W) * kp * W);
    for_panels(&mut data, kp * W, |p, dst| {
        let mut row = alloc::vec![0i16; k];
        let live = W.min(rows - p * W);
        if live < W {
            dst.fill(0); // rows past the operand stay zero
        }
        for r in 0..live {
            src.row(p * W + r, &mut row);
            for (d, pair) in dst.chunks_exact_mut(W).zip(row.chunks_exact(2)) {
                d[r] = word(i32::from(pair[0]), i32::from(pair[1]));
            }
            if k % 2 == 1 {
                dst[(kp - 1) * W + r] = word(i32::from(row[k - 1]), 0);
            }
        }
    });
    Some(Packed16 {
        data,
        rows,
        kp,
        max: mx,
    })
}

/// `C = A·Bᵀ` from packed operands, `C` row-major `a.rows × b.rows`, each `i32` block covering at
/// most `kc` pairs (`kc ≥ 1`, proven by the caller: `2·kc·max|A|·max|B| ≤ 2³¹−1`).
pub(crate) fn gemm16(a: &Packed16<u32>, b: &Packed16<u32>, kc: usize, simd: bool) -> Vec<i64> {
    let (m, n, kp) = (a.rows, b.rows, a.kp);
    debug_assert_eq!(kp, b.kp);
    debug_assert!(kc >= 1);
    // Every entry is stored by the first K block (no zeroing pass), except for an empty K.
    let mut c = pool::take_dirty::<i64>(m * n);
    if m == 0 || n == 0 || kp == 0 {
        c.fill(0);
        return c;
    }
    // Equal K blocks of at most `kc` (and KC) pairs: no short tail block.
    let cap = if m * n >= C_LARGE { KC_LARGE } else { KC };
    let kc = kc.clamp(1, cap);
    let kc = kp.div_ceil(kp.div_ceil(kc));
    let panels_a = m.div_ceil(MR);
    // A panels per task: about four tasks per thread, never less than one panel.
    #[cfg(feature = "parallel")]
    let per_task = {
        let work = m * n * kp;
        if work < PAR_THRESHOLD {
            panels_a
        } else {
            panels_a.div_ceil(4 * rayon::current_num_threads()).max(1)
        }
    };
    #[cfg(not(feature = "parallel"))]
    let per_task = panels_a;
    let task = |(t, cblock): (usize, &mut [i64])| {
        let p0 = t * per_task;
        let rows = cblock.len() / n;
        block(a, b, p0, rows, cblock, n, kc, simd);
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        if per_task < panels_a {
            c.par_chunks_mut(per_task * MR * n)
                .enumerate()
                .for_each(task);
        } else {
            c.chunks_mut(per_task * MR * n).enumerate().for_each(task);
        }
    }
    #[cfg(not(feature = "parallel"))]
    c.chunks_mut(per_task * MR * n).enumerate().for_each(task);
    c
}

/// Pair-multiply-adds below which a product stays on the calling thread.
#[cfg(feature = "parallel")]
const PAR_THRESHOLD: usize = 1 << 21;

/// The rows `p0·MR .. p0·MR + rows` of C (`cblock`, row-major with `n` columns).
#[allow(clippy::too_many_arguments)]
fn block(
    a: &Packed16<u32>,
    b: &Packed16<u32>,
    p0: usize,
    rows: usize,
    cblock: &mut [i64],
    n: usize,
    kc: usize,
    simd: bool,
) {
    let kp = a.kp;
    let panels = rows.div_ceil(MR);
    let panels_b = n.div_ceil(NR);
    let mut q0 = 0;
    while q0 < kp {
        let len = kc.min(kp - q0);
        // Groups of MC A panels: a group's K block (MC·MR·KC·4 bytes ≤ 144 KiB) stays in L2
        // while every B micro-panel passes over it.
        let mut g0 = 0;
        while g0 < panels {
            let g1 = (g0 + MC).min(panels);
            for jp in 0..panels_b {
                let bp = &b.data[(jp * kp + q0) * NR..(jp * kp + q0 + len) * NR];
                let cols = NR.min(n - jp * NR);
                for ip in g0..g1 {
                    let a0 = ((p0 + ip) * kp + q0) * MR;
                    let ap = &a.data[a0..a0 + len * MR];
                    let live = MR.min(rows - ip * MR);
                    let c0 = ip * MR * n + jp * NR;
                    micro(ap, bp, &mut cblock[c0..], n, live, cols, q0 == 0, simd);
                }
            }
            g0 = g1;
        }
        q0 += len;
    }
}

/// Shape of a micro-tile's place in C: row stride, live rows and columns, and whether this is the
/// first K block (store) or a later one (add).
#[derive(Clone, Copy)]
struct Tile {
    ldc: usize,
    rows: usize,
    cols: usize,
    first: bool,
}

/// One micro-tile: `C[r][l] (+)= Σ_q pair products` for `r < rows`, `l < cols` — stored by the
/// first K block, added by later ones.
#[allow(clippy::too_many_arguments)]
#[inline]
fn micro(
    ap: &[u32],
    bp: &[u32],
    c: &mut [i64],
    ldc: usize,
    rows: usize,
    cols: usize,
    first: bool,
    simd: bool,
) {
    let t = Tile {
        ldc,
        rows,
        cols,
        first,
    };
    #[cfg(target_arch = "x86_64")]
    {
        if simd {
            // SAFETY: `simd` is only true when AVX2 was detected (or enabled at compile time);
            // `ap` holds len·MR words and `bp` len·NR words (checked there).
            unsafe { micro_avx2(ap, bp, c, t) };
            return;
        }
    }
    let _ = simd;
    micro_portable(ap, bp, c, t);
}

/// The portable micro-kernel: same layout and the same `i32` partial sums as the SIMD one.
fn micro_portable(ap: &[u32], bp: &[u32], c: &mut [i64], t: Tile) {
    let Tile {
        ldc,
        rows,
        cols,
        first,
    } = t;
    let mut acc = [[0i32; NR]; MR];
    let halves = |w: u32| {
        (
            i32::from(w as u16 as i16),
            i32::from((w >> 16) as u16 as i16),
        )
    };
    for (aw, bq) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)) {
        for (accr, &w) in acc.iter_mut().zip(aw) {
            let (a0, a1) = halves(w);
            for (s, &bw) in accr.iter_mut().zip(bq) {
                let (b0, b1) = halves(bw);
                *s += a0 * b0 + a1 * b1;
            }
        }
    }
    for (r, accr) in acc.iter().enumerate().take(rows) {
        let crow = &mut c[r * ldc..r * ldc + cols];
        for (cv, &s) in crow.iter_mut().zip(accr) {
            *cv = if first { 0 } else { *cv } + i64::from(s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_avx2(ap: &[u32], bp: &[u32], c: &mut [i64], t: Tile) {
    use core::arch::x86_64::*;
    let Tile {
        ldc,
        rows,
        cols,
        first,
    } = t;
    let len = ap.len() / MR;
    assert!(bp.len() >= len * NR && rows <= MR && cols <= NR);
    assert!(rows == 0 || c.len() >= (rows - 1) * ldc + cols);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    let (pa, pb) = (ap.as_ptr(), bp.as_ptr());
    for q in 0..len {
        // SAFETY: q < len; B holds NR = 16 words (two vectors) per pair, A holds MR words.
        unsafe {
            let b0 = _mm256_loadu_si256(pb.add(q * NR) as *const __m256i);
            let b1 = _mm256_loadu_si256(pb.add(q * NR + 8) as *const __m256i);
            for (r, accr) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_epi32(*pa.add(q * MR + r) as i32);
                accr[0] = _mm256_add_epi32(accr[0], _mm256_madd_epi16(w, b0));
                accr[1] = _mm256_add_epi32(accr[1], _mm256_madd_epi16(w, b1));
            }
        }
    }
    if cols == NR {
        // Widen each i32 lane to i64 and add into C, four lanes per vector.
        for (r, accr) in acc.iter().enumerate().take(rows) {
            // SAFETY: row r < rows has NR = 16 columns in C (asserted above).
            unsafe {
                let cp = c.as_mut_ptr().add(r * ldc);
                for (h, &v) in accr.iter().enumerate() {
                    let lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
                    let hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(v));
                    let p0 = cp.add(8 * h) as *mut __m256i;
                    let p1 = cp.add(8 * h + 4) as *mut __m256i;
                    if first {
                        _mm256_storeu_si256(p0, lo);
                        _mm256_storeu_si256(p1, hi);
                    } else {
                        _mm256_storeu_si256(p0, _mm256_add_epi64(_mm256_loadu_si256(p0), lo));
                        _mm256_storeu_si256(p1, _mm256_add_epi64(_mm256_loadu_si256(p1), hi));
                    }
                }
            }
        }
    } else {
        let mut tile = [[0i32; NR]; MR];
        for (t, accr) in tile.iter_mut().zip(&acc) {
            // SAFETY: each row of `tile` holds exactly 16 i32 = two vectors.
            unsafe {
                _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, accr[0]);
                _mm256_storeu_si256(t.as_mut_ptr().add(8) as *mut __m256i, accr[1]);
            }
        }
        for (r, t) in tile.iter().enumerate().take(rows) {
            for (cv, &s) in c[r * ldc..r * ldc + cols].iter_mut().zip(t) {
                *cv = if first { 0 } else { *cv } + i64::from(s);
            }
        }
    }
}

impl Packed16<u32> {
    /// Return the packed storage for reuse.
    pub(crate) fn release(self) {
        pool::give(self.data);
    }
}
