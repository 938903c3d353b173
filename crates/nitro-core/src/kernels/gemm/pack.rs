//! Packing for the pair engine ([`super::pairs`]): operands laid out as pairs of `i16` along
//! the reduction, panel by panel, with the exact high/low split of operands wider than `i16`.
//!
//! Layout. The reduction `K` is walked in pairs `(2q, 2q+1)` (an odd `K` is padded with a zero):
//!
//! * A (`m×k`, the rows of C) is packed in panels of [`MR`] rows; for each pair `q` a panel holds
//!   `MR` 32-bit words, word `r` = `a[r][2q]` in its low half and `a[r][2q+1]` in its high half.
//! * B (`n×k`, the columns of C) is packed in panels of [`NR`] rows; for each pair `q` a panel
//!   holds `NR` lanes of two `i16`, lane `l` = `(b[l][2q], b[l][2q+1])`: one 512-bit or two
//!   256-bit vectors.
//!
//! Rows beyond the operands are packed as zeros and never written back. Packed values satisfy
//! `|v| ≤ 32767`, so a pair sum is at most `2·32767² < 2³¹` (the pair engine's proof starts
//! there).

use alloc::vec::Vec;
use ndarray::ArrayView2;

use crate::kernels::buffers;
use crate::kernels::cpu::Int;
#[cfg(nitro_x86_simd)]
use crate::kernels::cpu::{loop_build, Isa};
use crate::kernels::par;

pub(crate) use crate::kernels::tile::{MR, NR};

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
pub(crate) struct Packed16 {
    /// The panels (see the module docs).
    pub(crate) data: Vec<u32>,
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

/// An upper bound of the operand's magnitudes: its largest `|v|`, or the bound of a type
/// narrower than `i16` (those need no scan for the `i16` decision; their exact maximum matters
/// only for the chunk length, where the type bound is a safe over-estimate).
pub(crate) fn max_abs_view<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    if T::BOUND <= I16_MAX {
        return T::BOUND;
    }
    max_abs_exact(a)
}

/// Largest magnitude of the operand's values (always scanned).
pub(crate) fn max_abs_exact<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    #[cfg(nitro_x86_simd)]
    {
        match loop_build() {
            // SAFETY (both): the instruction set is allowed and detected; the body is the same
            // safe code, compiled for it.
            Isa::Avx512Vnni => return unsafe { max_abs_avx512(a) },
            Isa::Avx2 => return unsafe { max_abs_avx2(a) },
            _ => {}
        }
    }
    max_abs_impl(a)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn max_abs_avx2<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    max_abs_impl(a)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn max_abs_avx512<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    max_abs_impl(a)
}

#[inline(always)]
fn max_abs_impl<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
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
pub(super) fn word(x0: i32, x1: i32) -> u32 {
    u32::from(x0 as u16) | (u32::from(x1 as u16) << 16)
}

/// Pack A as [`MR`]-row panels of pair words. Returns `None` if a packed value would exceed
/// `i16` (`|v| > 32767`, known from the operand's bound before anything is packed).
pub(crate) fn pack_a<T: Int>(a: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16> {
    pack::<T, MR>(a, how)
}

/// Pack B as [`NR`]-row panels of pair words (one 32-bit word per lane and pair, the even term
/// in the low half). `None` if a value exceeds `i16` (as [`pack_a`]).
pub(crate) fn pack_b<T: Int>(b: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16> {
    pack::<T, NR>(b, how)
}

/// Pack an operand as panels of `W` rows: for each pair `q`, `W` consecutive words, word `r` =
/// row `r`'s `(v[2q], v[2q+1])`. A and B share this layout (`W` = [`MR`] or [`NR`]).
fn pack<T: Int, const W: usize>(a: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16> {
    #[cfg(nitro_x86_simd)]
    {
        match loop_build() {
            // SAFETY (both): as in `max_abs_view`.
            Isa::Avx512Vnni => return unsafe { pack_avx512::<T, W>(a, how) },
            Isa::Avx2 => return unsafe { pack_avx2::<T, W>(a, how) },
            _ => {}
        }
    }
    pack_impl::<T, W>(a, how)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn pack_avx2<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    how: Narrow,
) -> Option<Packed16> {
    pack_impl::<T, W>(a, how)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_avx512<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    how: Narrow,
) -> Option<Packed16> {
    pack_impl::<T, W>(a, how)
}

#[inline(always)]
fn pack_impl<T: Int, const W: usize>(a: &ArrayView2<'_, T>, how: Narrow) -> Option<Packed16> {
    let (m, k) = a.dim();
    let mx = packed_bound(max_abs_view(a), how);
    if mx > I16_MAX {
        return None;
    }
    let rows = packed_rows(a, how);
    let kp = k.div_ceil(2);
    let mut data = buffers::take_dirty::<u32>(rows.div_ceil(W) * kp * W);
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
pub(super) fn for_panels<F: Fn(usize, &mut [u32]) + Sync + Send>(
    data: &mut [u32],
    len: usize,
    fill: F,
) {
    if len == 0 {
        return;
    }
    if data.len() >= PAR_PACK_WORDS && par::threads() > 1 {
        par::for_each_chunk_mut(data, len, fill);
    } else {
        data.chunks_exact_mut(len)
            .enumerate()
            .for_each(|(p, d)| fill(p, d));
    }
}

/// Packed words from which packing runs on all threads (when there are several): a third of a
/// 64×784×200 product's time is packing its operands (26 k and 82 k words).
const PAR_PACK_WORDS: usize = 1 << 14;

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
pub(crate) fn pack_a_rows(src: &dyn RowSource) -> Option<Packed16> {
    pack_rows::<MR>(src)
}

/// Pack the rows of a [`RowSource`] as B panels; `None` if its bound exceeds `i16`.
pub(crate) fn pack_b_rows(src: &dyn RowSource) -> Option<Packed16> {
    pack_rows::<NR>(src)
}

/// Panels of `W` rows (the layout of [`pack`]) written from a row source.
fn pack_rows<const W: usize>(src: &dyn RowSource) -> Option<Packed16> {
    let (rows, k) = (src.rows(), src.cols());
    let mx = src.bound();
    if mx > I16_MAX {
        return None;
    }
    let kp = k.div_ceil(2);
    let mut data = buffers::take_dirty::<u32>(rows.div_ceil(W) * kp * W);
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

impl Packed16 {
    /// Return the packed storage for reuse.
    pub(crate) fn release(self) {
        buffers::give(self.data);
    }
}
