//! The pair engine: `C = A·Bᵀ` from operands packed as pairs of `i16` ([`super::pack`]), cache
//! blocked along `K`, one micro-kernel per instruction set, `i32` accumulators whose width the
//! caller has proven (algorithm.md §10).
//!
//! A micro-kernel computes an [`MR`]` × `[`NR`]`·P` tile of C from one A panel and `P`
//! consecutive B panels: per pair `q` it broadcasts each A word and multiplies it with the B
//! pair-vectors — `vpmaddwd`+`vpaddd` (AVX2) or `vpdpwssd` (AVX-VNNI, AVX-512 VNNI) give, per
//! lane, `a[r][2q]·b[l][2q] + a[r][2q+1]·b[l][2q+1]` added to the lane's `i32` accumulator.
//! Every lane of every path holds the same partial sum as the portable kernel's `i32` at the
//! same point (a sum of `2·kc` terms of one dot product), so all paths give the same `i32`
//! block sums and the same `i64` result.
//!
//! A SIMD path is used only after it has checked itself once, on a small random product, against
//! the portable kernel ([`usable`]); a path that ever disagreed is never used again (with a
//! one-line warning where `std` is available).

use super::pack::{self, Narrow, Packed16};
use crate::kernels::buffers;
use crate::kernels::cpu::Isa;
use crate::kernels::par;
use crate::kernels::tile::{store_tile, Tile, MR, NR};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

/// Pairs of the reduction per cache block: a B micro-panel (`KC·NR·4` bytes = 16 KiB) stays in
/// L1 while the A panels of a group stream past it.
pub(super) const KC: usize = 256;
/// Pairs per K block when C is large (≥ [`C_LARGE`] entries): each block reads and writes all
/// of C once, so fewer, longer blocks save more memory traffic than L1 residency gains.
const KC_LARGE: usize = 640;
/// Entries of C (8 bytes each) from which [`KC_LARGE`] applies (1 MiB: beyond L2).
const C_LARGE: usize = 1 << 17;
/// A panels per L2 group (see [`block`]).
const MC: usize = 24;

/// The most capable micro-kernel not above `cap` that this CPU has and that passed its
/// self-check ([`Isa::Amx`] is the tile engine's, not a micro-kernel of this one).
pub(crate) fn resolve(cap: Isa) -> Isa {
    Isa::ALL
        .into_iter()
        .rev()
        .filter(|&i| i <= cap && i < Isa::Amx && i.detected())
        .find(|&i| usable(i))
        .unwrap_or(Isa::Portable)
}

/// Self-check verdicts per [`Isa`]: 0 not yet checked, 1 agrees with the portable kernel,
/// 2 disagreed (never used again).
static VERDICT: [AtomicU8; Isa::ALL.len()] = [const { AtomicU8::new(0) }; Isa::ALL.len()];

/// Whether `isa`'s kernel agrees with the portable one — for [`Isa::Amx`], the tile engine with
/// exact `i64` products (checked once, at first use; two threads racing here both compute the
/// same verdict). `isa` must be detected.
pub(crate) fn usable(isa: Isa) -> bool {
    if isa == Isa::Portable {
        return true;
    }
    let slot = &VERDICT[isa as usize];
    match slot.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = self_check(isa);
            slot.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            if !ok {
                #[cfg(feature = "std")]
                std::eprintln!(
                    "nitro-core: warning: the {isa} kernel disagreed with the portable kernel \
                     on its self-check; using a slower path"
                );
            }
            ok
        }
    }
}

/// Small products with edge values (±32767, odd sizes crossing every tile edge, several K
/// blocks, so both the storing and the adding epilogue) on `isa` and on the portable kernel:
/// equal? Full-range values with one pair per block, and values ≤ 1000 with 17 pairs per block
/// (`34·1000² < 2³¹`): both within the proof every caller makes.
fn self_check(isa: Isa) -> bool {
    #[cfg(nitro_x86_simd)]
    if isa == Isa::Amx {
        return super::amx::self_check();
    }
    check_once(isa, 32_767, 1) && check_once(isa, 1_000, 17)
}

fn check_once(isa: Isa, bound: i64, kc: usize) -> bool {
    let (m, n, k) = (2 * MR + 1, 3 * NR + 5, 2 * 37 + 1);
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ bound as u64;
    let mut next = move || {
        // xorshift64*: a fixed stream, independent of the crate's RNG.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let v = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as i64;
        match v % 7 {
            0 => bound,
            1 => -bound,
            _ => v % (2 * bound + 1) - bound,
        }
    };
    let a: Vec<i16> = (0..m * k).map(|_| next() as i16).collect();
    let b: Vec<i16> = (0..n * k).map(|_| next() as i16).collect();
    let av = ndarray::ArrayView2::from_shape((m, k), &a).expect("m×k");
    let bv = ndarray::ArrayView2::from_shape((n, k), &b).expect("n×k");
    let (Some(pa), Some(pb)) = (
        pack::pack_a(&av, Narrow::Direct),
        pack::pack_b(&bv, Narrow::Direct),
    ) else {
        return false;
    };
    let ok = gemm16(&pa, &pb, kc, Isa::Portable) == gemm16(&pa, &pb, kc, isa);
    pa.release();
    pb.release();
    ok
}

/// `C = A·Bᵀ` from packed operands on `isa`'s micro-kernel (an [`Isa`] this CPU has, normally
/// from [`resolve`]), `C` row-major `a.rows × b.rows`, each `i32` block covering at most `kc`
/// pairs (`kc ≥ 1`, proven by the caller: `2·kc·max|A|·max|B| ≤ 2³¹−1`).
pub(crate) fn gemm16(a: &Packed16, b: &Packed16, kc: usize, isa: Isa) -> Vec<i64> {
    let (m, n, kp) = (a.rows, b.rows, a.kp);
    debug_assert_eq!(kp, b.kp);
    debug_assert!(kc >= 1);
    // Every entry is stored by the first K block (no zeroing pass), except for an empty K.
    let mut c = buffers::take_dirty::<i64>(m * n);
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
    let per_task = par::rows_per_task(panels_a, 2 * m * n * kp);
    par::for_each_chunk_mut(&mut c, per_task * MR * n, |t, cblock| {
        let rows = cblock.len() / n;
        block_on((a, b, t * per_task, rows, cblock, n, kc), isa);
    });
    c
}

/// C's rows per block handed to a consumer by [`gemm16_each`]: at most this many bytes of
/// `i64` sums (at least one A panel), so that a block is still in L1 or L2 when its consumer
/// reads it.
const EACH_BYTES: usize = 64 << 10;

/// [`gemm16`] without C: each block of C's rows (whole A panels, see [`EACH_BYTES`]) is
/// computed into a scratch buffer and handed to `f(first row, the block's sums row-major,
/// out's rows of that block)` while it is in cache; `out` has one element per entry of C
/// (row-major `a.rows × b.rows`). For a product only read once, by a pass that writes
/// something else of C's shape (a weight gradient that goes straight into IntegerSGD's new
/// weights): its `i64` sums never travel to memory and back. The sums are exactly
/// [`gemm16`]'s (the same micro-kernels and proof; `kc` as there). Returns `f`'s results in
/// row order.
pub(crate) fn gemm16_each<O: Send, R: Send>(
    a: &Packed16,
    b: &Packed16,
    kc: usize,
    isa: Isa,
    out: &mut [O],
    f: impl Fn(usize, &[i64], &mut [O]) -> R + Sync + Send,
) -> Vec<R> {
    let (m, n, kp) = (a.rows, b.rows, a.kp);
    debug_assert_eq!(kp, b.kp);
    assert_eq!(out.len(), m * n, "one output per entry of C");
    if m == 0 || n == 0 {
        return Vec::new();
    }
    if kp == 0 {
        let c = alloc::vec![0i64; m * n];
        return alloc::vec![f(0, &c, out)];
    }
    let kc = kc.clamp(1, KC);
    let kc = kp.div_ceil(kp.div_ceil(kc));
    let panels_a = m.div_ceil(MR);
    let per_task = par::rows_per_task(panels_a, 2 * m * n * kp);
    // A panels per consumer block, never more than a task has.
    let each = (EACH_BYTES / (MR * n * 8)).clamp(1, per_task);
    let mut tasks: Vec<(usize, &mut [O])> = out.chunks_mut(per_task * MR * n).enumerate().collect();
    let per = par::map_mut(&mut tasks, |(t, rows_out)| {
        let p0 = *t * per_task;
        let mut scratch = buffers::take_dirty::<i64>((each * MR * n).min(rows_out.len()));
        let mut results = Vec::new();
        for (g, block_out) in rows_out.chunks_mut(each * MR * n).enumerate() {
            let rows = block_out.len() / n;
            let c = &mut scratch[..rows * n];
            block_on((a, b, p0 + g * each, rows, c, n, kc), isa);
            results.push(f((p0 + g * each) * MR, c, block_out));
        }
        buffers::give(scratch);
        results
    });
    per.into_iter().flatten().collect()
}

/// [`block`] by `isa`'s wrapper (its micro-kernel inlined).
fn block_on(args: BlockArgs<'_>, isa: Isa) {
    #[cfg(nitro_x86_simd)]
    // SAFETY: `isa` is detected on this CPU (the callers' contract).
    match isa {
        Isa::Avx512Vnni => return unsafe { block_avx512(args) },
        Isa::AvxVnni => return unsafe { block_avxvnni(args) },
        Isa::Avx2 => return unsafe { block_avx2(args) },
        Isa::Portable | Isa::Amx => {}
    }
    let _ = isa;
    // The portable kernel, named as a constant: with `isa` itself this copy of `block` would
    // call every SIMD micro-kernel too, and a second caller keeps LLVM from inlining them into
    // their wrappers (a call per micro-tile).
    block(args, Isa::Portable);
}

/// What [`block`] works on: the packed operands, the first A panel, the rows of C, C's block,
/// C's columns, the pairs per K block.
type BlockArgs<'a> = (
    &'a Packed16,
    &'a Packed16,
    usize,
    usize,
    &'a mut [i64],
    usize,
    usize,
);

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block_avx512(args: BlockArgs<'_>) {
    block(args, Isa::Avx512Vnni)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn block_avxvnni(args: BlockArgs<'_>) {
    block(args, Isa::AvxVnni)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(args: BlockArgs<'_>) {
    block(args, Isa::Avx2)
}

/// The rows `p0·MR .. p0·MR + rows` of C (`cblock`, row-major with `n` columns), compiled into
/// each ISA's wrapper above so that its micro-kernel is inlined (a call per micro-tile cost a
/// eighth of an MLP2 step: its weight gradients have K = 64, 32 pairs per micro-tile).
#[inline(always)]
fn block((a, b, p0, rows, cblock, n, kc): BlockArgs<'_>, isa: Isa) {
    let kp = a.kp;
    let panels = rows.div_ceil(MR);
    let panels_b = n.div_ceil(NR);
    // B panels per micro-tile: two for the 512-bit kernel (12 accumulators), else one.
    let step = if isa == Isa::Avx512Vnni { 2 } else { 1 };
    let mut q0 = 0;
    while q0 < kp {
        let len = kc.min(kp - q0);
        // Groups of MC A panels: a group's K block (MC·MR·KC·4 bytes ≤ 144 KiB) stays in L2
        // while every B micro-panel passes over it.
        let mut g0 = 0;
        while g0 < panels {
            let g1 = (g0 + MC).min(panels);
            let mut jp = 0;
            while jp < panels_b {
                let width = step.min(panels_b - jp);
                let bp = |j: usize| &b.data[(j * kp + q0) * NR..(j * kp + q0 + len) * NR];
                let bps = [bp(jp), bp(jp + width - 1)];
                let cols = (width * NR).min(n - jp * NR);
                for ip in g0..g1 {
                    let a0 = ((p0 + ip) * kp + q0) * MR;
                    let ap = &a.data[a0..a0 + len * MR];
                    let tile = Tile {
                        ldc: n,
                        rows: MR.min(rows - ip * MR),
                        cols,
                        first: q0 == 0,
                    };
                    let c0 = ip * MR * n + jp * NR;
                    micro(ap, bps, width, &mut cblock[c0..], tile, isa);
                }
                jp += width;
            }
            g0 = g1;
        }
        q0 += len;
    }
}

/// One micro-tile on `isa`: `C[r][l] (+)= Σ_q pair products` over `width` B panels (`bps[0]`
/// and, for two, `bps[1]`), for `r < rows`, `l < cols`.
#[inline(always)]
fn micro(ap: &[u32], bps: [&[u32]; 2], width: usize, c: &mut [i64], t: Tile, isa: Isa) {
    #[cfg(nitro_x86_simd)]
    {
        use crate::kernels::x86;
        // SAFETY (all three): `isa` is detected on this CPU (callers pass `resolve`'s answer or
        // a detected path); each kernel checks its slice lengths against the tile itself.
        match isa {
            Isa::Avx512Vnni if width == 2 => {
                return unsafe { x86::avx512::micro_pairs::<2>(ap, bps, c, t) }
            }
            Isa::Avx512Vnni => return unsafe { x86::avx512::micro_pairs::<1>(ap, bps, c, t) },
            Isa::AvxVnni => return unsafe { x86::avxvnni::micro_pairs(ap, bps[0], c, t) },
            Isa::Avx2 => return unsafe { x86::avx2::micro_pairs(ap, bps[0], c, t) },
            Isa::Portable | Isa::Amx => {}
        }
    }
    #[cfg(not(nitro_x86_simd))]
    let _ = isa;
    for (j, bp) in bps.iter().enumerate().take(width) {
        let cols = t.cols.saturating_sub(j * NR).min(NR);
        let sub = Tile { cols, ..t };
        if cols > 0 {
            micro_portable(ap, bp, &mut c[j * NR..], sub);
        }
    }
}

/// The portable micro-kernel (one B panel): same layout and the same `i32` partial sums as the
/// SIMD ones.
fn micro_portable(ap: &[u32], bp: &[u32], c: &mut [i64], t: Tile) {
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
    store_tile(&acc, c, t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detected_path_passes_its_self_check() {
        for isa in Isa::ALL {
            if isa.detected() {
                assert!(usable(isa), "{isa} disagrees with the portable kernel");
                if isa < Isa::Amx {
                    assert!(resolve(isa) == isa, "{isa}");
                }
            } else {
                assert!(resolve(isa) < isa);
            }
        }
        assert!(resolve(Isa::Amx) < Isa::Amx);
        assert_eq!(resolve(Isa::Portable), Isa::Portable);
    }
}
