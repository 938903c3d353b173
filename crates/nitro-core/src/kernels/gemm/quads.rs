//! The byte engine: exact `C = A·Bᵀ` with four terms of the reduction per instruction
//! (`vpdpbusd`), for operands whose values all fit a signed byte (`|v| ≤ 127`) — a
//! convolution's activations and, while training keeps them small (algorithm.md §10: weights
//! start at most 64 and decay pulls them back), its weights. The pair engine (`vpdpwssd`) adds
//! two terms per instruction; on a CPU that issues one 512-bit VNNI instruction per cycle, as
//! AMD Zen 4 does, that is the whole difference between the two.
//!
//! `vpdpbusd` multiplies unsigned bytes by signed bytes. A is therefore packed as `a + 128`
//! (`0..=255`) and B as it is: `Σ (a + 128)·b = Σ a·b + 128·Σ b`, so every column `l` of C
//! starts its first K block from the correction `−128·Σ_k b[l][k]`, computed while B is packed.
//!
//! Layout: the pair engine's ([`super::pack`]) with quads `(4q, …, 4q+3)` instead of pairs: for
//! each quad an A panel holds [`MR`] words (row `r`'s four bytes, the lowest term in the lowest
//! byte) and a B panel [`NR`] words. A reduction that is not a multiple of four is padded with
//! A bytes 128 (`a = 0`) and B bytes 0, which add nothing and leave the corrections alone; rows
//! past an operand are zero words, and their results are never stored.
//!
//! Accumulator proof (algorithm.md §10): a K block of `kc` quads adds at most `4·kc·255·127` in
//! magnitude and the correction is at most `128·127·K`, so blocks are as long as keeps their sum
//! within `2³¹−1` (at least one quad, else the engine declines); block sums are added in `i64`,
//! as the pair engine's. Every lane holds the portable kernel's partial sum at every point, so
//! the result is the exact product, bit for bit, on every path.

use super::pack::{self, for_panels, Packed16, RowSource, MR, NR};
use super::pairs::{self, Words};
use crate::kernels::buffers;
use crate::kernels::cpu::{Dispatch, Int, Isa};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};
use ndarray::ArrayView2;

/// Largest magnitude the engine takes (both operands).
const BYTE_MAX: u64 = 127;

/// The byte engine's micro-kernel under `d`, if it may run: narrow packing allowed, the pair
/// engine's choice AVX-512 VNNI (the instruction set with `vpdpbusd` on 512-bit vectors), and
/// the byte kernel self-checked.
fn kernel(d: Dispatch) -> Option<Isa> {
    if !d.allow_i16 {
        return None;
    }
    let isa = pairs::resolve(d.isa);
    (isa == Isa::Avx512Vnni && usable(isa)).then_some(isa)
}

/// Quads per `i32` block for a reduction of `k` terms (see the module docs), or `None`.
fn quads_per_block(k: usize) -> Option<usize> {
    let corr = 128 * BYTE_MAX * k as u64;
    let room = u64::try_from(i32::MAX).ok()?.checked_sub(corr)?;
    let kc = room / (4 * 255 * BYTE_MAX);
    usize::try_from(kc).ok().filter(|&kc| kc >= 1)
}

/// Whether every value of the view fits the engine (types no wider than a byte need no scan).
fn fits<T: Int>(a: &ArrayView2<'_, T>) -> bool {
    T::BOUND <= BYTE_MAX || pack::max_abs_exact(a) <= BYTE_MAX
}

/// `A·Bᵀ` (`A` given row by row, e.g. convolution patches) on the byte engine, row-major
/// `rows × b.nrows()`; `None` when it may not run or an operand does not fit (nothing done).
pub(super) fn rows_nt<B: Int>(
    a: &dyn RowSource,
    b: &ArrayView2<'_, B>,
    d: Dispatch,
) -> Option<Vec<i64>> {
    let isa = kernel(d)?;
    let kc = quads_per_block(a.cols())?;
    if a.bound() > BYTE_MAX || !fits(b) {
        return None;
    }
    let pa = pack_a(a.rows(), a.cols(), |r, out| a.row(r, out));
    Some(product(pa, b, kc, isa))
}

/// `A·Bᵀ` of two views on the byte engine, as [`rows_nt`].
pub(super) fn nt<A: Int, B: Int>(
    a: &ArrayView2<'_, A>,
    b: &ArrayView2<'_, B>,
    d: Dispatch,
) -> Option<Vec<i64>> {
    let isa = kernel(d)?;
    let kc = quads_per_block(a.ncols())?;
    if !fits(a) || !fits(b) {
        return None;
    }
    // |v| ≤ 127 (checked above): exact.
    let pa = pack_a(a.nrows(), a.ncols(), |r, out| {
        each_of_row(a, r, out, |o, v| *o = v as i16)
    });
    Some(product(pa, b, kc, isa))
}

/// `f(out[t], a[i][t])` along row `i` (a plain slice loop where the row is contiguous).
#[inline(always)]
fn each_of_row<T: Int, O>(
    a: &ArrayView2<'_, T>,
    i: usize,
    out: &mut [O],
    mut f: impl FnMut(&mut O, i32),
) {
    let row = a.row(i);
    match row.as_slice() {
        Some(s) => out.iter_mut().zip(s).for_each(|(o, &v)| f(o, v.into())),
        None => out.iter_mut().zip(row).for_each(|(o, &v)| f(o, v.into())),
    }
}

/// Pack B with its corrections, multiply, release both operands.
fn product<B: Int>(pa: Packed16, b: &ArrayView2<'_, B>, kc: usize, isa: Isa) -> Vec<i64> {
    let (pb, corr) = pack_b(b);
    let c = pairs::gemm_words(&pa, &pb, kc, isa, Words::Quads(&corr));
    pa.release();
    pb.release();
    c
}

/// The four bytes of a quad as one word (the lowest term in the lowest byte).
#[inline(always)]
fn quad(bytes: [u8; 4]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// A packed as [`MR`]-row panels of quads of `a + 128`; `row(r, out)` writes row `r`'s `k`
/// values (each `|v| ≤ 127`, checked by the caller).
fn pack_a<F: Fn(usize, &mut [i16]) + Sync>(rows: usize, k: usize, row: F) -> Packed16 {
    let kq = k.div_ceil(4);
    let mut data = buffers::take_dirty::<u32>(rows.div_ceil(MR) * kq * MR);
    for_panels(&mut data, kq * MR, |p, dst| {
        let live = MR.min(rows - p * MR);
        if live < MR {
            dst.fill(0); // rows past the operand: never stored
        }
        let mut wide = alloc::vec![0i16; k];
        // The terms past k stay byte 0, which the flip below makes 128 (a = 0): they add nothing.
        let mut bytes = alloc::vec![0u8; kq * 4];
        for r in 0..live {
            row(p * MR + r, &mut wide);
            for (b, &v) in bytes.iter_mut().zip(&wide) {
                *b = v as u8; // the two's-complement byte of v (|v| ≤ 127)
            }
            for (q, four) in bytes.chunks_exact(4).enumerate() {
                // Flipping the sign bit of a two's-complement byte adds 128: a + 128 in 0..=255.
                dst[q * MR + r] = quad([four[0], four[1], four[2], four[3]]) ^ 0x8080_8080;
            }
        }
    });
    Packed16 {
        data,
        rows,
        kp: kq,
        max: BYTE_MAX,
    }
}

/// B as [`NR`]-row panels of quads of signed bytes, and every row's correction
/// `−128·Σ_k b[l][k]` (zero for the rows past B), `NR` per panel.
fn pack_b<T: Int>(b: &ArrayView2<'_, T>) -> (Packed16, Vec<i32>) {
    let (n, k) = b.dim();
    let kq = k.div_ceil(4);
    let panels = n.div_ceil(NR);
    let mut data = buffers::take_dirty::<u32>(panels * kq * NR);
    let mut corr = alloc::vec![0i32; panels * NR];
    // The terms past k stay byte 0: they add nothing.
    let mut bytes = alloc::vec![0u8; kq * 4];
    for (l, c) in corr.iter_mut().enumerate().take(n) {
        let mut sum = 0i32;
        each_of_row(b, l, &mut bytes[..k], |o, v| {
            sum += v;
            *o = v as u8; // the two's-complement byte of v (|v| ≤ 127)
        });
        // |Σ b| ≤ 127·K and 128·127·K ≤ 2³¹−1 (quads_per_block): exact in i32.
        *c = -128 * sum;
        let (p, r) = (l / NR, l % NR);
        let dst = &mut data[p * kq * NR..(p + 1) * kq * NR];
        for (d, four) in dst.chunks_exact_mut(NR).zip(bytes.chunks_exact(4)) {
            d[r] = quad([four[0], four[1], four[2], four[3]]);
        }
    }
    // Rows past B in the last panel: zero words.
    let live = n - (panels.saturating_sub(1)) * NR;
    if panels > 0 && live < NR {
        let dst = &mut data[(panels - 1) * kq * NR..];
        for d in dst.chunks_exact_mut(NR) {
            d[live..].fill(0);
        }
    }
    (
        Packed16 {
            data,
            rows: n,
            kp: kq,
            max: BYTE_MAX,
        },
        corr,
    )
}

/// Self-check verdict of the AVX-512 byte kernel: 0 not yet checked, 1 agrees with the exact
/// product, 2 disagreed (never used again).
static VERDICT: AtomicU8 = AtomicU8::new(0);

/// Whether `isa`'s byte kernel gives the exact product (checked once, at first use, on a small
/// product with edge values).
fn usable(isa: Isa) -> bool {
    match VERDICT.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = self_check(isa);
            VERDICT.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            if !ok {
                #[cfg(feature = "std")]
                std::eprintln!(
                    "nitro-core: warning: the {isa} byte kernel disagreed with the exact product \
                     on its self-check; using the pair engine"
                );
            }
            ok
        }
    }
}

/// `isa`'s byte kernel on a product crossing every tile edge, with a reduction that is not a
/// multiple of four, values ±127 among random ones and several K blocks (two quads each),
/// against the `i64` oracle.
fn self_check(isa: Isa) -> bool {
    let (m, n, k) = (2 * MR + 1, 3 * NR + 5, 4 * 37 + 3);
    let mut state = 0x51af_d7ed_558c_cd1du64;
    let mut next = move || {
        // xorshift64*: a fixed stream, independent of the crate's RNG.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let v = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as i32;
        match v % 5 {
            0 => 127,
            1 => -127,
            _ => v % 255 - 127,
        }
    };
    let a: Vec<i32> = (0..m * k).map(|_| next()).collect();
    let b: Vec<i32> = (0..n * k).map(|_| next()).collect();
    let want: Vec<i64> = (0..m * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            (0..k)
                .map(|t| i64::from(a[i * k + t]) * i64::from(b[j * k + t]))
                .sum()
        })
        .collect();
    let bv = ArrayView2::from_shape((n, k), &b).expect("n×k");
    let pa = pack_a(m, k, |r, out| {
        for (o, &v) in out.iter_mut().zip(&a[r * k..(r + 1) * k]) {
            *o = v as i16;
        }
    });
    product(pa, &bv, 2, isa) == want
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Pcg32;
    use ndarray::Array2;

    fn oracle(a: &Array2<i32>, b: &Array2<i32>) -> Vec<i64> {
        let (m, k) = a.dim();
        let n = b.nrows();
        (0..m * n)
            .map(|e| {
                (0..k)
                    .map(|t| i64::from(a[[e / n, t]]) * i64::from(b[[e % n, t]]))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn the_portable_byte_kernel_is_exact() {
        // Every tile edge, reductions of every residue mod 4, one to many quads per block.
        let mut r = Pcg32::new(11, 2);
        for case in 0..40 {
            let m = 1 + r.below(2 * MR as u32 + 3) as usize;
            let n = 1 + r.below(2 * NR as u32 + 5) as usize;
            let k = 1 + r.below(150) as usize;
            let a = Array2::from_shape_fn((m, k), |_| r.symmetric(127));
            let b = Array2::from_shape_fn((n, k), |_| r.symmetric(127));
            let kc = [1, 2, 7, 1000][case % 4];
            let pa = pack_a(m, k, |i, out| {
                for (o, &v) in out.iter_mut().zip(a.row(i)) {
                    *o = v as i16;
                }
            });
            let got = product(pa, &b.view(), kc, Isa::Portable);
            assert_eq!(got, oracle(&a, &b), "case {case}: {m}×{k}×{n}, kc {kc}");
        }
    }

    #[test]
    fn blocks_are_proven_and_wide_reductions_declined() {
        // 4·kc·255·127 + 128·127·K ≤ 2³¹−1.
        for k in [1usize, 64, 1152, 4608, 40_000] {
            let kc = quads_per_block(k).unwrap() as u64;
            let bound = |kc: u64| 4 * kc * 255 * 127 + 128 * 127 * k as u64;
            assert!(
                bound(kc) <= i32::MAX as u64 && bound(kc + 1) > i32::MAX as u64,
                "{k}"
            );
        }
        assert_eq!(quads_per_block(200_000), None);
    }

    #[test]
    fn only_byte_operands_are_taken() {
        if !Isa::Avx512Vnni.detected() {
            std::eprintln!("SKIPPED: avx512-vnni byte engine not tested: this CPU lacks it");
            return;
        }
        let d = Dispatch::new(true, Isa::Avx512Vnni);
        let a = Array2::from_shape_fn((3, 9), |(i, t)| (i * 9 + t) as i32 % 255 - 127);
        let b = Array2::from_shape_fn((2, 9), |(j, t)| 127 - (j * 9 + t) as i32 % 255);
        assert_eq!(nt(&a.view(), &b.view(), d), Some(oracle(&a, &b)));
        for (i, v) in [(0, 128), (1, -128), (2, 1 << 20)] {
            let mut a2 = a.clone();
            a2[[i, 4]] = v;
            assert_eq!(nt(&a2.view(), &b.view(), d), None, "a = {v}");
            assert_eq!(nt(&b.view(), &a2.view(), d), None, "b = {v}");
        }
        // Narrow packing off, or a cap below AVX-512 VNNI: never.
        for d in [
            Dispatch::new(false, Isa::Amx),
            Dispatch::new(true, Isa::AvxVnni),
        ] {
            assert_eq!(nt(&a.view(), &b.view(), d), None, "{d:?}");
        }
    }

    #[test]
    fn the_detected_byte_kernel_passes_its_self_check() {
        if !Isa::Avx512Vnni.detected() {
            std::eprintln!("SKIPPED: avx512-vnni byte kernel not tested: this CPU lacks it");
            return;
        }
        assert!(self_check(Isa::Avx512Vnni));
        assert!(usable(Isa::Avx512Vnni));
    }
}
