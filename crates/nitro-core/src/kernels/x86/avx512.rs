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
