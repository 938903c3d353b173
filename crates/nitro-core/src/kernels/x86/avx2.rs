//! AVX2 kernels: the pair engine's micro-kernel (`vpmaddwd` + `vpaddd`, 256-bit) and the
//! `i32` engine's dot-product tile (`vpmulld` + `vpaddd`).

use crate::kernels::tile::{Tile, MR, NR};
use core::arch::x86_64::*;

/// The pair engine's `MR×NR` micro-tile from one A panel `ap` (`len·MR` words) and one B panel
/// `bp` (`len·NR` words): per pair, each A word broadcast, `vpmaddwd` with the two B vectors and
/// `vpaddd` into twelve `i32` accumulators; then stored or added into C as `i64`.
///
/// # Safety
/// The CPU must have AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn micro_pairs(ap: &[u32], bp: &[u32], c: &mut [i64], t: Tile) {
    // SAFETY: AVX2 is enabled here (the closure and the inlined body inherit it).
    unsafe {
        micro_ymm(ap, bp, c, t, |acc, w, b| {
            _mm256_add_epi32(acc, _mm256_madd_epi16(w, b))
        })
    }
}

/// The 256-bit micro-kernel body, generic over the pair multiply-add `mac(acc, a, b)` (AVX2's
/// `vpmaddwd`+`vpaddd`, AVX-VNNI's `vpdpwssd`): always inlined into a function that enables
/// the instructions `mac` uses.
///
/// # Safety
/// The caller must enable AVX2 and whatever `mac` needs.
#[inline(always)]
pub(crate) unsafe fn micro_ymm(
    ap: &[u32],
    bp: &[u32],
    c: &mut [i64],
    t: Tile,
    mac: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
) {
    let len = ap.len() / MR;
    assert!(bp.len() >= len * NR && t.rows <= MR && t.cols <= NR);
    assert!(t.rows == 0 || c.len() >= (t.rows - 1) * t.ldc + t.cols);
    // SAFETY (the block): q < len; B holds NR = 16 words (two vectors) per pair, A holds MR
    // words; AVX2 is enabled by the caller.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        let (pa, pb) = (ap.as_ptr(), bp.as_ptr());
        for q in 0..len {
            let b0 = _mm256_loadu_si256(pb.add(q * NR) as *const __m256i);
            let b1 = _mm256_loadu_si256(pb.add(q * NR + 8) as *const __m256i);
            for (r, accr) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_epi32(*pa.add(q * MR + r) as i32);
                accr[0] = mac(accr[0], w, b0);
                accr[1] = mac(accr[1], w, b1);
            }
        }
        store_ymm(&acc, c, t)
    }
}

/// Store (first K block) or add twelve `i32` accumulators (`MR` rows of two vectors) into the
/// live part of C, widened to `i64`. Shared by the AVX2 and AVX-VNNI micro-kernels.
///
/// # Safety
/// The CPU must have AVX2; `c` must hold `t.rows` rows of `t.cols` entries at stride `t.ldc`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn store_ymm(acc: &[[__m256i; 2]; MR], c: &mut [i64], t: Tile) {
    if t.cols == NR {
        for (r, accr) in acc.iter().enumerate().take(t.rows) {
            // SAFETY: row r < rows has NR = 16 columns in C (the caller's contract).
            unsafe {
                let cp = c.as_mut_ptr().add(r * t.ldc);
                for (h, &v) in accr.iter().enumerate() {
                    let lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
                    let hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(v));
                    let p0 = cp.add(8 * h) as *mut __m256i;
                    let p1 = cp.add(8 * h + 4) as *mut __m256i;
                    if t.first {
                        _mm256_storeu_si256(p0, lo);
                        _mm256_storeu_si256(p1, hi);
                    } else {
                        _mm256_storeu_si256(p0, _mm256_add_epi64(_mm256_loadu_si256(p0), lo));
                        _mm256_storeu_si256(p1, _mm256_add_epi64(_mm256_loadu_si256(p1), hi));
                    }
                }
            }
        }
        return;
    }
    let mut tile = [[0i32; NR]; MR];
    for (row, accr) in tile.iter_mut().zip(acc) {
        // SAFETY: each row of `tile` holds exactly 16 i32 = two vectors.
        unsafe {
            _mm256_storeu_si256(row.as_mut_ptr() as *mut __m256i, accr[0]);
            _mm256_storeu_si256(row.as_mut_ptr().add(8) as *mut __m256i, accr[1]);
        }
    }
    crate::kernels::tile::store_tile(&tile, c, t);
}

/// The `i32` engine's tile: the 2×4 dot products of two rows of A with four rows of B (equal
/// lengths), every partial sum proven to fit `i32` by the caller.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn tile_i32(a: [&[i32]; 2], b: [&[i32]; 4]) -> [[i32; 4]; 2] {
    let n = a[0].len();
    let mut acc = [[_mm256_setzero_si256(); 4]; 2];
    let mut t = 0;
    while t + 8 <= n {
        // SAFETY: t + 8 ≤ n, the length of every slice (unaligned loads).
        let va: [__m256i; 2] = core::array::from_fn(|r| unsafe {
            _mm256_loadu_si256(a[r].as_ptr().add(t) as *const __m256i)
        });
        for (c, bc) in b.iter().enumerate() {
            // SAFETY: as above.
            let vb = unsafe { _mm256_loadu_si256(bc.as_ptr().add(t) as *const __m256i) };
            acc[0][c] = _mm256_add_epi32(acc[0][c], _mm256_mullo_epi32(va[0], vb));
            acc[1][c] = _mm256_add_epi32(acc[1][c], _mm256_mullo_epi32(va[1], vb));
        }
        t += 8;
    }
    let mut out = [[0i32; 4]; 2];
    for r in 0..2 {
        for c in 0..4 {
            let mut lanes = [0i32; 8];
            // SAFETY: `lanes` holds exactly 32 bytes.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc[r][c]) };
            let mut s: i32 = lanes.iter().sum();
            for u in t..n {
                s += a[r][u] * b[c][u];
            }
            out[r][c] = s;
        }
    }
    out
}

/// The AVX2 form of `avx512::sparse_chunk` (`vpmaddwd ymm` + `vpaddd`): `R·16` sums. Exact
/// when every partial sum fits `i32` (the caller's proof; a pair sum of two `i16` products
/// within a proven run fits too).
///
/// # Safety
/// AVX2; `xt` holds `R·16` words from `s + off` for every pair start `s`; `acc` holds `R·16`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn sparse_chunk<const R: usize>(
    xt: &[i16],
    pairs: &[(usize, usize, i32)],
    off: usize,
    acc: &mut [i32],
) {
    debug_assert!(acc.len() == R * 16);
    let px = xt.as_ptr();
    let pa = acc.as_mut_ptr();
    // After vpunpck{l,h}wd, `lo` holds words 0–3 and 8–11 of a 16-word chunk, `hi` words 4–7
    // and 12–15; vperm2i128 moves the 128-bit halves between that order and memory order.
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    for r in 0..R {
        // SAFETY: acc holds R·16 sums.
        unsafe {
            let a0 = _mm256_loadu_si256(pa.add(16 * r) as *const _);
            let a1 = _mm256_loadu_si256(pa.add(16 * r + 8) as *const _);
            lo[r] = _mm256_permute2x128_si256::<0x20>(a0, a1);
            hi[r] = _mm256_permute2x128_si256::<0x31>(a0, a1);
        }
    }
    for &(s1, s2, w) in pairs {
        let w = _mm256_set1_epi32(w);
        for r in 0..R {
            // SAFETY: both runs hold R·16 words from s + off (caller).
            unsafe {
                let x1 = _mm256_loadu_si256(px.add(s1 + off + 16 * r) as *const _);
                let x2 = _mm256_loadu_si256(px.add(s2 + off + 16 * r) as *const _);
                let l = _mm256_madd_epi16(_mm256_unpacklo_epi16(x1, x2), w);
                let h = _mm256_madd_epi16(_mm256_unpackhi_epi16(x1, x2), w);
                lo[r] = _mm256_add_epi32(lo[r], l);
                hi[r] = _mm256_add_epi32(hi[r], h);
            }
        }
    }
    for r in 0..R {
        // SAFETY: acc holds R·16 sums.
        unsafe {
            let a0 = _mm256_permute2x128_si256::<0x20>(lo[r], hi[r]);
            let a1 = _mm256_permute2x128_si256::<0x31>(lo[r], hi[r]);
            _mm256_storeu_si256(pa.add(16 * r) as *mut _, a0);
            _mm256_storeu_si256(pa.add(16 * r + 8) as *mut _, a1);
        }
    }
}
