//! A weight gradient `δᵀ·x` on AMX tiles, handed to its consumer block by block
//! ([`super::gemm_nt_each`]): the products of a linear layer's update whose error is wider than
//! `i16`.
//!
//! Such an error (in real training an MLP's errors grow past 2¹⁵ within the first epoch) costs
//! the pair engine two `i16` multiply-adds per term (`split_k`), while its input has one byte
//! of digits (`|x| ≤ 127`). Here the error is written as three balanced base-256 digits
//! ([`super::amx`]'s), each digit tile multiplied with the input's one tile by `tdpbssd`, and
//! a `16×16` block of C is `Σ_d 256^d · (A_d·Bᵀ)`, summed in `i64` as it goes into the
//! consumer's buffer — one row block (16 rows of C) at a time, so the sums never travel to
//! memory and back.
//!
//! Both operands arrive batch-major (`δ` is `batch × out`, `x` is `batch × in`: the views are
//! their transposes). B's layout for `tdpbssd` is K-major in groups of four, so each B tile row
//! is four batch rows of the input interleaved by byte (`x86::amx::quad_row`); A's tile rows
//! run along K, so each row block of the error is transposed sixteen by sixteen in registers
//! (`x86::avx512::transpose_i32`) before it is split into digits.
//!
//! Why it is exact (algorithm.md §10): a digit is in `[−128, 127]` and so is an input value,
//! so one product is at most `2¹⁴`, and an `i32` tile sum over at most `BLOCK_CHUNKS` chunks
//! of 64 terms is below `2³¹` (longer reductions are declined); `256^d · (A_d·Bᵀ)` summed over
//! the digits is the exact dot product, which the caller's `i64` proof bounds.
//!
//! The path checks itself once against the exact `i64` product before it is first used
//! ([`usable`]) and is never used again after a disagreement (with a one-line warning).

use super::amx::{
    digit_bound, parts_for, split_chunk, Stage, BLOCK_CHUNKS, CHUNK, LINE, MAX_PARTS, ROWS,
};
use super::pack;
use super::proof::prove_i64;
use crate::error::Result;
use crate::kernels::buffers;
use crate::kernels::cpu::Int;
use crate::kernels::par;
use crate::kernels::self_check::{edge_values, SelfCheck};
use crate::kernels::x86::amx::{self as kernel, TILE_BYTES};
use crate::kernels::x86::avx512;
use alloc::vec::Vec;
use ndarray::ArrayView2;

/// The first-use verdict of this path ([`usable`]).
static CHECK: SelfCheck = SelfCheck::new("the AMX weight-gradient tiles");

/// Whether this path agrees with the exact product on its self-check (run once; only where
/// the tile engine is allowed and detected, which the caller checked).
pub(super) fn usable() -> bool {
    CHECK.passed(self_check)
}

/// `C = A·Bᵀ` for a weight gradient — A the error's transpose (`m×k`, three digits: wider
/// than `32639`, at most `8355711`), B the input's transpose (`n×k`, every `|x| ≤ 127`),
/// both views of batch-major arrays (`a.t()` and `b.t()` contiguous) — handed to `f(first
/// row, the block's sums row-major, out's rows of that block)` one row block of C (16 rows)
/// at a time; `out` has one element per entry of C. `Ok(None)` where the operands are not of that kind (the
/// caller takes the pair engine); the overflow error when not even `i64` holds the sums. The
/// sums are the exact `i64` dot products, as every engine's. `f`'s results in row order.
///
/// The caller has checked that the tile engine is allowed and detected, and [`usable`].
pub(super) fn gemm_each<A: Int, B: Int, O: Send, R: Send>(
    a: &ArrayView2<'_, A>,
    b: &ArrayView2<'_, B>,
    out: &mut [O],
    f: &(impl Fn(usize, &[i64], &mut [O]) -> R + Sync + Send),
) -> Result<Option<Vec<R>>> {
    let ((m, k), n) = (a.dim(), b.nrows());
    let (at, bt) = (a.t(), b.t());
    let (Some(delta), Some(x)) = (at.as_slice(), bt.as_slice()) else {
        return Ok(None);
    };
    let chunks = k.div_ceil(CHUNK);
    if m == 0 || n == 0 || k == 0 || chunks > BLOCK_CHUNKS || out.len() != m * n {
        return Ok(None);
    }
    // Two digits fit `i16`, where the pair engine needs no split and is as fast (a
    // Sapphire Rapids-class Xeon, one thread, MLP2 epochs with such errors: 417–428 ms on
    // pairs, 428–438 on tiles); four are rare, and take the pair engine's split. B is
    // scanned only for an A of three digits.
    let ma = pack::max_abs_exact(a);
    if parts_for(ma) != Some(PARTS) {
        return Ok(None);
    }
    let mb = pack::max_abs_view(b);
    prove_i64(ma, mb, k)?;
    // B one digit: within ±127 (an `i8` may hold −128 too, which is its own digit).
    if mb > 127 && B::BOUND > 128 {
        return Ok(None);
    }
    let tiles_b = pack_b(x, (n, k), chunks);
    let blocks = m.div_ceil(ROWS);
    let per_task = par::rows_per_task(blocks, 2 * m * n * k);
    let mut tasks: Vec<(usize, &mut [O])> =
        out.chunks_mut(per_task * ROWS * n).enumerate().collect();
    let shape = Shape { m, n, k, chunks };
    let per = par::map_mut(&mut tasks, |(t, rows_out)| {
        // SAFETY: AMX (with AVX-512 F and BW, part of its detection) is available: the
        // caller's contract.
        unsafe { task(delta, &tiles_b, shape, *t * per_task, rows_out, f) }
    });
    buffers::give(tiles_b.data);
    Ok(Some(per.into_iter().flatten().collect()))
}

/// The error's digits.
const PARTS: usize = 3;

/// The sizes of one product: C is `m×n`, K = `k` in `chunks` chunks of 64.
#[derive(Clone, Copy)]
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    chunks: usize,
}

/// Tiles in a buffer whose first 64-byte boundary is where they start (`lead`): a tile row is
/// then one cache line.
struct Tiles {
    data: Vec<i8>,
    lead: usize,
}

impl Tiles {
    fn new(count: usize) -> Tiles {
        let data = buffers::take_dirty::<i8>(count * TILE_BYTES + LINE - 1);
        let lead = data.as_ptr().align_offset(LINE).min(LINE - 1);
        Tiles { data, lead }
    }

    fn tiles_mut(&mut self, count: usize) -> &mut [i8] {
        &mut self.data[self.lead..self.lead + count * TILE_BYTES]
    }

    fn at(&self, tile: usize) -> *const i8 {
        self.data[self.lead + tile * TILE_BYTES..].as_ptr()
    }
}

/// B's tiles, column block by column block and within one chunk by chunk: tile row `q` of
/// chunk `c` holds batch rows `64c + 4q .. 64c + 4q + 4` of the block's sixteen input columns,
/// interleaved (`quad_row`); columns past `n` and rows past `k` are zeros.
fn pack_b<B: Int>(x: &[B], (n, k): (usize, usize), chunks: usize) -> Tiles {
    let blocks = n.div_ceil(ROWS);
    let mut t = Tiles::new(blocks * chunks);
    let tiles = t.tiles_mut(blocks * chunks);
    let per_block = chunks * TILE_BYTES;
    let fill_block = |j: usize, dst: &mut [i8]| {
        let cols = j * ROWS..(j * ROWS + ROWS).min(n);
        for (c, tile) in dst.chunks_exact_mut(TILE_BYTES).enumerate() {
            for (q, row) in tile.chunks_exact_mut(CHUNK).enumerate() {
                let mut quad = [[0i16; ROWS]; 4];
                for (s, vals) in quad.iter_mut().enumerate() {
                    let t = c * CHUNK + 4 * q + s;
                    if t < k {
                        let src = &x[t * n..(t + 1) * n][cols.clone()];
                        for (v, &e) in vals.iter_mut().zip(src) {
                            let e: i32 = e.into();
                            *v = e as i16; // |e| ≤ 128: exact
                        }
                    }
                }
                let row: &mut [i8; CHUNK] = row.try_into().expect("one tile row");
                kernel::quad_row(&quad, row);
            }
        }
    };
    par::for_each_chunk_mut(tiles, per_block, fill_block);
    t
}

/// The row blocks `first..` of C that `out` holds (whole blocks but maybe the last), each
/// computed into a buffer of 16 rows and handed to `f`.
///
/// # Safety
/// AMX and AVX-512 F and BW are available.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn task<A: Int, O, R>(
    delta: &[A],
    tiles_b: &Tiles,
    s: Shape,
    first: usize,
    out: &mut [O],
    f: &(impl Fn(usize, &[i64], &mut [O]) -> R + Sync + Send),
) -> Vec<R> {
    let n = s.n;
    let mut a = Tiles::new(PARTS * s.chunks);
    let mut sums = buffers::take_dirty::<i64>(ROWS * n);
    let mut acc = [0i32; PARTS * ROWS * ROWS];
    let mut results = Vec::new();
    // SAFETY: AMX is available (the contract).
    unsafe { kernel::configure() };
    for (i, block_out) in out.chunks_mut(ROWS * n).enumerate() {
        let ib = first + i;
        let live = block_out.len() / n;
        // SAFETY: AVX-512 F is available (the contract).
        unsafe { pack_a(delta, s, ib, a.tiles_mut(PARTS * s.chunks)) };
        for j in 0..n.div_ceil(ROWS) {
            let b = tiles_b.at(j * s.chunks);
            // SAFETY: configured above; A holds `3·chunks` tiles and B's block `chunks`; `acc`
            // holds three tiles; the sums fit i32 (chunks ≤ BLOCK_CHUNKS, module docs).
            unsafe { kernel::dot_digits3(a.at(0), b, s.chunks, acc.as_mut_ptr()) };
            let cols = ROWS.min(n - j * ROWS);
            for r in 0..live {
                let row = &mut sums[r * n + j * ROWS..][..cols];
                combine(&acc, r, row);
            }
        }
        results.push(f(ib * ROWS, &sums[..live * n], block_out));
    }
    // SAFETY: as configure.
    unsafe { kernel::release() };
    buffers::give(sums);
    a.release();
    results
}

/// Row `r` of a block of C from its digits' tiles: `Σ_d 256^d · acc_d[r]`.
#[inline(always)]
fn combine(acc: &[i32; PARTS * ROWS * ROWS], r: usize, row: &mut [i64]) {
    let tile = |d: usize| &acc[d * ROWS * ROWS + r * ROWS..][..ROWS];
    let (t0, t1, t2) = (tile(0), tile(1), tile(2));
    for (((c, &v0), &v1), &v2) in row.iter_mut().zip(t0).zip(t1).zip(t2) {
        *c = i64::from(v0) + (i64::from(v1) << 8) + (i64::from(v2) << 16);
    }
}

impl Tiles {
    fn release(self) {
        buffers::give(self.data);
    }
}

/// The digit tiles of row block `ib` of A (rows `16·ib ..` of C: error columns), chunk by
/// chunk, three consecutive tiles per chunk: sixteen batch rows of the block's error values
/// at a time transposed in registers into the K-major rows of the tiles, then split into
/// digits 64 values at a time. Rows past `m` and K past `k` are zeros.
///
/// # Safety
/// The CPU must have AVX-512 F (inlined into [`task`], which enables it).
#[inline(always)]
unsafe fn pack_a<A: Int>(delta: &[A], s: Shape, ib: usize, dst: &mut [i8]) {
    let (m, k) = (s.m, s.k);
    let cols = ib * ROWS..(ib * ROWS + ROWS).min(m);
    let mut stage: [Stage; MAX_PARTS] = [[[0i8; CHUNK]; ROWS]; MAX_PARTS];
    for c in 0..s.chunks {
        // vals[r] = error column 16·ib + r over the chunk's 64 batch rows.
        let mut vals = [[0i32; CHUNK]; ROWS];
        for g in 0..CHUNK / ROWS {
            let mut rows = [[0i32; ROWS]; ROWS];
            for (q, row) in rows.iter_mut().enumerate() {
                let t = c * CHUNK + g * ROWS + q;
                if t < k {
                    let src = &delta[t * m..(t + 1) * m][cols.clone()];
                    for (v, &e) in row.iter_mut().zip(src) {
                        *v = e.into();
                    }
                }
            }
            let views: [&[i32]; ROWS] = core::array::from_fn(|q| &rows[q][..]);
            let mut t = [[0i32; ROWS]; ROWS];
            // SAFETY: the CPU has AVX-512 F (the contract).
            unsafe { avx512::transpose_i32(&views, &mut t) };
            for (v, tr) in vals.iter_mut().zip(&t) {
                v[g * ROWS..][..ROWS].copy_from_slice(tr);
            }
        }
        for (r, v) in vals.iter_mut().enumerate() {
            split_chunk(v, PARTS, &mut stage, r);
        }
        for (d, st) in stage.iter().enumerate().take(PARTS) {
            let tile = &mut dst[(c * PARTS + d) * TILE_BYTES..][..TILE_BYTES];
            for (t, row) in tile.chunks_exact_mut(CHUNK).zip(st) {
                t.copy_from_slice(row);
            }
        }
    }
}

/// A product with three-digit errors (its extremes included) on a shape that crosses every
/// tile edge and more than one chunk, against the exact `i64` sums: does this path agree?
/// (Only called where AMX is available.)
fn self_check() -> bool {
    let mut next = edge_values(0x9e37_79b9_7f4a_7c15);
    let (m, n, k) = (2 * ROWS + 5, 3 * ROWS + 3, 2 * CHUNK + 9);
    let bound = digit_bound(PARTS) as i64;
    // Batch-major, as a layer holds them: the operands are their transposed views.
    let delta = ndarray::Array2::from_shape_fn((k, m), |_| next(bound) as i32);
    let x = ndarray::Array2::from_shape_fn((k, n), |_| next(127) as i16);
    let want: Vec<i64> = (0..m * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            (0..k)
                .map(|t| i64::from(delta[[t, i]]) * i64::from(x[[t, j]]))
                .sum()
        })
        .collect();
    let mut got = alloc::vec![0i64; m * n];
    let r = gemm_each(&delta.t(), &x.t(), &mut got, &|_, sums, o: &mut [i64]| {
        o.copy_from_slice(sums)
    });
    matches!(r, Ok(Some(_))) && got == want
}

#[cfg(test)]
mod tests {
    use super::super::amx::tests::amx_here;
    use super::*;
    use crate::rng::Pcg32;
    use ndarray::Array2;

    /// The sums of a product and the (first row, rows) of every block handed over.
    type Handed = (Vec<i64>, Vec<(usize, usize)>);

    /// `δᵀ·x` through the path from batch-major `delta` (`k×m`) and `x` (`k×n`), or `None`
    /// where it declines.
    fn run<B: Int>(delta: &Array2<i32>, x: &Array2<B>) -> Option<Handed> {
        let (m, n) = (delta.ncols(), x.ncols());
        let mut got = alloc::vec![i64::MIN; m * n];
        let blocks = gemm_each(&delta.t(), &x.t(), &mut got, &|r0, sums, o: &mut [i64]| {
            assert_eq!(sums.len(), o.len());
            o.copy_from_slice(sums);
            (r0, sums.len() / n)
        })
        .unwrap()?;
        Some((got, blocks))
    }

    fn oracle<B: Int>(delta: &Array2<i32>, x: &Array2<B>) -> Vec<i64> {
        let (k, m, n) = (delta.nrows(), delta.ncols(), x.ncols());
        (0..m * n)
            .map(|e| {
                (0..k)
                    .map(|t| i64::from(delta[[t, e / n]]) * Into::<i64>::into(x[[t, e % n]]))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn gradient_tiles_match_the_oracle_on_every_edge() {
        if !amx_here("the AMX weight-gradient tiles against the i64 oracle") {
            return;
        }
        assert!(usable(), "the path disagreed on its self-check");
        let mut r = Pcg32::new(5, 17);
        let mut shapes = alloc::vec![
            (1, 1, 1),
            (16, 16, 64),
            (17, 33, 65),
            (200, 784, 64),
            (100, 200, 64),
            (50, 100, 64),
            (37, 5, 200),
            (3, 70, 129),
        ];
        for _ in 0..12 {
            let d = |r: &mut Pcg32, most: u32| 1 + r.below(most) as usize;
            shapes.push((d(&mut r, 60), d(&mut r, 60), d(&mut r, 300)));
        }
        for (case, &(m, n, k)) in shapes.iter().enumerate() {
            // The smallest and largest three-digit bounds, and one between.
            for bound in [32_640i32, 262_144, 8_355_711] {
                let mut delta = Array2::from_shape_fn((k, m), |_| r.symmetric(bound as u32));
                delta[[0, 0]] = bound;
                delta[[k - 1, m - 1]] = -bound;
                let mut x = Array2::from_shape_fn((k, n), |_| r.symmetric(127) as i16);
                x[[k - 1, 0]] = -127;
                x[[0, n - 1]] = 127;
                let (got, blocks) = run(&delta, &x).expect("three digits and |x| ≤ 127");
                assert_eq!(
                    got,
                    oracle(&delta, &x),
                    "case {case} ({m}×{n}, K {k}) bound {bound}"
                );
                // One block per 16 rows of C, in order, the last one shorter.
                let want: Vec<(usize, usize)> = (0..m.div_ceil(ROWS))
                    .map(|b| (b * ROWS, ROWS.min(m - b * ROWS)))
                    .collect();
                assert_eq!(blocks, want, "case {case}");
            }
        }
    }

    #[test]
    fn gradient_tiles_decline_what_they_do_not_take() {
        if !amx_here("the AMX weight-gradient tiles' refusals") {
            return;
        }
        let mut r = Pcg32::new(8, 3);
        let (k, m, n) = (70, 20, 18);
        let mut delta = Array2::from_shape_fn((k, m), |_| r.symmetric(30_000));
        let x = Array2::from_shape_fn((k, n), |_| r.symmetric(127) as i16);
        // Two digits (the pair engine's case without a split).
        delta[[3, 4]] = 32_639;
        assert!(run(&delta, &x).is_none());
        // Three: taken.
        delta[[3, 4]] = -32_640;
        assert_eq!(run(&delta, &x).unwrap().0, oracle(&delta, &x));
        // Four.
        delta[[3, 4]] = 8_355_712;
        assert!(run(&delta, &x).is_none());
        delta[[3, 4]] = 100_000;
        // An input value of two digits.
        let mut wide_x = x.clone();
        wide_x[[5, 6]] = 128;
        assert!(run(&delta, &wide_x).is_none());
        // An `i8` input takes −128, its own digit.
        let mut bytes = x.mapv(|v| v as i8);
        bytes[[5, 6]] = -128;
        assert_eq!(run(&delta, &bytes).unwrap().0, oracle(&delta, &bytes));
        // Operands that are not batch-major views (row-major A and B).
        let (a, b) = (
            delta.t().as_standard_layout().into_owned(),
            x.t().as_standard_layout().into_owned(),
        );
        let mut out = alloc::vec![0i64; m * n];
        let got = gemm_each(&a.view(), &b.view(), &mut out, &|_, _, _: &mut [i64]| ());
        assert!(got.unwrap().is_none());
        // No reduction.
        let (e, z) = (Array2::<i32>::zeros((0, m)), Array2::<i16>::zeros((0, n)));
        assert!(run(&e, &z).is_none());
    }
}
