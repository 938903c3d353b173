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
#[inline]
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
#[inline]
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

/// An element type whose rows [`pack_panel16`] reads: 32 consecutive values as the 16 pair
/// words `(v[2j], v[2j+1])` (even term in the low half) of one 512-bit vector.
pub(crate) trait PairRow: Copy + 'static {
    /// The 16 pair words of the 32 values at `p`.
    ///
    /// # Safety
    /// AVX-512 F and BW; `p` must point at 32 readable values, each within ±32767 (the
    /// narrowing to `i16` of `i32` values is a truncation, exact in that range).
    unsafe fn words(p: *const Self) -> __m512i;
}

impl PairRow for i8 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn words(p: *const i8) -> __m512i {
        // SAFETY: 32 bytes readable (caller); the instruction sets are enabled by the caller.
        unsafe { _mm512_cvtepi8_epi16(_mm256_loadu_si256(p as *const _)) }
    }
}

impl PairRow for i16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn words(p: *const i16) -> __m512i {
        // SAFETY: 64 bytes readable (caller).
        unsafe { _mm512_loadu_si512(p as *const _) }
    }
}

impl PairRow for i32 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn words(p: *const i32) -> __m512i {
        // SAFETY: 128 bytes readable (caller); each value fits i16, so truncating is exact.
        unsafe {
            let lo = _mm512_cvtepi32_epi16(_mm512_loadu_si512(p as *const _));
            let hi = _mm512_cvtepi32_epi16(_mm512_loadu_si512(p.add(16) as *const _));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        }
    }
}

/// The first `pairs` pairs (a multiple of 16) of a B panel ([`NR`] = 16 rows, the layout of
/// `gemm::pack`): `dst[q·16 + r]` = row `r`'s pair word `q`. Sixteen rows' words for 16 pairs
/// are loaded as a 16×16 matrix of `u32` and transposed in registers (four rounds of 16
/// shuffles), so each pair's 16 lanes are one store — instead of one store per word.
///
/// # Safety
/// The CPU must have AVX-512 F and BW; every value in the first `2·pairs` of each row must be
/// within ±32767.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn pack_panel16<T: PairRow>(rows: &[&[T]], pairs: usize, dst: &mut [u32]) {
    assert!(rows.len() == NR && pairs.is_multiple_of(16) && dst.len() >= pairs * NR);
    assert!(rows.iter().all(|r| r.len() >= 2 * pairs));
    let mut q0 = 0;
    while q0 < pairs {
        // SAFETY: each row holds 2·pairs ≥ 2·q0 + 32 values (asserted); the destination holds
        // pairs·16 ≥ (q0 + 16)·16 words.
        unsafe {
            let m: [__m512i; 16] = core::array::from_fn(|r| T::words(rows[r].as_ptr().add(2 * q0)));
            let t = transpose16(m);
            for (j, v) in t.iter().enumerate() {
                _mm512_storeu_si512(dst.as_mut_ptr().add((q0 + j) * NR) as *mut _, *v);
            }
        }
        q0 += 16;
    }
}

/// A tile of the AMX engine's Quads layout from sixteen rows of 64 bytes: `tile[q·64 + r·4 ..
/// + 4]` = bytes `4q .. 4q + 4` of row `r` — the rows' 4-byte words transposed in registers
/// ([`transpose16`]) and stored a tile row at a time.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn quads16(rows: &[[i8; 64]; 16], tile: &mut [i8]) {
    assert!(tile.len() >= 16 * 64);
    // SAFETY: each row holds 64 bytes; the tile holds 16 rows of 64 (asserted).
    unsafe {
        let m: [__m512i; 16] =
            core::array::from_fn(|r| _mm512_loadu_si512(rows[r].as_ptr() as *const _));
        for (q, v) in transpose16(m).iter().enumerate() {
            _mm512_storeu_si512(tile.as_mut_ptr().add(64 * q) as *mut _, *v);
        }
    }
}

/// `out[q][s] = rows[s][q]`: sixteen rows of at most sixteen `i32` transposed in registers
/// ([`transpose16`]); a row shorter than sixteen reads as zeros past its end (masked loads).
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_i32(rows: &[&[i32]; 16], out: &mut [[i32; 16]; 16]) {
    // SAFETY: each masked load reads only the first `len ≤ 16` values of its row; each store
    // writes one row of `out`.
    unsafe {
        let m: [__m512i; 16] = core::array::from_fn(|s| {
            let len = rows[s].len().min(16);
            let mask = ((1u32 << len) - 1) as u16;
            _mm512_maskz_loadu_epi32(mask, rows[s].as_ptr())
        });
        for (o, v) in out.iter_mut().zip(transpose16(m)) {
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, v);
        }
    }
}

/// The transpose of a 16×16 matrix of `u32` held as 16 row vectors: output `j` holds element
/// `j` of every input, in input order.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(m: [__m512i; 16]) -> [__m512i; 16] {
    // Round 1 (within 128-bit lanes): a[2i] = (m[2i][4L], m[2i+1][4L], m[2i][4L+1], m[2i+1][4L+1])
    // per lane L; a[2i+1] the same for elements 4L+2, 4L+3.
    let a: [__m512i; 16] = core::array::from_fn(|n| {
        let (x, y) = (m[n & !1], m[n | 1]);
        if n % 2 == 0 {
            _mm512_unpacklo_epi32(x, y)
        } else {
            _mm512_unpackhi_epi32(x, y)
        }
    });
    // Round 2: b[4i + c] holds, in lane L, element 4L + c of rows 4i..4i+4.
    let b: [__m512i; 16] = core::array::from_fn(|n| {
        let (i, c) = (n / 4, n % 4);
        let (x, y) = (a[4 * i + c / 2], a[4 * i + 2 + c / 2]);
        if c % 2 == 0 {
            _mm512_unpacklo_epi64(x, y)
        } else {
            _mm512_unpackhi_epi64(x, y)
        }
    });
    // Rounds 3 and 4: per c, a 4×4 transpose of 128-bit lanes across b[c], b[4+c], b[8+c],
    // b[12+c]; output 4L + c is lane L of each, in that order.
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let u0 = _mm512_shuffle_i32x4::<0x44>(b[c], b[4 + c]);
        let u1 = _mm512_shuffle_i32x4::<0xee>(b[c], b[4 + c]);
        let u2 = _mm512_shuffle_i32x4::<0x44>(b[8 + c], b[12 + c]);
        let u3 = _mm512_shuffle_i32x4::<0xee>(b[8 + c], b[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(u0, u2);
        out[4 + c] = _mm512_shuffle_i32x4::<0xdd>(u0, u2);
        out[8 + c] = _mm512_shuffle_i32x4::<0x88>(u1, u3);
        out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(u1, u3);
    }
    out
}

/// The first `pairs` pairs (a multiple of 16) of an A panel ([`MR`] = 6 rows): `dst[q·6 + r]` =
/// row `r`'s pair word `q`. Per 16 pairs the six rows' word vectors are interleaved into six
/// output vectors, each by three two-source permutes and two blends (constant indices:
/// [`A_IDX`], [`A_FROM23`], [`A_FROM45`]).
///
/// # Safety
/// The CPU must have AVX-512 F and BW; every value in the first `2·pairs` of each row must be
/// within ±32767.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn pack_panel6<T: PairRow>(rows: &[&[T]], pairs: usize, dst: &mut [u32]) {
    assert!(rows.len() == MR && pairs.is_multiple_of(16) && dst.len() >= pairs * MR);
    assert!(rows.iter().all(|r| r.len() >= 2 * pairs));
    let mut q0 = 0;
    while q0 < pairs {
        // SAFETY: as in `pack_panel16`, with MR words per pair.
        unsafe {
            let m: [__m512i; MR] = core::array::from_fn(|r| T::words(rows[r].as_ptr().add(2 * q0)));
            for o in 0..MR {
                let idx = _mm512_loadu_si512(A_IDX[o].as_ptr() as *const _);
                let t01 = _mm512_permutex2var_epi32(m[0], idx, m[1]);
                let t23 = _mm512_permutex2var_epi32(m[2], idx, m[3]);
                let t45 = _mm512_permutex2var_epi32(m[4], idx, m[5]);
                let t = _mm512_mask_blend_epi32(A_FROM23[o], t01, t23);
                let t = _mm512_mask_blend_epi32(A_FROM45[o], t, t45);
                _mm512_storeu_si512(dst.as_mut_ptr().add(q0 * MR + 16 * o) as *mut _, t);
            }
        }
        q0 += 16;
    }
}

/// Output word `e` of vector `o` of [`pack_panel6`] is pair `q = p / 6` of row `r = p % 6`
/// (`p = 16·o + e`): index `q` into the first of two rows `(2i, 2i+1)` with `r = 2i`, `16 + q`
/// with `r = 2i + 1`.
const A_IDX: [[u32; 16]; MR] = {
    let mut t = [[0u32; 16]; MR];
    let mut p = 0;
    while p < 16 * MR {
        t[p / 16][p % 16] = (p / MR + 16 * (p % MR % 2)) as u32;
        p += 1;
    }
    t
};

/// The words of each output vector of [`pack_panel6`] from rows 2 or 3.
const A_FROM23: [u16; MR] = a_rows_mask(2);
/// The words of each output vector of [`pack_panel6`] from rows 4 or 5.
const A_FROM45: [u16; MR] = a_rows_mask(4);

const fn a_rows_mask(first: usize) -> [u16; MR] {
    let mut k = [0u16; MR];
    let mut p = 0;
    while p < 16 * MR {
        let r = p % MR;
        if r == first || r == first + 1 {
            k[p / 16] |= 1 << (p % 16);
        }
        p += 1;
    }
    k
}

/// The branch-free IntegerSGD pass of `kernels::sgd` (`Plan::fast` on every parameter), eight
/// per step, over the first `⌊n/8⌋·8` entries of equal-length slices (the caller does the
/// tail): each new value, truncated to `i32`, into `out`; returns the OR of every `|P|` and
/// `|G|` (as `u64`) and the OR of every `v + 2³¹` (wrapping, as `u64`), the loop's two flags.
///
/// Each division is one `vpmuludq` and one shift by the divisor's multiplier and shift
/// (`arith::DivU31`), on the low 32 bits of `|x|` as `DivU31::div` reads it, and the signs are
/// restored by masked adds: every lane holds `Plan::fast`'s integer for every input, so the
/// flags and stored values are the portable pass's bit for bit (`kernels::sgd` checks that at
/// first use).
///
/// # Safety
/// AVX-512 F; `params`, `grads` and `out` have equal lengths.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sgd_fast(
    params: &[i32],
    grads: &[i64],
    out: &mut [i32],
    grad_div: (u32, u32),
    decay_div: (u32, u32),
) -> (u64, u64) {
    assert!(params.len() == grads.len() && params.len() == out.len());
    let steps = params.len() / 8;
    let recip = |(m, s): (u32, u32)| {
        (
            _mm512_set1_epi64(i64::from(m)),
            _mm_set_epi64x(0, i64::from(s)),
        )
    };
    let (mg, sg) = recip(grad_div);
    let (mp, sp) = recip(decay_div);
    let zero = _mm512_setzero_si512();
    let bias = _mm512_set1_epi64(1 << 31);
    let (mut wide, mut shifted) = (zero, zero);
    let (pp, pg, po) = (params.as_ptr(), grads.as_ptr(), out.as_mut_ptr());
    for i in 0..steps {
        // SAFETY: 8·i + 8 ≤ len for all three slices.
        unsafe {
            let p = _mm512_cvtepi32_epi64(_mm256_loadu_si256(pp.add(8 * i) as *const __m256i));
            let g = _mm512_loadu_si512(pg.add(8 * i) as *const _);
            let (ap, ag) = (_mm512_abs_epi64(p), _mm512_abs_epi64(g));
            wide = _mm512_ternarylogic_epi64::<0xFE>(wide, ap, ag);
            let qp = _mm512_srl_epi64(_mm512_mul_epu32(ap, mp), sp);
            let qg = _mm512_srl_epi64(_mm512_mul_epu32(ag, mg), sg);
            // P − tdiv(P, ·): subtract ⌊|P|/·⌋ where P ≥ 0, add it where P < 0; then G's term.
            let kept = _mm512_mask_add_epi64(
                _mm512_sub_epi64(p, qp),
                _mm512_cmplt_epi64_mask(p, zero),
                p,
                qp,
            );
            let v = _mm512_mask_add_epi64(
                _mm512_sub_epi64(kept, qg),
                _mm512_cmplt_epi64_mask(g, zero),
                kept,
                qg,
            );
            shifted = _mm512_or_si512(shifted, _mm512_add_epi64(v, bias));
            _mm256_storeu_si256(po.add(8 * i) as *mut __m256i, _mm512_cvtepi64_epi32(v));
        }
    }
    (
        _mm512_reduce_or_epi64(wide) as u64,
        _mm512_reduce_or_epi64(shifted) as u64,
    )
}

/// `dst[i] = table[src[i] as u8]` (equal lengths) 64 values at a time: entries 0–127 and
/// 128–255 each by a two-table byte permute on index bits 0–6, then bit 7 picks. The tail goes
/// to `rest` (the portable loop).
///
/// # Safety
/// AVX-512 F, BW and VBMI must be available.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) unsafe fn lookup_vbmi(
    src: &[i8],
    dst: &mut [i8],
    table: &[i8; 256],
    rest: fn(&[i8], &mut [i8], &[i8; 256]),
) {
    let t = table.as_ptr();
    // SAFETY: the table holds 4 × 64 bytes.
    let (t0, t1, t2, t3) = unsafe {
        (
            _mm512_loadu_si512(t as *const _),
            _mm512_loadu_si512(t.add(64) as *const _),
            _mm512_loadu_si512(t.add(128) as *const _),
            _mm512_loadu_si512(t.add(192) as *const _),
        )
    };
    let (mut d, mut s) = (dst.chunks_exact_mut(64), src.chunks_exact(64));
    for (d, s) in (&mut d).zip(&mut s) {
        // SAFETY: both chunks hold 64 bytes.
        unsafe {
            let x = _mm512_loadu_si512(s.as_ptr() as *const _);
            let low = _mm512_permutex2var_epi8(t0, x, t1);
            let high = _mm512_permutex2var_epi8(t2, x, t3);
            let y = _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), low, high);
            _mm512_storeu_si512(d.as_mut_ptr() as *mut _, y);
        }
    }
    rest(s.remainder(), d.into_remainder(), table);
}

/// Channels per block of [`transpose_bytes16`].
pub(crate) const TRANSPOSE_CHANNELS: usize = 16;

/// The permute indices of [`transpose_bytes16`]'s output vector `k`: byte `16·pq + ch` takes
/// byte `16·(ch % 4) + 4k + pq` of the first source (channels 0–3 of either half) or, with bit
/// 6 set, of the second (channels 4–7).
const TRANSPOSE_INDEX: [[i8; 64]; 4] = {
    let mut t = [[0i8; 64]; 4];
    let mut k = 0;
    while k < 4 {
        let mut b = 0;
        while b < 64 {
            let (pq, ch) = (b / 16, b % 8);
            t[k][b] = (((ch / 4) << 6) | (16 * (ch % 4) + 4 * k + pq)) as i8;
            b += 1;
        }
        k += 1;
    }
    t
};

/// Sixteen channels × up to sixteen positions of `i8` values, transposed and widened: byte
/// `src[ch·plane + q]` (channel `ch < 16`, position `q < positions`) becomes the word
/// `dst[q·stride + ch]`. Four channels' sixteen bytes share a vector; two-source byte permutes
/// (`vpermt2b`) gather each output vector's four positions of sixteen channels from channels
/// 0–7 and 8–15, which are then widened and stored one position (32 bytes) at a time. Only
/// the `positions` bytes of each channel are read and only their words written.
///
/// # Safety
/// AVX-512 F, BW, VL and VBMI must be available; `src` must hold `15·plane + positions` bytes
/// and `dst` `(positions − 1)·stride + 16` words (`positions` in `1..=16`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
pub(crate) unsafe fn transpose_bytes16(
    src: &[i8],
    plane: usize,
    positions: usize,
    dst: &mut [i16],
    stride: usize,
) {
    assert!((1..=16).contains(&positions));
    assert!(src.len() >= 15 * plane + positions);
    assert!(dst.len() >= (positions - 1) * stride + TRANSPOSE_CHANNELS);
    let mask: __mmask16 = (1u32 << positions).wrapping_sub(1) as u16;
    let (ps, pd) = (src.as_ptr(), dst.as_mut_ptr());
    // SAFETY: every load reads `positions` bytes of a channel row inside `src`, every store
    // writes sixteen words of a position inside `dst` (asserted above).
    unsafe {
        let row = |ch: usize| _mm_maskz_loadu_epi8(mask, ps.add(ch * plane) as *const _);
        // z[g]: channels 4g..4g+4, 16 bytes (positions) each: byte 16·(ch % 4) + q.
        let z: [__m512i; 4] = core::array::from_fn(|g| {
            let v = _mm512_castsi128_si512(row(4 * g));
            let v = _mm512_inserti32x4::<1>(v, row(4 * g + 1));
            let v = _mm512_inserti32x4::<2>(v, row(4 * g + 2));
            _mm512_inserti32x4::<3>(v, row(4 * g + 3))
        });
        // Output vector k: positions 4k..4k+4, byte 16·(q − 4k) + ch. For channel ch the
        // source byte is 16·(ch % 4) + q of z[ch / 4]; a permute of (z0, z1) gives channels
        // 0–7 and the same indices on (z2, z3) channels 8–15 (bit 6 picks the second source).
        let high_channels: __mmask64 = 0xff00_ff00_ff00_ff00;
        for (k, idx) in TRANSPOSE_INDEX
            .iter()
            .enumerate()
            .take(positions.div_ceil(4))
        {
            let idx = _mm512_loadu_si512(idx.as_ptr() as *const _);
            let lo = _mm512_permutex2var_epi8(z[0], idx, z[1]);
            let hi = _mm512_permutex2var_epi8(z[2], idx, z[3]);
            let out = _mm512_mask_blend_epi8(high_channels, lo, hi);
            // Positions 4k, 4k+1 in the low 32 bytes, 4k+2, 4k+3 in the high ones.
            let halves = [
                _mm512_cvtepi8_epi16(_mm512_castsi512_si256(out)),
                _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(out)),
            ];
            for (h, w) in halves.into_iter().enumerate() {
                for (e, words) in [_mm512_castsi512_si256(w), _mm512_extracti64x4_epi64::<1>(w)]
                    .into_iter()
                    .enumerate()
                {
                    let q = 4 * k + 2 * h + e;
                    if q < positions {
                        _mm256_storeu_si256(pd.add(q * stride) as *mut _, words);
                    }
                }
            }
        }
    }
}

/// Window row `r` of [`maxpool_band_bytes`] in a vector: lanes `pw..pw + len` hold the row,
/// the others `padv` (all of them for a padding row, `None`).
///
/// # Safety
/// AVX-512 F and BW must be available; `pw < 64`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn band_row(r: Option<&[i8]>, pw: usize, padv: __m512i) -> __m512i {
    let Some(r) = r else { return padv };
    let end = (pw + r.len()).min(64);
    let upto = if end == 64 {
        u64::MAX
    } else {
        (1u64 << end) - 1
    };
    let mask = upto & !((1u64 << pw) - 1);
    // SAFETY: a masked lane `xe` reads `r[xe − pw]`, inside the row; the others are not read
    // (masked loads suppress them).
    unsafe { _mm512_mask_loadu_epi8(padv, mask, r.as_ptr().wrapping_sub(pw)) }
}

/// One row of max-pooling windows over a plane of bytes (`kernels::maxpool`): the window rows
/// `row(u)` for `u < kh` (a row's input bytes, or `None` for a padding row), padded column
/// `xe` holding input column `xe − pw` (`pad` outside the input), windows `kw` columns wide (a
/// power of two up to 16) over the first 64 padded columns. Each column's maximum over the
/// rows and the first row holding it are kept in two vectors (a row replaces the maximum only
/// where strictly larger); then every column's key `(max + 128) << 16 | (255 − row) << 8 |
/// (255 − column in its window)` — larger for a larger maximum, then an earlier row, then a
/// column further left — is reduced to its window's largest by `log₂ kw` butterfly steps. On
/// return `keys[j·kw]` is window `j`'s winner, for the `wo` windows.
///
/// # Safety
/// AVX-512 F and BW must be available; `kh ≤ 255`, `pw < 64`, `kw` in {1, 2, 4, 8, 16},
/// `wo·kw ≤ 64`.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn maxpool_band_bytes<'a>(
    kh: usize,
    row: impl Fn(usize) -> Option<&'a [i8]>,
    (pw, kw, wo): (usize, usize, usize),
    pad: i8,
    keys: &mut [u32; 64],
) {
    assert!((1..=255).contains(&kh) && pw < 64 && kw.is_power_of_two() && kw <= 16);
    assert!(wo * kw <= 64);
    let padv = _mm512_set1_epi8(pad);
    // SAFETY (both): the instruction sets are this function's.
    let load = |u: usize| unsafe { band_row(row(u), pw, padv) };
    let mut m = load(0);
    let mut first = _mm512_setzero_si512();
    for u in 1..kh {
        let v = load(u);
        let up = _mm512_cmpgt_epi8_mask(v, m);
        m = _mm512_max_epi8(m, v);
        first = _mm512_mask_mov_epi8(first, up, _mm512_set1_epi8(u as i8));
    }
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let ff = _mm512_set1_epi32(255);
    // 255 − (lane mod kw): sixteen is a multiple of kw, so lane i of every group of sixteen
    // columns is column i mod kw of its window.
    let col = _mm512_sub_epi32(ff, _mm512_and_si512(lane, _mm512_set1_epi32(kw as i32 - 1)));
    // The maxima and first rows as bytes, read back sixteen columns at a time for only the
    // groups of sixteen that windows cover.
    let (mut mb, mut fb) = ([0i8; 64], [0i8; 64]);
    // SAFETY: both arrays hold 64 bytes.
    unsafe {
        _mm512_storeu_si512(mb.as_mut_ptr() as *mut _, m);
        _mm512_storeu_si512(fb.as_mut_ptr() as *mut _, first);
    }
    for g in 0..(wo * kw).div_ceil(16) {
        // SAFETY: group g is bytes 16g..16g + 16 of each array (g < 4).
        let (mg, fg) = unsafe {
            (
                _mm_loadu_si128(mb.as_ptr().add(16 * g) as *const _),
                _mm_loadu_si128(fb.as_ptr().add(16 * g) as *const _),
            )
        };
        let value = _mm512_add_epi32(_mm512_cvtepi8_epi32(mg), _mm512_set1_epi32(128));
        let rank = _mm512_sub_epi32(ff, _mm512_cvtepu8_epi32(fg));
        let mut key = _mm512_or_si512(
            _mm512_or_si512(_mm512_slli_epi32::<16>(value), _mm512_slli_epi32::<8>(rank)),
            col,
        );
        let mut s = 1;
        while s < kw {
            let partner = _mm512_xor_si512(lane, _mm512_set1_epi32(s as i32));
            key = _mm512_max_epu32(key, _mm512_permutexvar_epi32(partner, key));
            s *= 2;
        }
        // SAFETY: keys holds 64 values; group g is 16 of them.
        unsafe { _mm512_storeu_si512(keys.as_mut_ptr().add(16 * g) as *mut _, key) };
    }
}

/// One output row of 2×2 max pooling (values only) over bytes: `o[j] = max(r0[2j], r0[2j+1],
/// r1[2j], r1[2j+1])`, 32 outputs per step — the two rows' maximum, then each pair of bytes
/// as a 16-bit lane whose two signed halves are compared and narrowed back to a byte.
///
/// # Safety
/// AVX-512 F and BW must be available; `r0` and `r1` hold at least `2·o.len()` bytes.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn max2x2_row_bytes(r0: &[i8], r1: &[i8], o: &mut [i8]) {
    let n = o.len();
    assert!(r0.len() >= 2 * n && r1.len() >= 2 * n);
    for j0 in (0..n).step_by(32) {
        let count = (n - j0).min(32);
        let inputs = if count == 32 {
            u64::MAX
        } else {
            (1u64 << (2 * count)) - 1
        };
        let outputs = (1u64 << count) - 1;
        // SAFETY: the masks cover `2·count` bytes of each row from `2·j0` and `count` outputs
        // from `j0`, all inside the slices (asserted above).
        unsafe {
            let a = _mm512_maskz_loadu_epi8(inputs, r0.as_ptr().add(2 * j0));
            let b = _mm512_maskz_loadu_epi8(inputs, r1.as_ptr().add(2 * j0));
            let m = _mm512_max_epi8(a, b);
            let even = _mm512_srai_epi16::<8>(_mm512_slli_epi16::<8>(m));
            let odd = _mm512_srai_epi16::<8>(m);
            let v = _mm512_cvtepi16_epi8(_mm512_max_epi16(even, odd));
            _mm512_mask_storeu_epi8(o.as_mut_ptr().add(j0), outputs, _mm512_castsi256_si512(v));
        }
    }
}

/// A 16×16 byte tile transposed into rows `stride` apart: `dst[q·stride + r] = tile[16·r + q]`
/// — the same permutes as [`transpose_bytes16`] (the tile's rows are its sixteen "channels"),
/// each output vector's four 16-byte lanes stored as four rows. The convolution epilogue's
/// position-major tile of sixteen filters becomes sixteen filter rows of the NCHW output.
///
/// # Safety
/// AVX-512 F, BW, VL and VBMI must be available; `dst` holds `15·stride + 16` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
pub(crate) unsafe fn transpose_tile16(tile: &[i8; 256], dst: &mut [i8], stride: usize) {
    assert!(dst.len() >= 15 * stride + 16);
    let (pt, pd) = (tile.as_ptr(), dst.as_mut_ptr());
    // SAFETY: the tile holds 4 × 64 bytes; every store writes 16 bytes of a row inside `dst`
    // (asserted above).
    unsafe {
        let z: [__m512i; 4] =
            core::array::from_fn(|g| _mm512_loadu_si512(pt.add(64 * g) as *const _));
        let high_rows: __mmask64 = 0xff00_ff00_ff00_ff00;
        for (k, idx) in TRANSPOSE_INDEX.iter().enumerate() {
            let idx = _mm512_loadu_si512(idx.as_ptr() as *const _);
            let lo = _mm512_permutex2var_epi8(z[0], idx, z[1]);
            let hi = _mm512_permutex2var_epi8(z[2], idx, z[3]);
            let out = _mm512_mask_blend_epi8(high_rows, lo, hi);
            let q = 4 * k;
            _mm_storeu_si128(pd.add(q * stride) as *mut _, _mm512_castsi512_si128(out));
            let l1 = _mm512_extracti32x4_epi32::<1>(out);
            _mm_storeu_si128(pd.add((q + 1) * stride) as *mut _, l1);
            let l2 = _mm512_extracti32x4_epi32::<2>(out);
            _mm_storeu_si128(pd.add((q + 2) * stride) as *mut _, l2);
            let l3 = _mm512_extracti32x4_epi32::<3>(out);
            _mm_storeu_si128(pd.add((q + 3) * stride) as *mut _, l3);
        }
    }
}

/// A filter's weights `C×T` (channel-major: `filter[ch·T + t]`) in tap-major order,
/// `out[t·C + ch]`, for the channels below the last multiple of sixteen (returned): one
/// `vpgatherdd` of sixteen channels per tap, read at stride `T` from the filter (in L1 after the
/// first tap). The caller copies the remaining channels.
///
/// # Safety
/// AVX-512 F; `filter` holds `C·T` values and `out` at least as many; `16·T` fits `i32`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn taps_outer(filter: &[i32], c: usize, t: usize, out: &mut [i32]) -> usize {
    debug_assert!(filter.len() == c * t && out.len() >= c * t);
    // Lane j reads the value T·j words on.
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let idx = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(t as i32));
    let whole = c / 16 * 16;
    let (pf, po) = (filter.as_ptr(), out.as_mut_ptr());
    for tap in 0..t {
        for ch in (0..whole).step_by(16) {
            // SAFETY: the sixteen values read are filter[(ch + j)·T + tap], j < 16, all below
            // C·T; out[tap·C + ch ..][..16] is within C·T (the caller's contract).
            unsafe {
                let v = _mm512_i32gather_epi32::<4>(idx, pf.add(ch * t + tap) as *const _);
                _mm512_storeu_si512(po.add(tap * c + ch) as *mut _, v);
            }
        }
    }
    whole
}
