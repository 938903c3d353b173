//! AVX-512 VNNI kernels: the pair engine's micro-kernel with `vpdpwssd zmm` — one 512-bit B
//! vector per panel and pair (sixteen `i32` lanes), two panels per tile, so `MR·2` = 12
//! independent accumulators hide the instruction's latency.

use crate::kernels::tile::{store_tile, Tile, MR, NR};
use core::arch::x86_64::*;

/// The `MR × NR·P` micro-tile from one A panel `ap` (`len·MR` words) and `P` B panels
/// (`bps[..P]`, `len·NR` words each; `P` is 1 or 2): per pair, each A word broadcast and
/// `vpdpwssd` with each panel's vector. Each lane holds the same `i32` partial sum as the
/// portable kernel (`vpdpwssd` adds `a0·b0 + a1·b1` without saturation; the caller proved the
/// accumulated sums fit `i32`).
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn micro_pairs<const P: usize>(
    ap: &[u32],
    bps: [&[u32]; 2],
    c: &mut [i64],
    t: Tile,
) {
    let len = ap.len() / MR;
    assert!(P >= 1 && P <= 2 && t.rows <= MR && t.cols <= NR * P);
    assert!(bps.iter().take(P).all(|bp| bp.len() >= len * NR));
    assert!(t.rows == 0 || c.len() >= (t.rows - 1) * t.ldc + t.cols);
    let mut acc = [[_mm512_setzero_si512(); P]; MR];
    let pa = ap.as_ptr();
    let pb: [*const u32; P] = core::array::from_fn(|j| bps[j].as_ptr());
    for q in 0..len {
        // SAFETY: q < len; every B panel holds NR = 16 words (one vector) per pair, A holds MR.
        unsafe {
            let b: [__m512i; P] =
                core::array::from_fn(|j| _mm512_loadu_si512(pb[j].add(q * NR) as *const _));
            for (r, accr) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_epi32(*pa.add(q * MR + r) as i32);
                for (a, &bv) in accr.iter_mut().zip(&b) {
                    *a = _mm512_dpwssd_epi32(*a, w, bv);
                }
            }
        }
    }
    for (j, _) in pb.iter().enumerate() {
        let cols = t.cols.saturating_sub(j * NR).min(NR);
        if cols == 0 {
            continue;
        }
        let sub = Tile { cols, ..t };
        // SAFETY: panel j's columns start at j·NR in C; `sub` covers only live entries.
        unsafe { store_zmm(&acc, j, &mut c[j * NR..], sub) };
    }
}

/// Store (first K block) or add panel `j`'s accumulators (one vector per row) into C as `i64`.
///
/// # Safety
/// The CPU must have AVX-512 F; `c` must hold `t.rows` rows of `t.cols` entries at `t.ldc`.
#[target_feature(enable = "avx512f")]
unsafe fn store_zmm<const P: usize>(acc: &[[__m512i; P]; MR], j: usize, c: &mut [i64], t: Tile) {
    if t.cols == NR {
        for (r, accr) in acc.iter().enumerate().take(t.rows) {
            let v = accr[j];
            // SAFETY: row r < rows has NR = 16 columns in C (the caller's contract).
            unsafe {
                let cp = c.as_mut_ptr().add(r * t.ldc);
                let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
                let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(v));
                let (p0, p1) = (cp as *mut __m512i, cp.add(8) as *mut __m512i);
                if t.first {
                    _mm512_storeu_si512(p0 as *mut _, lo);
                    _mm512_storeu_si512(p1 as *mut _, hi);
                } else {
                    let s0 = _mm512_add_epi64(_mm512_loadu_si512(p0 as *const _), lo);
                    let s1 = _mm512_add_epi64(_mm512_loadu_si512(p1 as *const _), hi);
                    _mm512_storeu_si512(p0 as *mut _, s0);
                    _mm512_storeu_si512(p1 as *mut _, s1);
                }
            }
        }
        return;
    }
    let mut tile = [[0i32; NR]; MR];
    for (row, accr) in tile.iter_mut().zip(acc) {
        // SAFETY: each row of `tile` holds exactly 16 i32 = one vector.
        unsafe { _mm512_storeu_si512(row.as_mut_ptr() as *mut _, accr[j]) };
    }
    store_tile(&tile, c, t);
}

/// `acc += Σ d·x` for `R·32` consecutive sums (`vpdpwssd zmm`): each pair `(s1, s2, w)` is two
/// entries whose words at `s + off ..` are multiplied with the two words of `w` (low word for
/// `s1`, high for `s2`). The pair's words are interleaved (`vpunpck{l,h}wd`), so one instruction
/// adds 32 products; the `R·32` sums stay in registers across all pairs, in an interleaved lane
/// order undone when they are stored. Exact when every partial sum fits `i32`, which the caller
/// proves (`vpdpwssd` does not saturate). The row loop around it is `kernels::sparse`'s.
///
/// # Safety
/// AVX-512 F, BW and VNNI; `xt` holds `R·32` words from `s + off` for every pair start `s`;
/// `acc` holds `R·32` sums.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn sparse_chunk<const R: usize>(
    xt: &[i16],
    pairs: &[(usize, usize, i32)],
    off: usize,
    acc: &mut [i32],
) {
    debug_assert!(acc.len() == R * 32);
    let px = xt.as_ptr();
    let pa = acc.as_mut_ptr();
    // Lane order after vpunpck{l,h}wd: `lo` holds words 0–3, 8–11, 16–19, 24–27 of a 32-word
    // chunk, `hi` words 4–7, 12–15, 20–23, 28–31. These 64-bit index vectors move 128-bit
    // groups between that order and memory order.
    let to_lo = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13);
    let to_hi = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
    let to_a0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    let to_a1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    let mut lo = [_mm512_setzero_si512(); R];
    let mut hi = [_mm512_setzero_si512(); R];
    for r in 0..R {
        // SAFETY: acc holds R·32 sums.
        unsafe {
            let a0 = _mm512_loadu_si512(pa.add(32 * r) as *const _);
            let a1 = _mm512_loadu_si512(pa.add(32 * r + 16) as *const _);
            lo[r] = _mm512_permutex2var_epi64(a0, to_lo, a1);
            hi[r] = _mm512_permutex2var_epi64(a0, to_hi, a1);
        }
    }
    for &(s1, s2, w) in pairs {
        let w = _mm512_set1_epi32(w);
        for r in 0..R {
            // SAFETY: both runs hold R·32 words from s + off (caller).
            unsafe {
                let x1 = _mm512_loadu_si512(px.add(s1 + off + 32 * r) as *const _);
                let x2 = _mm512_loadu_si512(px.add(s2 + off + 32 * r) as *const _);
                lo[r] = _mm512_dpwssd_epi32(lo[r], _mm512_unpacklo_epi16(x1, x2), w);
                hi[r] = _mm512_dpwssd_epi32(hi[r], _mm512_unpackhi_epi16(x1, x2), w);
            }
        }
    }
    for r in 0..R {
        // SAFETY: acc holds R·32 sums.
        unsafe {
            let a0 = _mm512_permutex2var_epi64(lo[r], to_a0, hi[r]);
            let a1 = _mm512_permutex2var_epi64(lo[r], to_a1, hi[r]);
            _mm512_storeu_si512(pa.add(32 * r) as *mut _, a0);
            _mm512_storeu_si512(pa.add(32 * r + 16) as *mut _, a1);
        }
    }
}
