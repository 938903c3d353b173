//! Max pooling with arg-max, one output row of windows at a time (`layers::pool` calls these
//! for each plane). Windows are `kh × kw` with stride = kernel; the padding takes part with its
//! value, and the arg-max rule is algorithm.md §3.5's: the first maximum in row-major order (a
//! later element replaces the maximum only when strictly larger), `PADDING` when that element
//! is padding.
//!
//! [`plane`] handles every window shape, a row of windows in two passes. First each column of
//! the band gets its maximum over the window's rows and the first row holding it — one loop
//! over contiguous columns per row, which the compiler vectorises, where comparing element by
//! element along each window row was a chain of dependent, unpredictable branches. Then each
//! window's maximum is the largest column maximum, and its first occurrence in row-major order
//! is the one in the smallest first row, then the leftmost column: the same element the
//! element-wise rule picks (found through one key per column where there are vectors, by a
//! compare per column on microcontrollers).

/// The band's columns kept on the stack at once (whole windows; a wider band is done in parts).
pub(crate) const BAND_COLS: usize = 256;

/// The most window rows [`band`] takes (a window row's index is kept in a byte).
pub(crate) const BAND_ROWS: usize = 256;

/// A window's arg-max when its maximum is padding (routes no error).
pub(crate) const PADDING: usize = usize::MAX;

/// One input plane: its first flat index, height and width.
#[derive(Clone, Copy)]
pub(crate) struct Plane {
    pub base: usize,
    pub h: usize,
    pub w: usize,
}

/// Window geometry: kernel `(kh, kw)` (= stride), padding `(ph, pw)`.
#[derive(Clone, Copy)]
pub(crate) struct Windows {
    pub kernel: (usize, usize),
    pub padding: (usize, usize),
}

impl Windows {
    /// Windows across a plane `h × w`, `(ho, wo)` (kernel = stride; the padded sizes are at
    /// least the kernel's, which the layer checked).
    #[inline(always)]
    fn out(&self, (h, w): (usize, usize)) -> (usize, usize) {
        let ((kh, kw), (ph, pw)) = (self.kernel, self.padding);
        ((h + 2 * ph - kh) / kh + 1, (w + 2 * pw - kw) / kw + 1)
    }
}

/// Max pooling of plane `p` of `xv` into its `ho × wo` outputs: the maxima into `o` and their
/// flat input indices (or [`PADDING`]) into `a`, row-major. `pad` is the padding's value.
/// Needs `kh ≤ BAND_ROWS` and `kw ≤ BAND_COLS`. On the widest build the dispatch allows (the
/// same safe code, the same values).
pub(crate) fn plane<T: Copy + Ord + Into<i32>>(
    xv: &[T],
    p: Plane,
    g: Windows,
    pad: T,
    o: &mut [T],
    a: &mut [usize],
) {
    #[cfg(nitro_x86_simd)]
    {
        use crate::kernels::cpu::{loop_build, Isa};
        match loop_build() {
            // SAFETY (both): the instruction set is allowed and detected.
            Isa::Avx512Vnni => return unsafe { plane_avx512(xv, p, g, pad, o, a) },
            Isa::Avx2 => return unsafe { plane_avx2(xv, p, g, pad, o, a) },
            _ => {}
        }
    }
    plane_impl::<_, PORTABLE_LANES>(xv, p, g, pad, o, a)
}

/// [`plane`] for bytes: by the AVX-512 byte kernel (`x86::avx512::maxpool_band_bytes`: the
/// band's column maxima in two vectors and every window's winner by a butterfly of keys)
/// where the CPU has it and the plane fits it — windows a power of two up to 16 columns wide
/// over at most 64 padded columns, as every VGG learning head's are, but not 2×2 — else
/// [`plane`]. The same values and arg-max positions.
pub(crate) fn plane_bytes(xv: &[i8], p: Plane, g: Windows, pad: i8, o: &mut [i8], a: &mut [usize]) {
    #[cfg(nitro_x86_simd)]
    if bytes::usable(p, g) {
        // SAFETY: `usable` found AVX-512 F and BW detected and allowed, and the shape within
        // the kernel's limits.
        return unsafe { bytes::plane(xv, p, g, pad, o, a) };
    }
    plane(xv, p, g, pad, o, a)
}

/// [`plane_values`] for bytes: 2×2 windows without padding (the pools between blocks) by the
/// AVX-512 kernel (`x86::avx512::max2x2_row_bytes`) where the CPU has it, else
/// [`plane_values`]. The same values.
pub(crate) fn plane_values_bytes(xv: &[i8], p: Plane, g: Windows, pad: i8, o: &mut [i8]) {
    #[cfg(nitro_x86_simd)]
    if g.kernel == (2, 2) && g.padding == (0, 0) && bytes::values_usable() {
        let wo = p.w / 2;
        for (oi, orow) in o.chunks_exact_mut(wo.max(1)).enumerate().take(p.h / 2) {
            let r0 = &xv[p.base + 2 * oi * p.w..][..p.w];
            let r1 = &xv[p.base + (2 * oi + 1) * p.w..][..p.w];
            // SAFETY: `values_usable` found AVX-512 F and BW detected and allowed; each row
            // holds `w ≥ 2·wo` bytes.
            unsafe { crate::kernels::x86::avx512::max2x2_row_bytes(r0, r1, orow) };
        }
        return;
    }
    plane_values(xv, p, g, pad, o)
}

/// The byte kernels' use: where they may run, their first-use checks, and the plane loop
/// around the arg-max one.
#[cfg(nitro_x86_simd)]
mod bytes {
    use super::{plane_impl, Plane, Windows, LANES, PADDING};
    use crate::kernels::cpu::{loop_build, Isa};
    use crate::kernels::self_check::SelfCheck;
    use crate::kernels::x86::avx512::maxpool_band_bytes;

    static CHECK: SelfCheck = SelfCheck::new("the AVX-512 byte max pooling");
    static VALUES_CHECK: SelfCheck = SelfCheck::new("the AVX-512 2×2 byte max pooling");

    /// Whether the 2×2 values kernel may run: the AVX-512 build allowed and its first-use
    /// check (odd and even widths, every byte value, against the portable loop) passed.
    pub(super) fn values_usable() -> bool {
        if loop_build() != Isa::Avx512Vnni {
            return false;
        }
        VALUES_CHECK.passed(|| {
            [(4usize, 129usize), (3, 28), (2, 2)]
                .into_iter()
                .all(|(h, w)| {
                    let xv: alloc::vec::Vec<i8> =
                        (0..h * w).map(|i| (i * 97 + 11) as u8 as i8).collect();
                    let (p, g) = (
                        Plane { base: 0, h, w },
                        Windows {
                            kernel: (2, 2),
                            padding: (0, 0),
                        },
                    );
                    let n = (h / 2) * (w / 2);
                    let (mut want, mut got) = (alloc::vec![0i8; n], alloc::vec![1i8; n]);
                    super::values_impl(&xv, p, g, i8::MIN, &mut want);
                    for (oi, orow) in got.chunks_exact_mut(w / 2).enumerate() {
                        let (r0, r1) = (&xv[2 * oi * w..][..w], &xv[(2 * oi + 1) * w..][..w]);
                        // SAFETY: the AVX-512 build is allowed (checked above).
                        unsafe { crate::kernels::x86::avx512::max2x2_row_bytes(r0, r1, orow) };
                    }
                    got == want
                })
        })
    }

    /// Whether the kernel takes this plane and may run: windows a power of two up to 16
    /// columns wide (but not 2×2), at most 64 padded columns under them, at most 255 rows,
    /// the AVX-512 build allowed, and the kernel's first-use check passed.
    pub(super) fn usable(p: Plane, g: Windows) -> bool {
        let ((kh, kw), (_, pw)) = (g.kernel, g.padding);
        let wo = (p.w + 2 * pw).checked_sub(kw).map(|v| v / kw + 1);
        // 2×2 windows keep `max_2x2`, faster for them (criterion `pool/max stack 256x28x28
        // k2x2 b64`, alternating: 6.6–7.0 ms there, 8.5–8.8 ms here).
        g.kernel != (2, 2)
            && kw.is_power_of_two()
            && kw <= 16
            && (1..=255).contains(&kh)
            && pw < 64
            && wo.is_some_and(|wo| wo * kw <= 64)
            && loop_build() == Isa::Avx512Vnni
            && checked()
    }

    /// The first-use check (cached): planes with ties, padding maxima and every window width
    /// the kernel takes, against the portable loop.
    fn checked() -> bool {
        CHECK.passed(|| {
            let mut state = 0x9e37_79b9u32;
            [
                ((8, 4), (4, 0), 28, 28),
                ((4, 4), (1, 1), 14, 14),
                ((2, 16), (1, 3), 5, 40),
                ((3, 1), (0, 0), 7, 9),
                ((8, 8), (4, 4), 28, 28),
            ]
            .into_iter()
            .all(|(kernel, padding, h, w)| {
                let xv: alloc::vec::Vec<i8> = (0..h * w)
                    .map(|_| {
                        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        [-128i8, -3, 0, 5, 127][(state >> 24) as usize % 5]
                    })
                    .collect();
                let (p, g) = (Plane { base: 0, h, w }, Windows { kernel, padding });
                let (ho, wo) = g.out((h, w));
                let n = ho * wo;
                let (mut o1, mut a1) = (alloc::vec![0i8; n], alloc::vec![0usize; n]);
                let (mut o2, mut a2) = (alloc::vec![1i8; n], alloc::vec![1usize; n]);
                plane_impl::<i8, LANES>(&xv, p, g, i8::MIN, &mut o1, &mut a1);
                // SAFETY: `usable` checked AVX-512 before calling here.
                unsafe { plane(&xv, p, g, i8::MIN, &mut o2, &mut a2) };
                (o1, a1) == (o2, a2)
            })
        })
    }

    /// Every output row of the plane through the kernel, its winners written as values and
    /// flat input indices (or [`PADDING`]).
    ///
    /// # Safety
    /// AVX-512 F and BW must be available; the shape as [`usable`] requires.
    pub(super) unsafe fn plane(
        xv: &[i8],
        p: Plane,
        g: Windows,
        pad: i8,
        o: &mut [i8],
        a: &mut [usize],
    ) {
        let ((kh, kw), (ph, pw)) = (g.kernel, g.padding);
        let wo = g.out((p.h, p.w)).1;
        let mut keys = [0u32; 64];
        for (oi, (orow, arow)) in o
            .chunks_exact_mut(wo)
            .zip(a.chunks_exact_mut(wo))
            .enumerate()
        {
            let row = |u: usize| {
                let y = (oi * kh + u).wrapping_sub(ph);
                (y < p.h).then(|| &xv[p.base + y * p.w..][..p.w])
            };
            // SAFETY: the caller's instruction sets and shape.
            unsafe { maxpool_band_bytes(kh, row, (pw, kw, wo), pad, &mut keys) };
            for (j, (ov, av)) in orow.iter_mut().zip(arow.iter_mut()).enumerate() {
                let key = keys[j * kw];
                let (r, c) = (255 - (key >> 8 & 255) as usize, 255 - (key & 255) as usize);
                *ov = ((key >> 16) as i32 - 128) as i8;
                let (y, x) = (
                    (oi * kh + r).wrapping_sub(ph),
                    (j * kw + c).wrapping_sub(pw),
                );
                *av = if y < p.h && x < p.w {
                    p.base + y * p.w + x
                } else {
                    PADDING
                };
            }
        }
    }
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn plane_avx512<T: Copy + Ord + Into<i32>>(
    xv: &[T],
    p: Plane,
    g: Windows,
    pad: T,
    o: &mut [T],
    a: &mut [usize],
) {
    plane_impl::<_, LANES>(xv, p, g, pad, o, a)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn plane_avx2<T: Copy + Ord + Into<i32>>(
    xv: &[T],
    p: Plane,
    g: Windows,
    pad: T,
    o: &mut [T],
    a: &mut [usize],
) {
    plane_impl::<_, LANES>(xv, p, g, pad, o, a)
}

/// The maxima alone of plane `p` (evaluation: no arg-max) into `o`, row-major; `pad` is the
/// padding's value. On the widest build the dispatch allows (the same safe code, the same
/// values).
pub(crate) fn plane_values<T: Copy + Ord>(xv: &[T], p: Plane, g: Windows, pad: T, o: &mut [T]) {
    #[cfg(nitro_x86_simd)]
    {
        use crate::kernels::cpu::{loop_build, Isa};
        match loop_build() {
            // SAFETY (both): the instruction set is allowed and detected.
            Isa::Avx512Vnni => return unsafe { values_avx512(xv, p, g, pad, o) },
            Isa::Avx2 => return unsafe { values_avx2(xv, p, g, pad, o) },
            _ => {}
        }
    }
    values_impl(xv, p, g, pad, o)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn values_avx512<T: Copy + Ord>(xv: &[T], p: Plane, g: Windows, pad: T, o: &mut [T]) {
    values_impl(xv, p, g, pad, o)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn values_avx2<T: Copy + Ord>(xv: &[T], p: Plane, g: Windows, pad: T, o: &mut [T]) {
    values_impl(xv, p, g, pad, o)
}

/// [`plane_values`]' loop. A 2×2 window row with both rows inside is the maximum of the two
/// rows' column maxima, by pairs of columns (contiguous loops that vectorise); any other row
/// of windows folds each window's elements, starting from `pad` where it reaches into the
/// padding.
#[inline(always)]
fn values_impl<T: Copy + Ord>(xv: &[T], p: Plane, g: Windows, pad: T, o: &mut [T]) {
    let ((kh, kw), (ph, pw)) = (g.kernel, g.padding);
    let (h, w) = (p.h, p.w);
    let wo = g.out((h, w)).1;
    let mut cols = [pad; 2 * BAND_COLS];
    for (oi, orow) in o.chunks_exact_mut(wo).enumerate() {
        // Window rows in padded coordinates, and the part of them inside the input.
        let top = oi * kh;
        let (ya, yb) = (top.max(ph), (top + kh).min(h + ph));
        if kh == 2 && kw == 2 && pw == 0 && yb == ya + 2 && 2 * wo <= w {
            let r0 = &xv[p.base + (ya - ph) * w..][..2 * wo];
            let r1 = &xv[p.base + (ya + 1 - ph) * w..][..2 * wo];
            for (part, (c0, c1)) in orow
                .chunks_mut(BAND_COLS)
                .zip(r0.chunks(2 * BAND_COLS).zip(r1.chunks(2 * BAND_COLS)))
            {
                let m = &mut cols[..c0.len()];
                for ((mv, &a), &b) in m.iter_mut().zip(c0).zip(c1) {
                    *mv = a.max(b);
                }
                for (ov, pair) in part.iter_mut().zip(m.chunks_exact(2)) {
                    *ov = pair[0].max(pair[1]);
                }
            }
            continue;
        }
        for (oj, ov) in orow.iter_mut().enumerate() {
            let left = oj * kw;
            let (xa, xb) = (left.max(pw), (left + kw).min(w + pw));
            // A window reaching into the padding starts from the pad value; one inside from
            // its first element.
            let inside = yb >= ya + kh && xb >= xa + kw;
            let mut m = if inside {
                xv[p.base + (ya - ph) * w + xa - pw]
            } else {
                pad
            };
            for y in ya..yb {
                let row = p.base + (y - ph) * w;
                if xa < xb {
                    m = xv[row + xa - pw..row + xb - pw]
                        .iter()
                        .fold(m, |a, &v| a.max(v));
                }
            }
            *ov = m;
        }
    }
}

/// `L`: columns per step of [`rise`] (the band's width is rounded up to it).
#[inline(always)]
fn plane_impl<T: Copy + Ord + Into<i32>, const L: usize>(
    xv: &[T],
    p: Plane,
    g: Windows,
    pad: T,
    o: &mut [T],
    a: &mut [usize],
) {
    let ((kh, kw), (ph, pw)) = (g.kernel, g.padding);
    let wo = g.out((p.h, p.w)).1;
    assert!(kh <= BAND_ROWS && (1..=BAND_COLS).contains(&kw) && a.len() == o.len());
    let mut scratch = Scratch {
        m: [pad; BAND_COLS],
        first: [0; BAND_COLS],
        rows: [pad; ROWS_BUF],
    };
    for (oi, (orow, arow)) in o
        .chunks_exact_mut(wo)
        .zip(a.chunks_exact_mut(wo))
        .enumerate()
    {
        let y0 = (oi * kh).wrapping_sub(ph);
        if (kh, kw) == (2, 2) && pw == 0 && y0 < p.h && y0 + 2 <= p.h {
            max_2x2(xv, (p.base + y0 * p.w, p.w), orow, arow);
        } else {
            band::<T, L>(xv, p, g, oi, pad, orow, arow, &mut scratch);
        }
    }
}

/// [`band`]'s working rows, made once per plane.
struct Scratch<T> {
    /// Column maxima.
    m: [T; BAND_COLS],
    /// The window row each column maximum first occurs in.
    first: [u8; BAND_COLS],
    /// A batch of window rows, padded columns.
    rows: [T; ROWS_BUF],
}

/// Output row `oi`: its `o.len()` windows' maxima into `o`, arg-max into `a`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn band<T: Copy + Ord + Into<i32>, const L: usize>(
    xv: &[T],
    p: Plane,
    g: Windows,
    oi: usize,
    pad: T,
    o: &mut [T],
    a: &mut [usize],
    s: &mut Scratch<T>,
) {
    let ((kh, kw), (ph, pw)) = (g.kernel, g.padding);
    let per_part = BAND_COLS / kw;
    for j0 in (0..o.len()).step_by(per_part) {
        let j1 = o.len().min(j0 + per_part);
        let cols = (j1 - j0) * kw;
        // Whole vectors only (no scalar remainder; the columns past `cols` are never read).
        let width = cols.next_multiple_of(L).min(BAND_COLS);
        // Padded column of the part's first column; the part's columns `lo..hi` are inside
        // the input (on rows that are), the others padding.
        let xe0 = j0 * kw;
        let lo = pw.saturating_sub(xe0).min(cols);
        let hi = (pw + p.w).saturating_sub(xe0).clamp(lo, cols);
        let (m, first) = (&mut s.m[..width], &mut s.first[..width]);
        // Rows are copied a batch at a time before any is compared: a vector load of a row
        // just written by a short copy would wait for the copy's stores to reach the cache.
        let batch = ROWS_BUF / width;
        for u0 in (0..kh).step_by(batch) {
            let u1 = kh.min(u0 + batch);
            let buf = &mut s.rows[..(u1 - u0) * width];
            // Fixed-length fills and copies, inlined (a call to the C library's memset and
            // memcpy for every few dozen bytes cost more than the comparisons).
            for v in buf.chunks_exact_mut(L) {
                v.fill(pad);
            }
            for (u, row) in (u0..u1).zip(buf.chunks_exact_mut(width)) {
                let y = (oi * kh + u).wrapping_sub(ph);
                if y < p.h {
                    let at = p.base + y * p.w + (xe0 + lo - pw);
                    copy_short(&mut row[lo..hi], &xv[at..at + (hi - lo)]);
                }
            }
            for (u, row) in (u0..u1).zip(buf.chunks_exact(width)) {
                if u == 0 {
                    for ((m, f), r) in m
                        .chunks_exact_mut(L)
                        .zip(first.chunks_exact_mut(L))
                        .zip(row.chunks_exact(L))
                    {
                        m.copy_from_slice(r);
                        f.fill(0);
                    }
                } else {
                    // `u < kh ≤ 256`: fits the byte.
                    rise::<T, L>(m, first, row, u as u8);
                }
            }
        }
        for (jj, ((ov, av), (wm, wf))) in o[j0..j1]
            .iter_mut()
            .zip(&mut a[j0..j1])
            .zip(m.chunks_exact(kw).zip(first.chunks_exact(kw)))
            .enumerate()
        {
            let (row, col) = if L == 1 {
                // The microcontrollers: a compare per column, where the 64-bit keys below
                // cost a 32-bit core several instructions each.
                let (mut best, mut row, mut col) = (wm[0], wf[0], 0);
                for (v, (&mv, &fv)) in wm.iter().zip(wf).enumerate().skip(1) {
                    if mv > best || (mv == best && fv < row) {
                        (best, row, col) = (mv, fv, v);
                    }
                }
                (usize::from(row), col)
            } else {
                // One key per column, larger for a larger maximum, then an earlier first row,
                // then a column further left (all distinct): the window's largest key is its
                // winner, found without a branch per column.
                let mut best = 0u64;
                for (v, (&mv, &fv)) in wm.iter().zip(wf).enumerate() {
                    // The biased value fits 32 bits, `v < kw ≤ 256`.
                    let biased = (i64::from(mv.into()) - i64::from(i32::MIN)) as u64;
                    best = best.max(biased << 16 | u64::from(255 - fv) << 8 | (255 - v as u64));
                }
                (
                    255 - (best >> 8 & 255) as usize,
                    255 - (best & 255) as usize,
                )
            };
            *ov = wm[col];
            let y = (oi * kh + row).wrapping_sub(ph);
            let x = ((j0 + jj) * kw + col).wrapping_sub(pw);
            *av = if y < p.h && x < p.w {
                p.base + y * p.w + x
            } else {
                PADDING
            };
        }
    }
}

/// `dst = src` (equal lengths) in 16-element steps and a remainder, all inline.
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(16), src.chunks_exact(16));
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s;
    }
}

/// Columns per step of [`rise`]: one 512-bit vector of `i8` (four 128-bit ones on x86-64's
/// SSE2 baseline: steps of 16 were slower there, VGG8B block 2's head 4.5 → 6.6 ms).
const LANES: usize = 64;

/// Columns per step of the portable build: [`LANES`] where the baseline has vectors (x86-64,
/// AArch64); one on the microcontrollers, which would otherwise compare every column up to
/// the next 64 (a 7-column band rounded up cost the embedded CNN 19 % more instructions per
/// step).
const PORTABLE_LANES: usize = if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
    LANES
} else {
    1
};

/// Values of the window-row batch (a multiple of [`BAND_COLS`]: a band of eight 64-column rows;
/// small, since it is made for every plane).
const ROWS_BUF: usize = 2 * BAND_COLS;

/// Columns where window row `r` is strictly larger take its value, and `r` as their first
/// row. Fixed-length, branch-free steps, so that each is a few vector instructions.
#[inline(always)]
fn rise<T: Copy + Ord, const L: usize>(m: &mut [T], first: &mut [u8], row: &[T], r: u8) {
    let steps = m
        .chunks_exact_mut(L)
        .zip(first.chunks_exact_mut(L))
        .zip(row.chunks_exact(L));
    for ((m, first), row) in steps {
        // New values computed whole, then stored whole: a conditional store per column
        // becomes a masked vector store, and the next row's load of it is not forwarded.
        let mut nm = [row[0]; L];
        let mut nf = [0u8; L];
        for i in 0..L {
            // As masks and bit operations, which every vector build has (a select of bytes
            // was left scalar by the AVX2 and baseline builds).
            let up = u8::from(row[i] > m[i]).wrapping_neg();
            nm[i] = row[i].max(m[i]);
            nf[i] = (first[i] & !up) | (r & up);
        }
        m.copy_from_slice(&nm);
        first.copy_from_slice(&nf);
    }
}

/// One output row of 2×2 max pooling inside the input (the stack's pools; `start` is the
/// flat index of the band's first input, `w` the input width): each window's four elements
/// compared in row-major order, a later one replacing only when strictly larger.
#[inline(always)]
fn max_2x2<T: Copy + Ord>(xv: &[T], (start, w): (usize, usize), o: &mut [T], a: &mut [usize]) {
    let wo = o.len();
    let (r0, r1) = (
        &xv[start..start + 2 * wo],
        &xv[start + w..start + w + 2 * wo],
    );
    for (j, ((ov, av), (p, q))) in o
        .iter_mut()
        .zip(a.iter_mut())
        .zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)))
        .enumerate()
    {
        let (mut best, mut at) = (p[0], 0);
        for (v, off) in [(p[1], 1), (q[0], w), (q[1], w + 1)] {
            if v > best {
                (best, at) = (v, off);
            }
        }
        *ov = best;
        *av = start + 2 * j + at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Pcg32;

    /// A way to pool a plane: the dispatch or one step width.
    type Way = fn(&[i8], Plane, Windows, i8, &mut [i8], &mut [usize]);

    /// The element-wise rule, spelled out: every window element in row-major order, padding
    /// included, a later one replacing only when strictly larger.
    fn oracle(xv: &[i8], p: Plane, g: Windows, oi: usize, wo: usize, pad: i8) -> Vec<(i8, usize)> {
        let ((kh, kw), (ph, pw)) = (g.kernel, g.padding);
        (0..wo)
            .map(|oj| {
                let mut best: Option<(i8, usize)> = None;
                for u in 0..kh {
                    for v in 0..kw {
                        let (y, x) = (
                            (oi * kh + u).wrapping_sub(ph),
                            (oj * kw + v).wrapping_sub(pw),
                        );
                        let e = if y < p.h && x < p.w {
                            (xv[p.base + y * p.w + x], p.base + y * p.w + x)
                        } else {
                            (pad, PADDING)
                        };
                        if best.is_none_or(|b| e.0 > b.0) {
                            best = Some(e);
                        }
                    }
                }
                best.expect("kernel ≥ 1×1")
            })
            .collect()
    }

    /// Random planes (few distinct values: ties everywhere, padding maxima), kernels up to
    /// 9×9 and one wider than a part of the band, paddings up to half the kernel, both pad
    /// values: every row equals the element-wise rule.
    #[test]
    fn band_equals_the_element_wise_rule() {
        let mut r = Pcg32::new(11, 3);
        let mut shapes = alloc::vec![((3, 130), (1, 65)), ((2, BAND_COLS), (1, 0))];
        for kh in 1..=9 {
            for kw in 1..=9 {
                shapes.push(((kh, kw), (kh / 2, kw / 2)));
                shapes.push(((kh, kw), (0, 0)));
                shapes.push(((kh, kw), (r.below(kh as u32 / 2 + 1) as usize, 0)));
            }
        }
        for ((kh, kw), (ph, pw)) in shapes {
            let (h, w) = (kh + r.below(12) as usize, kw + r.below(700) as usize);
            let xv: Vec<i8> = (0..2 * h * w)
                .map(|_| [-128i8, -5, 0, 0, 3, 127][r.below(6) as usize])
                .collect();
            let (ho, wo) = ((h + 2 * ph - kh) / kh + 1, (w + 2 * pw - kw) / kw + 1);
            let g = Windows {
                kernel: (kh, kw),
                padding: (ph, pw),
            };
            let p = Plane { base: h * w, h, w };
            // Through the dispatch, and each step width directly (1: the microcontrollers').
            let ways: [(&str, Way); 5] = [
                ("dispatch", plane),
                ("bytes", plane_bytes),
                ("1 column", plane_impl::<i8, 1>),
                ("16 columns", plane_impl::<i8, 16>),
                ("64 columns", plane_impl::<i8, 64>),
            ];
            for ((way, run), pad) in ways.into_iter().flat_map(|w| [(w, i8::MIN), (w, 0)]) {
                let (mut o, mut a) = (alloc::vec![0i8; ho * wo], alloc::vec![0usize; ho * wo]);
                run(&xv, p, g, pad, &mut o, &mut a);
                let got: Vec<(i8, usize)> = o.into_iter().zip(a).collect();
                for (oi, got) in got.chunks_exact(wo).enumerate() {
                    assert_eq!(
                        got,
                        oracle(&xv, p, g, oi, wo, pad),
                        "{way}: kernel {kh}×{kw}, padding {ph}×{pw}, {h}×{w}, row {oi}, pad {pad}"
                    );
                }
            }
            // The maxima alone (evaluation), on the dispatch and the portable loop.
            type Values = fn(&[i8], Plane, Windows, i8, &mut [i8]);
            let values: [(&str, Values); 3] = [
                ("values", plane_values),
                ("portable values", values_impl),
                ("byte values", plane_values_bytes),
            ];
            for ((way, run), pad) in values.into_iter().flat_map(|w| [(w, i8::MIN), (w, 0)]) {
                let mut o = alloc::vec![0i8; ho * wo];
                run(&xv, p, g, pad, &mut o);
                for (oi, got) in o.chunks_exact(wo).enumerate() {
                    let want: Vec<i8> =
                        oracle(&xv, p, g, oi, wo, pad).iter().map(|e| e.0).collect();
                    assert_eq!(
                        got, want,
                        "{way}: kernel {kh}×{kw}, padding {ph}×{pw}, {h}×{w}, row {oi}, pad {pad}"
                    );
                }
            }
        }
    }

    /// The planes the byte kernel takes (windows 1 to 16 columns wide in powers of two but not
    /// 2×2, up to 64 padded columns, up to 255 rows), with ties and padding maxima, both pad
    /// values: every row equals the element-wise rule, and the kernel did take them where the
    /// CPU has AVX-512 (a visible skip where it does not).
    #[test]
    fn the_byte_kernel_equals_the_element_wise_rule() {
        #[cfg(nitro_x86_simd)]
        let here = crate::kernels::cpu::Isa::Avx512Vnni.detected();
        #[cfg(not(nitro_x86_simd))]
        let here = false;
        if !here {
            std::eprintln!("SKIPPED: AVX-512 byte max pooling not tested: this CPU lacks AVX-512 (the loop is)");
        }
        let mut r = Pcg32::new(5, 9);
        for kw in [1usize, 2, 4, 8, 16] {
            for kh in [1usize, 2, 3, 4, 8, 9, 255] {
                for pw in [0, kw / 2, kw.saturating_sub(1)] {
                    let ph = r.below(kh as u32 / 2 + 1) as usize;
                    let wo = 64 / kw - r.below(2) as usize;
                    let w = (wo * kw).saturating_sub(2 * pw).max(1) + r.below(kw as u32) as usize;
                    let h = if kh == 255 {
                        260
                    } else {
                        kh + r.below(10) as usize
                    };
                    let xv: Vec<i8> = (0..2 * h * w)
                        .map(|_| [-128i8, -5, 0, 0, 3, 127][r.below(6) as usize])
                        .collect();
                    let (ho, wo) = ((h + 2 * ph - kh) / kh + 1, (w + 2 * pw - kw) / kw + 1);
                    let g = Windows {
                        kernel: (kh, kw),
                        padding: (ph, pw),
                    };
                    let p = Plane { base: h * w, h, w };
                    #[cfg(nitro_x86_simd)]
                    assert_eq!(
                        bytes::usable(p, g),
                        here && wo * kw <= 64 && (kh, kw) != (2, 2),
                        "{kh}×{kw}, {w} wide"
                    );
                    for pad in [i8::MIN, 0] {
                        let (mut o, mut a) =
                            (alloc::vec![0i8; ho * wo], alloc::vec![0usize; ho * wo]);
                        plane_bytes(&xv, p, g, pad, &mut o, &mut a);
                        let got: Vec<(i8, usize)> = o.into_iter().zip(a).collect();
                        for (oi, got) in got.chunks_exact(wo).enumerate() {
                            assert_eq!(
                                got,
                                oracle(&xv, p, g, oi, wo, pad),
                                "kernel {kh}×{kw}, padding {ph}×{pw}, {h}×{w}, row {oi}, pad {pad}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The 2×2 byte kernel itself (its first-use check would hide a wrong one behind the
    /// loop): every output count up to 70, odd widths, every byte value, against the rule;
    /// and the dispatch takes it where the CPU has AVX-512.
    #[cfg(nitro_x86_simd)]
    #[test]
    fn the_2x2_byte_kernel_takes_each_windows_maximum() {
        if !crate::kernels::cpu::Isa::Avx512Vnni.detected() {
            std::eprintln!(
                "SKIPPED: AVX-512 2×2 byte max pooling not tested: this CPU lacks AVX-512"
            );
            return;
        }
        assert!(bytes::values_usable());
        let mut r = Pcg32::new(8, 1);
        for n in 0..70usize {
            let w = 2 * n + r.below(2) as usize;
            let rows: Vec<i8> = (0..2 * w).map(|_| r.next_u32() as i8).collect();
            let (r0, r1) = rows.split_at(w);
            let mut got = alloc::vec![0x55i8; n];
            // SAFETY: AVX-512 F and BW detected above.
            unsafe { crate::kernels::x86::avx512::max2x2_row_bytes(r0, r1, &mut got) };
            let want: Vec<i8> = (0..n)
                .map(|j| {
                    r0[2 * j]
                        .max(r0[2 * j + 1])
                        .max(r1[2 * j])
                        .max(r1[2 * j + 1])
                })
                .collect();
            assert_eq!(got, want, "{n} outputs, width {w}");
        }
    }
}
