//! AVX-VNNI (VEX-encoded, 256-bit) kernels: the pair engine's micro-kernel with `vpdpwssd`,
//! which multiplies the `i16` pairs and adds both products into the `i32` lane in one
//! instruction (AVX2 needs `vpmaddwd` + `vpaddd`). For CPUs with VNNI but without AVX-512, and
//! for forcing the 256-bit path on those with both.

use crate::kernels::tile::Tile;
use core::arch::x86_64::*;

/// As [`super::avx2::micro_pairs`], with `vpdpwssd ymm`: the same `i32` lanes, since
/// `vpdpwssd` adds `a0·b0 + a1·b1` to the lane without saturation, exactly as `vpmaddwd`
/// followed by `vpaddd` (the pair sum `|a0·b0 + a1·b1| ≤ 2·32767²` fits `i32`, and the
/// accumulated sum is proven to fit by the caller).
///
/// # Safety
/// The CPU must have AVX2 and AVX-VNNI.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
pub(crate) unsafe fn micro_pairs(ap: &[u32], bp: &[u32], c: &mut [i64], t: Tile) {
    // SAFETY: AVX2 and AVX-VNNI are enabled here (the closure and the inlined body inherit them).
    unsafe { super::avx2::micro_ymm(ap, bp, c, t, |acc, w, b| _mm256_dpwssd_avx_epi32(acc, w, b)) }
}
