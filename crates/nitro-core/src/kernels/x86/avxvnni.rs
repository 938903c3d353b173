//! AVX-VNNI (VEX-encoded, 256-bit) kernels: the pair engine's micro-kernel with `vpdpwssd`,
//! which multiplies the `i16` pairs and adds both products into the `i32` lane in one
//! instruction (AVX2 needs `vpmaddwd` + `vpaddd`). For CPUs with VNNI but without AVX-512, and
//! for forcing the 256-bit path on those with both.

use crate::kernels::tile::{Tile, MR, NR};
use core::arch::x86_64::*;

/// As [`super::avx2::micro_pairs`], with `vpdpwssd ymm`: the same `i32` lanes, since
/// `vpdpwssd` adds `a0·b0 + a1·b1` to the lane without saturation, exactly as `vpmaddwd`
/// followed by `vpaddd` (the pair sum `|a0·b0 + a1·b1| ≤ 2·32767²` fits `i32`, and the
/// accumulated sum is proven to fit by the caller).
///
/// # Safety
/// The CPU must have AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
pub(crate) unsafe fn micro_pairs(ap: &[u32], bp: &[u32], c: &mut [i64], t: Tile) {
    let len = ap.len() / MR;
    assert!(bp.len() >= len * NR && t.rows <= MR && t.cols <= NR);
    assert!(t.rows == 0 || c.len() >= (t.rows - 1) * t.ldc + t.cols);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    let (pa, pb) = (ap.as_ptr(), bp.as_ptr());
    for q in 0..len {
        // SAFETY: q < len; B holds NR = 16 words (two vectors) per pair, A holds MR words.
        unsafe {
            let b0 = _mm256_loadu_si256(pb.add(q * NR) as *const __m256i);
            let b1 = _mm256_loadu_si256(pb.add(q * NR + 8) as *const __m256i);
            for (r, accr) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_epi32(*pa.add(q * MR + r) as i32);
                accr[0] = _mm256_dpwssd_avx_epi32(accr[0], w, b0);
                accr[1] = _mm256_dpwssd_avx_epi32(accr[1], w, b1);
            }
        }
    }
    // SAFETY: AVX2 is enabled here; the tile was checked above.
    unsafe { super::avx2::store_ymm(&acc, c, t) }
}
