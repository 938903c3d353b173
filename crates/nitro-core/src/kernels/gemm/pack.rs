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

/// Largest magnitude of the operand's values (always scanned). A large contiguous operand
/// (a VGG layer's weights: up to 2.4 M) is scanned in parts on all threads.
pub(crate) fn max_abs_exact<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
    if let Some(s) = a.as_slice_memory_order() {
        if s.len() >= 2 * MAX_ABS_PART && par::threads() > 1 {
            let mut parts: Vec<&[T]> = s.chunks(MAX_ABS_PART).collect();
            let one = |p: &mut &[T]| {
                let part = ArrayView2::from_shape((1, p.len()), p).expect("one row");
                max_abs_build(&part)
            };
            return par::map_mut(&mut parts, one).into_iter().max().unwrap_or(0);
        }
    }
    max_abs_build(a)
}

/// Values per part of a scan of [`max_abs_exact`] on all threads: small enough that MLP2's
/// first weights (157 k, scanned before every forward) are split, which left the other thread
/// waiting for ~20 µs a step (2¹⁸: one part; criterion-like epoch 280 → 270 ms on 2 threads).
const MAX_ABS_PART: usize = 1 << 16;

/// [`max_abs_exact`] on the calling thread, on the widest build the dispatch allows.
fn max_abs_build<T: Int>(a: &ArrayView2<'_, T>) -> u64 {
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
    // Full B panels of a contiguous row-major operand, taken as it is: 16 pairs at a time by
    // the AVX-512 transpose (the pairs past the last multiple of 16 as below).
    // A column-major operand whose columns follow each other: all its values, column by column.
    let at = a.t();
    let columns = if col_major { at.as_slice() } else { None };
    #[cfg(nitro_x86_simd)]
    let by_vectors = how == Narrow::Direct && loop_build() == Isa::Avx512Vnni;
    for_panels(&mut data, kp * W, |p, dst| {
        let live = W.min(rows - p * W);
        if live < W {
            dst.fill(0); // rows past the operand stay zero
        }
        let srcs: [(usize, u32, i32); W] =
            core::array::from_fn(|r| source(how, m, (p * W + r).min(rows - 1)));
        if row_major {
            #[cfg(nitro_x86_simd)]
            let done = match by_vectors && live == W {
                true => panel_by_vectors::<T, W>(a, p * W, dst),
                false => 0,
            };
            #[cfg(not(nitro_x86_simd))]
            let done = 0;
            for (r, &(src, sh, mask)) in srcs.iter().enumerate().take(live) {
                let row = a.row(src);
                let row = row.as_slice().expect("unit stride row");
                let conv = |v: T| (Into::<i32>::into(v) >> sh) & mask;
                for (d, pair) in dst.chunks_exact_mut(W).zip(row.chunks_exact(2)).skip(done) {
                    d[r] = word(conv(pair[0]), conv(pair[1]));
                }
                if k % 2 == 1 {
                    dst[(kp - 1) * W + r] = word(conv(row[k - 1]), 0);
                }
            }
        } else if let (Some(cols), Narrow::Direct, true) = (columns.as_ref(), how, live == W) {
            // A full panel of a contiguous column-major operand as it is: each pair's W words
            // from two runs of W consecutive values, a loop that vectorises.
            let base = p * W;
            for (q, d) in dst.chunks_exact_mut(W).enumerate() {
                let c0 = &cols[2 * q * m + base..][..W];
                match 2 * q + 1 < k {
                    true => {
                        let c1 = &cols[(2 * q + 1) * m + base..][..W];
                        for ((d, &x0), &x1) in d.iter_mut().zip(c0).zip(c1) {
                            *d = word(x0.into(), x1.into());
                        }
                    }
                    false => {
                        for (d, &x0) in d.iter_mut().zip(c0) {
                            *d = word(x0.into(), 0);
                        }
                    }
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

/// The first pairs of the full panel of rows `r0..r0 + W` (`W` = [`NR`] or [`MR`]) of a
/// contiguous operand of `i8`, `i16` or `i32` values (all within ±32767) by AVX-512 shuffles:
/// how many pairs it packed, a multiple of 16 (0 for another layout, width or element type).
/// Only under an AVX-512 loop build.
#[cfg(nitro_x86_simd)]
fn panel_by_vectors<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    r0: usize,
    dst: &mut [u32],
) -> usize {
    use crate::kernels::x86::avx512::{pack_panel16, pack_panel6, PairRow};
    use core::any::TypeId;
    fn rows_as<U: PairRow, T: Int, const W: usize>(
        all: &[T],
        k: usize,
        r0: usize,
        pairs: usize,
        dst: &mut [u32],
    ) {
        debug_assert_eq!(TypeId::of::<U>(), TypeId::of::<T>());
        // SAFETY: U and T are the same type (checked by the caller with their TypeIds).
        let all = unsafe { core::slice::from_raw_parts(all.as_ptr() as *const U, all.len()) };
        let rows: [&[U]; W] = core::array::from_fn(|r| &all[(r0 + r) * k..(r0 + r + 1) * k]);
        // SAFETY (both): the caller's build is AVX-512 (loop_build: allowed and detected);
        // every value is within ±32767 (the operand's bound was checked before packing).
        match W {
            NR => unsafe { pack_panel16(&rows, pairs, dst) },
            _ => unsafe { pack_panel6(&rows, pairs, dst) },
        }
    }
    let (Some(all), k) = (a.as_slice(), a.ncols()) else {
        return 0;
    };
    let pairs = k / 32 * 16;
    let id = TypeId::of::<T>();
    if pairs == 0 || (W != NR && W != MR) {
        return 0;
    } else if id == TypeId::of::<i32>() {
        rows_as::<i32, T, W>(all, k, r0, pairs, dst);
    } else if id == TypeId::of::<i16>() {
        rows_as::<i16, T, W>(all, k, r0, pairs, dst);
    } else if id == TypeId::of::<i8>() {
        rows_as::<i8, T, W>(all, k, r0, pairs, dst);
    } else {
        return 0;
    }
    pairs
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
    /// Row `r` as bytes, for a source whose [`RowSource::bound`] is at most 127 (every value
    /// then fits `i8` as it is): `out.len() == cols()`, `wide` scratch of the same length.
    fn row_bytes(&self, r: usize, out: &mut [i8], wide: &mut [i16]) {
        self.row(r, wide);
        for (o, &v) in out.iter_mut().zip(wide.iter()) {
            *o = v as i8;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu::{set_dispatch, Dispatch};
    use ndarray::{s, Array2};

    /// A large operand is scanned in parts on all threads: the largest magnitude of every
    /// part, wherever it lies (also a strided view, which is scanned whole).
    #[test]
    fn max_abs_exact_finds_the_extreme_of_every_part() {
        let (m, k) = (5, 3 * MAX_ABS_PART / 5 + 7);
        for (at, extreme) in [
            (0, 70_000i32),
            (m * k - 1, -70_001),
            (2 * MAX_ABS_PART + 3, i32::MIN),
        ] {
            let mut v: Vec<i32> = (0..m * k).map(|i| (i % 2001) as i32 - 1000).collect();
            v[at] = extreme;
            let a = Array2::from_shape_vec((m, k), v).unwrap();
            let want = u64::from(extreme.unsigned_abs());
            assert_eq!(max_abs_exact(&a.view()), want, "{at}");
            assert_eq!(max_abs_exact(&a.t()), want, "transposed {at}");
            assert_eq!(max_abs_exact(&a.slice(s![.., ..;2])).max(want), want);
        }
    }

    /// The panels of `a` (`w` rows each) by their definition (module docs), element by element.
    fn reference<T: Int>(a: &ArrayView2<'_, T>, w: usize) -> Vec<u32> {
        let (m, k) = a.dim();
        let kp = k.div_ceil(2);
        let at = |i: usize, t: usize| match i < m && t < k {
            true => Into::<i32>::into(a[(i, t)]),
            false => 0,
        };
        let mut out = Vec::new();
        for p in 0..m.div_ceil(w) {
            for q in 0..kp {
                for r in 0..w {
                    out.push(word(at(p * w + r, 2 * q), at(p * w + r, 2 * q + 1)));
                }
            }
        }
        out
    }

    /// The A and the B packing of `a` under `isa`, checked against [`reference`].
    fn packed<T: Int>(a: &ArrayView2<'_, T>, isa: Isa) -> [(Vec<u32>, u64); 2] {
        set_dispatch(Dispatch::new(true, isa));
        let packs = [
            (pack_a(a, Narrow::Direct), MR),
            (pack_b(a, Narrow::Direct), NR),
        ];
        packs.map(|(p, w)| {
            let p = p.expect("values within i16");
            assert_eq!(
                p.data,
                reference(a, w),
                "{isa}: {w}-row panels of {:?}",
                a.dim()
            );
            let out = (p.data.clone(), p.max);
            p.release();
            out
        })
    }

    /// Every build packs A and B panels word for word as the portable loop does — full and
    /// partial panels, reductions around multiples of 32 (the AVX-512 transpose's block and its tail),
    /// odd ones, each element type, contiguous and sliced operands. (Tests running meanwhile
    /// see the forced dispatch too: every path computes the same integers.)
    #[test]
    fn every_build_packs_like_the_portable_loop() {
        fn check<T: Int + core::fmt::Debug>(conv: impl Fn(i32) -> T) {
            let mut state = 0x2545_f491u64;
            let mut next = move || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) % 255) as i32 - 127
            };
            for (n, k) in [
                (16, 32),
                (16, 31),
                (17, 33),
                (40, 64),
                (33, 100),
                (48, 784),
                (5, 70),
                (6, 96),
                (13, 64),
            ] {
                let a = Array2::from_shape_fn((n, k), |_| conv(next()));
                let want = packed(&a.view(), Isa::Portable);
                let sliced = a.slice(s![1.., ..k - 1]);
                let want_sliced = packed(&sliced, Isa::Portable);
                // Column-major: the transpose of a contiguous array, and of a sliced one.
                let b = Array2::from_shape_fn((k, n), |_| conv(next()));
                let (bt, bts) = (b.t(), b.slice(s![..k - 1, 1..]).reversed_axes());
                let want_t = [packed(&bt, Isa::Portable), packed(&bts, Isa::Portable)];
                for isa in Isa::ALL.into_iter().filter(|i| i.detected()) {
                    assert_eq!(packed(&a.view(), isa), want, "{isa} {n}×{k}");
                    assert_eq!(packed(&sliced, isa), want_sliced, "{isa} {n}×{k} sliced");
                    assert_eq!(packed(&bt, isa), want_t[0], "{isa} {n}×{k} transposed");
                    assert_eq!(
                        packed(&bts, isa),
                        want_t[1],
                        "{isa} {n}×{k} sliced, transposed"
                    );
                }
            }
            set_dispatch(Dispatch::default());
        }
        // The same operands given row by row (the convolutions' patches).
        struct Rows(Array2<i16>);
        impl RowSource for Rows {
            fn rows(&self) -> usize {
                self.0.nrows()
            }
            fn cols(&self) -> usize {
                self.0.ncols()
            }
            fn bound(&self) -> u64 {
                32_767
            }
            fn row(&self, r: usize, out: &mut [i16]) {
                out.copy_from_slice(self.0.row(r).as_slice().expect("standard layout"));
            }
        }
        for (n, k) in [(6, 32), (13, 64), (16, 1152), (7, 33), (20, 31), (1, 0)] {
            let a = Array2::from_shape_fn((n, k), |(i, j)| {
                ((i * 7919 + j * 104_729) % 65_535) as i16 - 32_767
            });
            let src = Rows(a.clone());
            for isa in Isa::ALL.into_iter().filter(|i| i.detected()) {
                set_dispatch(Dispatch::new(true, isa));
                for (p, w) in [(pack_a_rows(&src), MR), (pack_b_rows(&src), NR)] {
                    let p = p.expect("within i16");
                    assert_eq!(
                        p.data,
                        reference(&a.view(), w),
                        "{isa} rows {n}×{k}, {w}-row panels"
                    );
                    p.release();
                }
            }
        }
        check(|v| v as i8);
        check(|v| (v * 200) as i16);
        check(|v| v * 258);
        // ±32767 itself (the narrowing's edge).
        let a = Array2::from_shape_fn(
            (16, 64),
            |(i, j)| if (i + j) % 2 == 0 { 32_767 } else { -32_767 },
        );
        let want = packed(&a.view(), Isa::Portable);
        for isa in Isa::ALL.into_iter().filter(|i| i.detected()) {
            assert_eq!(packed(&a.view(), isa), want, "{isa} edges");
        }
        set_dispatch(Dispatch::default());
    }
}
