//! The tile engine: `C = A·Bᵀ` on AMX-INT8, from operands written as signed base-256 digits.
//!
//! AMX multiplies tiles of signed bytes (`tdpbssd`). An integer operand is therefore written
//! exactly as `p` balanced digits, `v = Σᵢ dᵢ·256ⁱ` with every `dᵢ ∈ [−128, 127]`
//! ([`digits`]): one digit for `|v| ≤ 127` (activations), two for `|v| ≤ 32639` (most weights),
//! up to four for `|v| ≤ 2139062143` ([`parts_for`]). The product is then
//! `C = Σᵢ Σⱼ 256^(i+j) · (Aᵢ·Bⱼᵀ)`: one tile product per pair of digits, each summed exactly
//! in `i32` tiles and added, shifted, into the `i64` result.
//!
//! Why this is exact (algorithm.md §10), from the operands' bounds before anything runs
//! ([`plan`]):
//! * a digit product is at most `128·128 = 2¹⁴`, so an `i32` tile sum over `kb ≤ 2047` chunks
//!   of 64 bytes (`2¹⁴·64·2047 < 2³¹`) cannot overflow: longer reductions are cut into blocks
//!   of at most that many chunks, each block's tiles added into `i64`;
//! * every partial `i64` sum of an entry is bounded by `Σᵢⱼ 256^(i+j)·2¹⁴·K`, which is checked to
//!   fit `i64` (it does for every NITRO-D shape; otherwise the pair or `i32` engine runs);
//! * digits beyond an operand's rows or its `K` are zero and add nothing.
//!
//! Layout ([`Digits`]): the operand's rows in blocks of 16; per block, digit and K chunk one
//! 1 KiB tile — for A (the rows of C) row `r` of the tile holds the chunk's 64 digits of operand
//! row `r`; for B (the columns of C) row `q` holds, for each of the 16 operand rows `l`, the four
//! digits `4q..4q+4` (`tdpbssd`'s layout for its second source). Tiles of one block and digit are
//! consecutive along K, so the kernel walks a reduction by adding 1 KiB.
//!
//! The engine runs only after it has checked itself once against exact `i64` products
//! ([`self_check`], through `pairs::usable`).

use super::pack::{self, RowSource};
use super::proof::prove_i64;
use crate::error::Result;
use crate::kernels::buffers;
use crate::kernels::cpu::{loop_build, Int, Isa};
use crate::kernels::filters::taps_outer;
use crate::kernels::nchw::{self, image_positions, NchwLane};
use crate::kernels::par;
use crate::kernels::x86::amx::{self as kernel, TILE_BYTES};
use crate::kernels::x86::avx512;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// Operand rows per tile (and columns of C per B tile).
pub(super) const ROWS: usize = 16;
/// Reduction bytes per tile row.
pub(super) const CHUNK: usize = 64;
/// Row blocks of C a task of [`gemm_nchw`] computes at a time: 64 rows, 128 KiB of `i64` for
/// 256 filters, which stay in L2 until the epilogue reads them.
const BAND_BLOCKS: usize = 4;
/// Sets of four accumulator tiles a task keeps ([`task`]): 128 KiB, within L2.
const SUM_SETS: usize = 32;
/// The tiles of one K block a task keeps in L2 while it multiplies them: of A, a band of
/// row blocks, and of B, a group of column blocks, each used against all of the other's.
const A_BAND_BYTES: usize = 1 << 19;
const B_GROUP_BYTES: usize = 1 << 19;
/// Bytes of a cache line: where tiles and accumulators start.
pub(super) const LINE: usize = 64;
/// Most digits per value (`|v| ≤ 2139062143`; `i32` operands beyond take another engine).
pub(super) const MAX_PARTS: usize = 4;
/// K chunks per `i32` block: `2¹⁴ · 64 · 2047 = 2³¹ − 2²⁰ < 2³¹` (see the module docs).
pub(super) const BLOCK_CHUNKS: usize = 2047;
/// The shortest reduction the tile engine is given: below it a tile product is too short to
/// pay for writing its four accumulators out (a Sapphire Rapids-class Xeon, one thread:
/// `200×64×784` with two-digit weights 309 µs on tiles, 170 µs on the AVX-512 pair engine).
const MIN_K: usize = 4 * CHUNK;
/// The fewest multiply-adds the tile engine is given: below it packing the digit tiles costs
/// more than the faster product saves (same machine: `64×784×200`, 10 M MACs, 338 µs on tiles,
/// 166 µs on the pair engine; the VGG8B convolutions, 10⁸–10¹⁰ MACs, gain 1.6–2×;
/// BENCHMARKS.md).
const MIN_MACS: usize = 1 << 24;

/// Whether a product of this shape is worth the tile engine (see [`MIN_K`], [`MIN_MACS`]);
/// the engine itself computes any shape exactly.
pub(super) fn worth_it(m: usize, n: usize, k: usize) -> bool {
    k >= MIN_K && worth_it_nchw(m, n, k)
}

/// [`worth_it`] for a convolution's product into its epilogue ([`gemm_nchw`]): any K. Its
/// blocks of C go from the accumulator tiles through the epilogue (one K block), so a short
/// reduction costs no `i64` sums written out and read back, which the other engines' `i64` C
/// does (VGG8B's first convolution, `50176×9·128ᵀ`: a 51 MB C per batch; a Sapphire
/// Rapids-class Xeon, one thread: VGG8B inference 280–296 → 280–304 images/s; BENCHMARKS.md).
pub(super) fn worth_it_nchw(m: usize, n: usize, k: usize) -> bool {
    m.saturating_mul(n).saturating_mul(k) >= MIN_MACS
}

/// The largest magnitude `p` balanced digits hold: `127·(256ᵖ − 1)/255` (`127`, `32639`, …).
pub(super) fn digit_bound(p: usize) -> u64 {
    127 * ((1u64 << (8 * p)) - 1) / 255
}

/// Digits needed for values of magnitude at most `max` (`None` beyond [`MAX_PARTS`]).
pub(super) fn parts_for(max: u64) -> Option<usize> {
    (1..=MAX_PARTS).find(|&p| max <= digit_bound(p))
}

/// The balanced digits of 64 values (`p` of them each, least significant first, `|v| ≤
/// digit_bound(p)`), digit by digit into row `r` of each digit's stage: `d = v as i8` is `v`'s
/// residue in `[−128, 127]`, and `(v − d)/256` is exact. `v` is consumed.
#[inline(always)]
pub(super) fn split_chunk(v: &mut [i32; CHUNK], p: usize, out: &mut [Stage; MAX_PARTS], r: usize) {
    for st in out.iter_mut().take(p - 1) {
        for (di, vi) in st[r].iter_mut().zip(v.iter_mut()) {
            *di = *vi as i8;
            *vi = (*vi - i32::from(*di)) >> 8;
        }
    }
    // What is left is the top digit, in [−128, 127] by the bound.
    for (di, &vi) in out[p - 1][r].iter_mut().zip(v.iter()) {
        *di = vi as i8;
    }
}

/// Which of the two tile layouts an operand is written in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A: tile row `r` = operand row `r`'s 64 digits of the chunk.
    Rows,
    /// B: tile row `q` = for each operand row `l`, its digits `4q..4q+4` of the chunk.
    Quads,
}

/// An operand written as digit tiles (module docs), with how many digits each value has.
pub(super) struct Digits {
    /// The tiles start at `data[lead]`, the buffer's first 64-byte boundary: a tile row is then
    /// one cache line, where a row straddling two lines costs `tileloadd` twice the line fills
    /// (the system allocator returns large buffers 16 or 32 bytes past a line).
    data: Vec<i8>,
    lead: usize,
    /// Operand rows.
    rows: usize,
    /// Blocks of [`ROWS`] rows.
    blocks: usize,
    /// Digits per value.
    parts: usize,
    /// K chunks of [`CHUNK`] bytes.
    chunks: usize,
    /// The first row block the tiles hold: 0 for a whole operand, a band's first block for
    /// the tiles a task packs band by band ([`Bands`]).
    first: usize,
}

impl Digits {
    /// Tile `chunk` of block-and-digit `x = block·parts + digit` (a block the tiles hold).
    fn tile(&self, x: usize, chunk: usize) -> *const i8 {
        let x = x - self.first * self.parts;
        self.data[self.lead + (x * self.chunks + chunk) * TILE_BYTES..].as_ptr()
    }

    fn release(self) {
        buffers::give(self.data);
    }
}

/// One operand of a product: a matrix view or a row source (convolution patches).
pub(super) enum Operand<'a, 'v, T: Int> {
    View(&'a ArrayView2<'v, T>),
    Rows(&'a dyn RowSource),
    Filters(Filters<'a>),
}

/// Convolution weights `F×C×k×k` (row-major) read as the `F × (k·k·C)` matrix whose columns
/// follow the channels-last patches (`filters::hwc_weights`' matrix), reordered row by row as
/// they are packed instead of written out whole first: the matrix (18 MB for VGG8B's
/// convolutions, most of it not in cache) is not written and read back for every batch.
#[derive(Clone, Copy)]
pub(super) struct Filters<'a> {
    values: &'a [i32],
    filters: usize,
    channels: usize,
    taps: usize,
}

impl<'a> Filters<'a> {
    /// The weights, when they are in standard layout.
    pub(super) fn new(w: ndarray::ArrayView4<'a, i32>) -> Option<Self> {
        let (f, c, k, _) = w.dim();
        let values = w.to_slice()?;
        // The gather's lane offsets (`avx512::taps_outer`) are i32.
        i32::try_from(16 * k * k).ok()?;
        Some(Filters {
            values,
            filters: f,
            channels: c,
            taps: k * k,
        })
    }

    fn cols(&self) -> usize {
        self.channels * self.taps
    }

    fn rows(&self) -> usize {
        self.filters
    }

    /// Row `r` (filter `r`, taps outer, channels inner) through `f` into `out`.
    #[inline(always)]
    fn map_row<D>(&self, r: usize, out: &mut [D], f: impl Fn(i32) -> D) {
        let (c, kk) = (self.channels, self.taps);
        let filter = &self.values[r * c * kk..(r + 1) * c * kk];
        taps_outer(filter, (c, kk), 0, out, f);
    }

    /// [`Filters::map_row`] into `i32`: sixteen channels per gather on AVX-512
    /// (`avx512::taps_outer`, checked at first use against the loop), the rest by the loop.
    #[inline(always)]
    fn row_i32(&self, r: usize, out: &mut [i32]) {
        let (c, kk) = (self.channels, self.taps);
        let filter = &self.values[r * c * kk..(r + 1) * c * kk];
        let mut done = 0;
        if gather_usable() {
            let out = &mut out[..c * kk];
            // SAFETY: `gather_usable` saw AVX-512 F allowed and detected; `filter` holds C·k·k
            // values and `out` as many; 16·k·k fits i32 (`Filters::new`).
            done = unsafe { avx512::taps_outer(filter, c, kk, out) };
        }
        taps_outer(filter, (c, kk), done, out, |v| v);
    }
}

/// Whether [`avx512::taps_outer`] may run: AVX-512 allowed and detected, and its first-use
/// check against the loop passed.
#[inline(always)]
fn gather_usable() -> bool {
    static CHECK: crate::kernels::self_check::SelfCheck =
        crate::kernels::self_check::SelfCheck::new("the AVX-512 filter gather");
    loop_build() == Isa::Avx512Vnni && CHECK.passed(gather_self_check)
}

/// The gather against the loop: 37 channels (two gathers and a tail of five) of nine taps, 32
/// of nine and of one (no tail), values with no pattern.
fn gather_self_check() -> bool {
    [(37usize, 9usize), (32, 9), (32, 1)]
        .into_iter()
        .all(|(c, kk)| {
            let filter: Vec<i32> = (0..c * kk)
                .map(|i| (i as i32).wrapping_mul(-1_640_531_527) ^ 0x2545_f491)
                .collect();
            let mut want = alloc::vec![0i32; c * kk];
            taps_outer(&filter, (c, kk), 0, &mut want, |v| v);
            let mut got = alloc::vec![1i32; c * kk];
            // SAFETY: only called once `loop_build` found AVX-512 allowed and detected; the sizes
            // are the kernel's contract.
            let done = unsafe { avx512::taps_outer(&filter, c, kk, &mut got) };
            taps_outer(&filter, (c, kk), done, &mut got, |v| v);
            done == c / 16 * 16 && got == want
        })
}

impl<T: Int> Operand<'_, '_, T> {
    pub(super) fn rows(&self) -> usize {
        match self {
            Operand::View(a) => a.nrows(),
            Operand::Rows(s) => s.rows(),
            Operand::Filters(w) => w.rows(),
        }
    }

    pub(super) fn cols(&self) -> usize {
        match self {
            Operand::View(a) => a.ncols(),
            Operand::Rows(s) => s.cols(),
            Operand::Filters(w) => w.cols(),
        }
    }

    /// An upper bound of `|v|` for the `i64` proof, and the digits the values need: a type of at
    /// most 8 bits needs one whatever its values (`i8` holds −128 too), wider views are scanned.
    fn bound_and_parts(&self) -> (u64, Option<usize>) {
        let max = match self {
            Operand::View(_) if T::BOUND <= 128 => return (T::BOUND, Some(1)),
            Operand::View(a) => pack::max_abs_exact(a),
            Operand::Rows(s) => s.bound(),
            Operand::Filters(w) => {
                let all = ArrayView2::from_shape((1, w.values.len()), w.values).expect("one row");
                pack::max_abs_exact(&all)
            }
        };
        (max, parts_for(max))
    }

    /// Row `r` as bytes into `out`, for an operand of one digit (`|v| ≤ 127`: every value is
    /// its own digit); `wide` is scratch for a row source's `i16` values.
    #[inline(always)]
    fn fill_bytes(&self, r: usize, out: &mut [i8], wide: &mut [i16]) {
        match self {
            Operand::View(a) => map_row(a, r, out, |v| {
                let v: i32 = v.into();
                v as i8
            }),
            Operand::Rows(s) => s.row_bytes(r, out, wide),
            Operand::Filters(w) => w.map_row(r, out, |v| v as i8),
        }
    }

    /// Row `r` into `out` (`wide` is scratch for a row source's `i16` values).
    #[inline(always)]
    fn fill(&self, r: usize, out: &mut [i32], wide: &mut [i16]) {
        match self {
            Operand::View(a) => map_row(a, r, out, |v| v.into()),
            Operand::Filters(w) => w.row_i32(r, out),
            Operand::Rows(s) => {
                s.row(r, wide);
                for (o, &v) in out.iter_mut().zip(wide.iter()) {
                    *o = i32::from(v);
                }
            }
        }
    }
}

/// `out[j] = f(a[r][j])`: a contiguous row as a slice loop (which vectorises), else element by
/// element.
#[inline(always)]
fn map_row<T: Int, D>(a: &ArrayView2<'_, T>, r: usize, out: &mut [D], f: impl Fn(T) -> D) {
    let row = a.row(r);
    match row.as_slice() {
        Some(vals) => {
            for (o, &v) in out.iter_mut().zip(vals) {
                *o = f(v);
            }
        }
        None => {
            for (o, &v) in out.iter_mut().zip(row) {
                *o = f(v);
            }
        }
    }
}

/// Write an operand as digit tiles in `layout`, `parts` digits per value (enough for its
/// bound), on all threads when it is large.
fn pack<T: Int>(src: &Operand<'_, '_, T>, parts: usize, layout: Layout) -> Digits {
    let blocks = src.rows().div_ceil(ROWS);
    let mut d = Digits {
        data: Vec::new(),
        lead: 0,
        rows: src.rows(),
        blocks,
        parts,
        chunks: src.cols().div_ceil(CHUNK),
        first: 0,
    };
    pack_blocks(src, layout, 0..blocks, &mut d, true);
    d
}

/// The tiles of row blocks `range` of `src` into `d` (whose `parts` they take), its buffer
/// reused when large enough; on all threads when `parallel` and they are many.
fn pack_blocks<T: Int>(
    src: &Operand<'_, '_, T>,
    layout: Layout,
    range: core::ops::Range<usize>,
    d: &mut Digits,
    parallel: bool,
) {
    let (rows, k, parts) = (src.rows(), src.cols(), d.parts);
    let chunks = k.div_ceil(CHUNK);
    let per_block = parts * chunks * TILE_BYTES;
    let need = range.len() * per_block + LINE - 1;
    if d.data.len() < need {
        buffers::give(core::mem::take(&mut d.data));
        d.data = buffers::take_dirty::<i8>(need);
    }
    let lead = d.data.as_ptr().align_offset(LINE).min(LINE - 1);
    let tiles = &mut d.data[lead..lead + range.len() * per_block];
    // The same safe code compiled for AVX-512 where the processor has it (every AMX processor
    // so far does), else for the baseline.
    let wide = loop_build() == Isa::Avx512Vnni;
    let first = range.start;
    let fill_block = |j: usize, dst: &mut [i8]| {
        let shape = (rows, k, chunks, parts, layout);
        if wide {
            // SAFETY: AVX-512 F and BW are detected (their detection is part of Avx512Vnni's).
            unsafe { pack_block_avx512(src, first + j, dst, shape) }
        } else {
            pack_block(src, first + j, dst, shape, quads_portable)
        }
    };
    if per_block > 0 {
        if parallel && tiles.len() >= 1 << 18 {
            par::for_each_chunk_mut(tiles, per_block, fill_block);
        } else {
            tiles
                .chunks_exact_mut(per_block)
                .enumerate()
                .for_each(|(j, dst)| fill_block(j, dst));
        }
    }
    (d.lead, d.chunks, d.first) = (lead, chunks, first);
}

/// An A operand a task packs itself, band by band ([`task`]), instead of the whole operand
/// being packed before the product.
trait Bands: Sync {
    /// The tiles of row blocks `range` into `d` (on the calling thread).
    fn pack_band(&self, range: core::ops::Range<usize>, d: &mut Digits);
}

impl<T: Int> Bands for Operand<'_, '_, T> {
    fn pack_band(&self, range: core::ops::Range<usize>, d: &mut Digits) {
        pack_blocks(self, Layout::Rows, range, d, false);
    }
}

/// An operand's rows, K, K chunks, digits and layout.
type Shape = (usize, usize, usize, usize, Layout);

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_block_avx512<T: Int>(src: &Operand<'_, '_, T>, b: usize, dst: &mut [i8], s: Shape) {
    pack_block(src, b, dst, s, |stage, tile| {
        // SAFETY: AVX-512 F is enabled here.
        unsafe { avx512::quads16(stage, tile) }
    })
}

/// One digit of a row block's chunk: sixteen rows of 64 bytes, before they become a tile.
pub(super) type Stage = [[i8; CHUNK]; ROWS];

/// The Quads tile of a staged digit: tile row `q` holds quad `q` (bytes `4q..4q + 4`) of each
/// of the sixteen rows, in row order — a 16×16 transpose of 4-byte words (the AVX-512 build
/// transposes in registers, `avx512::quads16`).
fn quads_portable(stage: &Stage, tile: &mut [i8]) {
    for (q, out) in tile.chunks_exact_mut(CHUNK).enumerate() {
        for (quad, row) in out.chunks_exact_mut(4).zip(stage) {
            quad.copy_from_slice(&row[4 * q..][..4]);
        }
    }
}

/// The tiles of row block `b` (`dst`: its digits × K chunks tiles).
///
/// One digit (Rows): each live row narrowed once into bytes, its chunks copied to their tiles.
/// Otherwise the block's live rows are read once, and chunk by chunk each row is split into
/// digits 64 values at a time — a K tail padded with zeros, whose digits are zero — each digit
/// staged as a row of sixteen and the staged digit written as its tile at once: copied (Rows)
/// or transposed by `quads` (Quads). Writing each row's sixteen quads to their places in the
/// tile one by one instead was most of the time of packing a two-digit `200×784` weight
/// matrix.
#[inline(always)]
fn pack_block<T: Int>(
    src: &Operand<'_, '_, T>,
    b: usize,
    dst: &mut [i8],
    s: Shape,
    quads: impl Fn(&Stage, &mut [i8]),
) {
    let (rows, k, chunks, parts, layout) = s;
    let live = ROWS.min(rows - b * ROWS);
    let mut wide = alloc::vec![0i16; k];
    if parts == 1 && layout == Layout::Rows {
        if live < ROWS {
            dst.fill(0); // rows past the operand stay zero
        }
        let mut bytes = alloc::vec![0i8; chunks * CHUNK];
        for r in 0..live {
            src.fill_bytes(b * ROWS + r, &mut bytes[..k], &mut wide);
            for (chunk, vals) in bytes.chunks_exact(CHUNK).enumerate() {
                dst[chunk * TILE_BYTES + r * CHUNK..][..CHUNK].copy_from_slice(vals);
            }
        }
        return;
    }
    let padded = chunks * CHUNK;
    let mut vals = alloc::vec![0i32; live * padded];
    for (r, row) in vals.chunks_exact_mut(padded).enumerate() {
        src.fill(b * ROWS + r, &mut row[..k], &mut wide);
    }
    // Rows past the operand stay zero in every stage.
    let mut stage = [[[0i8; CHUNK]; ROWS]; MAX_PARTS];
    for chunk in 0..chunks {
        for (r, row) in vals.chunks_exact(padded).enumerate() {
            let mut v: [i32; CHUNK] = row[chunk * CHUNK..][..CHUNK].try_into().expect("one chunk");
            split_chunk(&mut v, parts, &mut stage, r);
        }
        for (i, st) in stage.iter().enumerate().take(parts) {
            let tile = &mut dst[(i * chunks + chunk) * TILE_BYTES..][..TILE_BYTES];
            match layout {
                Layout::Rows => {
                    for (t, row) in tile.chunks_exact_mut(CHUNK).zip(st) {
                        t.copy_from_slice(row);
                    }
                }
                Layout::Quads => quads(st, tile),
            }
        }
    }
}

/// The digits of both operands if the tile engine can compute `A·Bᵀ` exactly (module docs),
/// `Ok(None)` if it cannot (the caller takes another engine), the overflow error if no engine
/// can (the product may exceed `i64`).
fn plan<A: Int, B: Int>(
    a: &Operand<'_, '_, A>,
    b: &Operand<'_, '_, B>,
) -> Result<Option<(usize, usize)>> {
    let k = a.cols();
    let ((ma, pa), (mb, pb)) = (a.bound_and_parts(), b.bound_and_parts());
    prove_i64(ma, mb, k)?;
    let (Some(pa), Some(pb)) = (pa, pb) else {
        return Ok(None);
    };
    let mut terms = 0u128;
    for i in 0..pa {
        for j in 0..pb {
            terms += (1u128 << (8 * (i + j))) * (1 << 14) * k as u128;
        }
    }
    Ok((terms <= i64::MAX as u128).then_some((pa, pb)))
}

/// `C = A·Bᵀ` on the tile engine, or `Ok(None)` when it cannot take the operands.
pub(super) fn gemm<A: Int, B: Int>(
    a: Operand<'_, '_, A>,
    b: Operand<'_, '_, B>,
) -> Result<Option<Array2<i64>>> {
    let Some((pa, pb)) = plan(&a, &b)? else {
        return Ok(None);
    };
    let (m, n) = (a.rows(), b.rows());
    let (da, db) = (pack(&a, pa, Layout::Rows), pack(&b, pb, Layout::Quads));
    let c = product(&da, &db);
    da.release();
    db.release();
    Ok(Some(
        Array2::from_shape_vec((m, n), c).expect("m*n elements"),
    ))
}

/// The product of two packed operands (equal K chunks), row-major `a.rows × b.rows`.
fn product(a: &Digits, b: &Digits) -> Vec<i64> {
    let (m, n) = (a.rows, b.rows);
    debug_assert_eq!(a.chunks, b.chunks);
    let mut c = buffers::take_dirty::<i64>(m * n);
    if m == 0 || n == 0 || a.chunks == 0 {
        c.fill(0);
        return c;
    }
    let (kb, macs) = schedule(a, b);
    let per_task = par::rows_per_task(a.blocks, macs / 4);
    par::for_each_chunk_mut(&mut c, per_task * ROWS * n, |t, cblock| {
        // SAFETY: the tile engine runs only where `Isa::Amx` is detected (AMX present and
        // permitted: `kernel::available`), which the dispatch checked before packing.
        let mut sink = Dense { c: cblock, n };
        unsafe { task(a, None, b, t * per_task, &mut sink, kb, &mut sum_sets(b)) };
    });
    c
}

/// How a product of two packed operands (equal K chunks, at least one) runs: its `i32` block
/// length in chunks (equal K blocks of at most [`BLOCK_CHUNKS`]) and its tile multiply-adds
/// (what the split into tasks weighs).
fn schedule(a: &Digits, b: &Digits) -> (usize, usize) {
    let kb = a.chunks.div_ceil(a.chunks.div_ceil(BLOCK_CHUNKS));
    (kb, a.rows * b.rows * a.chunks * CHUNK * a.parts * b.parts)
}

/// Pairs of tiles of `kb`-chunk K blocks that fit `bytes` (at least one).
fn pairs_within(bytes: usize, kb: usize) -> usize {
    (bytes / (2 * kb * TILE_BYTES)).max(1)
}

/// The size of the fewest equal sets of at most `most` that hold `total`.
fn balanced(total: usize, most: usize) -> usize {
    total.div_ceil(total.div_ceil(most.max(1)).max(1)).max(1)
}

/// The accumulator sets [`task`] needs for B's tiles.
fn sum_sets(b: &Digits) -> Vec<Accumulators> {
    let sets = (b.blocks * b.parts).div_ceil(2).min(SUM_SETS);
    (0..sets)
        .map(|_| Accumulators([0i32; 4 * ROWS * ROWS]))
        .collect()
}

/// A convolution's `C = A·Bᵀ` (rows: the `images·hw` output positions, image-major; columns:
/// the filters) on the tile engine straight into the `images × F × hw` output, `epilogue(c +
/// bias[f])` per entry, or `Ok(None)` when the engine cannot take the operands (or K is 0,
/// which the other engines' path handles). C is never whole in memory. Where each block of C
/// is complete when first written — one K block, one-digit A, and B's digits paired within
/// its blocks (one or two digits) — each block goes from the accumulator tiles through the
/// epilogue into the output ([`fused_task`]; the VGG convolutions). Otherwise a task computes
/// a band of [`BAND_BLOCKS`] row blocks at a time into a buffer that stays in L2 and writes the
/// band's positions out ([`band_task`]). Both write through `nchw::image_positions`, the loop
/// [`rows_to_nchw`](crate::kernels::nchw::rows_to_nchw) applies to a whole C. A task owns
/// whole images of the output; a row block that two tasks' images share is computed by both,
/// each writing its own rows.
///
/// A is not packed ahead either: each task packs its own row blocks' tiles, one band at a
/// time, just before multiplying them ([`task`]'s `bands`), so they are written and read in L2.
/// Packed whole first, the patches' tiles (58 MB per batch of 64 for VGG8B's second
/// convolution) went out to memory and were read back from it: on a Sapphire Rapids-class
/// Xeon (2 cores) VGG8B inference 516–523 → 627–656 images/s, a training step 0.219–0.228 →
/// 0.189–0.203 s (BENCHMARKS.md).
pub(super) fn gemm_nchw<A: Int, B: Int, O: NchwLane, E: nchw::Epilogue<O>>(
    a: Operand<'_, '_, A>,
    b: Operand<'_, '_, B>,
    (images, hw): (usize, usize),
    bias: &[i64],
    epilogue: &E,
) -> Result<Option<Vec<O>>> {
    if a.cols() == 0 {
        return Ok(None);
    }
    let Some((pa, pb)) = plan(&a, &b)? else {
        return Ok(None);
    };
    let (m, f) = (a.rows(), b.rows());
    debug_assert_eq!(m, images * hw);
    debug_assert_eq!(bias.len(), f);
    // A (the patches, up to 58 MB for a VGG layer) is packed by each task, band by band, into
    // a buffer that stays in L2 (`task`); only its shape is known here.
    let da = Digits {
        data: Vec::new(),
        lead: 0,
        rows: m,
        blocks: m.div_ceil(ROWS),
        parts: pa,
        chunks: a.cols().div_ceil(CHUNK),
        first: 0,
    };
    let db = pack(&b, pb, Layout::Quads);
    let mut out = buffers::take_dirty::<O>(images * f * hw);
    let per_image = f * hw;
    if per_image > 0 {
        let (kb, macs) = schedule(&da, &db);
        let per_task = par::rows_per_task(images, macs / 4);
        // One K block, one-digit A and B pairs that never split a block's digits: each
        // block of C is written once, complete, and can go through the epilogue right away.
        let fused = kb == da.chunks && pa == 1 && pb <= 2;
        par::for_each_chunk_mut(&mut out, per_task * per_image, |t, chunk| {
            let first = t * per_task;
            let images = Images {
                owned: (first * hw, (first + chunk.len() / per_image) * hw),
                out: chunk,
                first,
                hw,
                f,
                bias,
                epilogue,
            };
            if fused {
                fused_task(&da, Some(&a), &db, kb, images);
            } else {
                band_task(&da, Some(&a), &db, kb, images);
            }
        });
    }
    da.release();
    db.release();
    Ok(Some(out))
}

/// A task's part of a convolution's output: the rows `owned` of C (whole images from image
/// `first` on, of `hw` positions), written to `out` (those images' `F × hw` outputs) through
/// `epilogue(c + bias[f])`.
struct Images<'o, 'e, O, E> {
    out: &'o mut [O],
    owned: (usize, usize),
    first: usize,
    hw: usize,
    f: usize,
    bias: &'e [i64],
    epilogue: &'e E,
}

impl<O: NchwLane, E: nchw::Epilogue<O>> Images<'_, '_, O, E> {
    /// Rows `g0..g0 + rows` of C, filters `c0..c0 + cols` (`z`: those rows, `cols` sums each),
    /// where they are this task's, image by image.
    fn write(&mut self, z: &[i64], g0: usize, rows: usize, (c0, cols): (usize, usize)) {
        let (hw, f) = (self.hw, self.f);
        let bias = &self.bias[c0..][..cols];
        let (mut r, end) = (g0.max(self.owned.0), (g0 + rows).min(self.owned.1));
        while r < end {
            let (img, s0) = (r / hw, r % hw);
            let s1 = hw.min(s0 + (end - r));
            // From filter row c0 of the image on: filter `c0 + fi` at `fi·hw`.
            let o = &mut self.out[((img - self.first) * f + c0) * hw..];
            let zr = &z[(r - g0) * cols..][..(s1 - s0) * cols];
            image_positions(zr, o, (cols, hw), bias, self.epilogue, (s0, s1));
            r += s1 - s0;
        }
    }
}

/// A task's images ([`gemm_nchw`]) by bands of [`BAND_BLOCKS`] row blocks of C in a buffer that
/// stays in L2, each band written out once computed.
fn band_task<O: NchwLane, E: nchw::Epilogue<O>>(
    a: &Digits,
    bands: Option<&dyn Bands>,
    b: &Digits,
    kb: usize,
    mut images: Images<'_, '_, O, E>,
) {
    let f = b.rows;
    let (r0, r1) = images.owned;
    let mut band = buffers::take_dirty::<i64>(BAND_BLOCKS * ROWS * f);
    let mut sums = sum_sets(b);
    let mut blk = r0 / ROWS;
    while blk * ROWS < r1 {
        let rows = (BAND_BLOCKS * ROWS).min(a.rows - blk * ROWS);
        let cb = &mut band[..rows * f];
        // SAFETY: the tile engine runs only where `Isa::Amx` is detected (AMX present and
        // permitted), which the dispatch checked before packing; `cb` holds whole rows of C
        // from block `blk` on, the last block cut only at C's end.
        unsafe { task(a, bands, b, blk, &mut Dense { c: cb, n: f }, kb, &mut sums) };
        images.write(cb, blk * ROWS, rows, (0, f));
        blk += BAND_BLOCKS;
    }
    buffers::give(band);
}

/// [`band_task`] where every block of C is complete when written (see [`gemm_nchw`]): each
/// goes through the epilogue from the accumulator tiles, while they are in L1, straight
/// into the output — no band of `i64` sums written and read back.
fn fused_task<O: NchwLane, E: nchw::Epilogue<O>>(
    a: &Digits,
    bands: Option<&dyn Bands>,
    b: &Digits,
    kb: usize,
    images: Images<'_, '_, O, E>,
) {
    let (r0, r1) = images.owned;
    let blk = r0 / ROWS;
    let mut sink = Epilogue {
        rows: (r1.div_ceil(ROWS) * ROWS).min(a.rows) - blk * ROWS,
        base: blk * ROWS,
        images,
    };
    // SAFETY: as band_task's; the sink covers the task's row blocks, the last cut only at
    // C's end.
    unsafe { task(a, bands, b, blk, &mut sink, kb, &mut sum_sets(b)) };
}

/// Where [`task`] puts each block of C once its tiles are combined.
trait Sink {
    /// Rows of C from the task's first block on.
    fn rows(&self) -> usize;
    /// `C (+)= Σ_g tiles[g] << shifts[g]` over the block's live entries.
    fn put<const G: usize>(&mut self, tiles: [&[i32]; G], shifts: [u32; G], at: Block);
}

/// Row `r` of a block, its tiles combined: `out[col] = Σ_g tiles[g][r][col] << shifts[g]`
/// for the first `out.len()` columns. A whole row of sixteen runs on fixed-size arrays, which
/// the compiler turns into vector widening, shifts and adds (a loop of variable length did not
/// vectorise: scalar `movslq`/`shl`/`add` held most of a short-K product's time).
#[inline(always)]
fn row_sum<const G: usize>(tiles: &[&[i32]; G], shifts: [u32; G], r: usize, out: &mut [i64]) {
    if let Ok(whole) = <&mut [i64; ROWS]>::try_from(&mut *out) {
        let mut v = [0i64; ROWS];
        for g in 0..G {
            let t: &[i32; ROWS] = tiles[g][r * ROWS..][..ROWS].try_into().expect("a tile row");
            for (vc, &tc) in v.iter_mut().zip(t) {
                *vc += i64::from(tc) << shifts[g];
            }
        }
        *whole = v;
        return;
    }
    for (col, o) in out.iter_mut().enumerate() {
        *o = (0..G)
            .map(|g| i64::from(tiles[g][r * ROWS + col]) << shifts[g])
            .sum();
    }
}

/// Rows of C in memory (`n` columns), summed into across K blocks and digit pairs.
struct Dense<'c> {
    c: &'c mut [i64],
    n: usize,
}

impl Sink for Dense<'_> {
    fn rows(&self) -> usize {
        self.c.len() / self.n
    }

    #[inline(always)]
    fn put<const G: usize>(&mut self, tiles: [&[i32]; G], shifts: [u32; G], at: Block) {
        let mut v = [0i64; ROWS];
        for r in 0..at.rows {
            let crow = &mut self.c[(at.r0 + r) * self.n + at.c0..][..at.cols];
            if at.first {
                row_sum(&tiles, shifts, r, crow);
            } else {
                let v = &mut v[..at.cols];
                row_sum(&tiles, shifts, r, v);
                for (cv, &x) in crow.iter_mut().zip(v.iter()) {
                    *cv += x;
                }
            }
        }
    }
}

/// A task's images written from complete blocks of C ([`fused_task`]).
struct Epilogue<'o, 'e, O, E> {
    /// Rows of C the task's blocks cover, from `base` (its first block's first row).
    rows: usize,
    base: usize,
    images: Images<'o, 'e, O, E>,
}

impl<O: NchwLane, E: nchw::Epilogue<O>> Sink for Epilogue<'_, '_, O, E> {
    fn rows(&self) -> usize {
        self.rows
    }

    #[inline(always)]
    fn put<const G: usize>(&mut self, tiles: [&[i32]; G], shifts: [u32; G], at: Block) {
        debug_assert!(at.first, "a fused block is written once, complete");
        // The block's sums, position-major with `cols` per row, then the epilogue's loop (the
        // band path's, compiled for the widest build).
        let mut v = [0i64; ROWS * ROWS];
        for r in 0..at.rows {
            row_sum(&tiles, shifts, r, &mut v[r * at.cols..][..at.cols]);
        }
        let g0 = self.base + at.r0;
        self.images.write(&v, g0, at.rows, (at.c0, at.cols));
    }
}

/// The four accumulator tiles as `tilestored` writes them, on cache lines (as [`Digits`]).
#[repr(C, align(64))]
struct Accumulators([i32; 4 * ROWS * ROWS]);

/// Rows `b0·16 ..` of C into `sink` (as many rows as it holds): every pair of A tiles against
/// every pair of B tiles, one `i32` block of at most `kb` chunks at a time, each block of C
/// handed to the sink once its tiles are combined. With `bands`, `a` gives only A's shape:
/// the task packs each band of A's row blocks itself (all of their K chunks) into one buffer,
/// reused band after band, just before the band is multiplied.
///
/// The pairs are taken in cache-sized sets: a band of A pairs (at most [`A_BAND_BYTES`] of one
/// K block's tiles) and, within it, a group of B pairs (at most [`B_GROUP_BYTES`] and
/// [`SUM_SETS`] pairs, B cut into groups of equal size), every A pair of the band against
/// every B pair of the group. Each tile a `tileloadd` reads is then in L2 for all but its
/// first use; taking every B pair per A pair instead streamed all of B (4.7 MB for a 512-filter layer with two-digit weights) from L3
/// once per 32 rows of C, and its loads stalled the tile unit (a Sapphire Rapids-class Xeon,
/// one thread: `3136×4608·512ᵀ` 231–249 → 306–342 MMAC/s; BENCHMARKS.md).
///
/// Per A pair, group and `i32` block, every pair of the group is multiplied first, into its
/// own set of four sums (`sums`), and only then are the sets added into C: the tile products
/// run back to back, so the processor overlaps one's loads with the previous one's arithmetic,
/// which an epilogue between every two of them prevented.
///
/// The first contribution to each entry stores instead of adding (C is not zeroed): it is the
/// one of both operands' lowest digit in the first K block, which comes first because every
/// loop — bands of A pairs, groups of B pairs, A pairs, K blocks, B pairs — runs in ascending
/// order, and the first band, group or pair of either operand's tiles that reaches a block of
/// rows (or columns) holds its lowest digit.
///
/// # Safety
/// AMX must be available ([`kernel::available`]), and AVX-512 F and BW, which `Isa::Amx`'s
/// detection requires (the sinks' loops are compiled for them).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn task<S: Sink>(
    a: &Digits,
    bands: Option<&dyn Bands>,
    b: &Digits,
    b0: usize,
    sink: &mut S,
    kb: usize,
    sums: &mut [Accumulators],
) {
    let blocks = sink.rows().div_ceil(ROWS);
    let xs = (b0 * a.parts..(b0 + blocks) * a.parts).collect::<Vec<_>>();
    let ys = (0..b.blocks * b.parts).collect::<Vec<_>>();
    debug_assert!(sums.len() >= ys.len().div_ceil(2).min(SUM_SETS));
    // SAFETY: AMX is available (the caller's contract).
    unsafe { kernel::configure() };
    let band = pairs_within(A_BAND_BYTES, kb);
    let group = balanced(
        ys.len().div_ceil(2),
        pairs_within(B_GROUP_BYTES, kb).min(SUM_SETS),
    );
    // A band of A packed here lives in this buffer (in L2) while the band is multiplied.
    let mut local = bands.map(|_| Digits {
        data: Vec::new(),
        ..*a
    });
    for xband in xs.chunks(2 * band) {
        let a: &Digits = match (bands, local.as_mut()) {
            (Some(src), Some(l)) => {
                let (first, last) = (xband[0] / a.parts, xband[xband.len() - 1] / a.parts);
                src.pack_band(first..last + 1, l);
                l
            }
            _ => a,
        };
        for group in ys.chunks(2 * group) {
            for xp in xband.chunks(2) {
                let mut k0 = 0;
                while k0 < a.chunks {
                    let len = kb.min(a.chunks - k0);
                    let ta = [a.tile(xp[0], k0), a.tile(xp[xp.len() - 1], k0)];
                    for (yp, acc) in group.chunks(2).zip(sums.iter_mut()) {
                        let tb = [b.tile(yp[0], k0), b.tile(yp[yp.len() - 1], k0)];
                        // SAFETY: configured above; each pointer starts `len` consecutive tiles
                        // of its block and digit (k0 + len ≤ chunks); `acc` holds four tiles;
                        // the sums fit i32 (len ≤ BLOCK_CHUNKS, module docs).
                        unsafe { kernel::dot_2x2(ta, tb, len, acc.0.as_mut_ptr()) };
                    }
                    for (yp, acc) in group.chunks(2).zip(sums.iter()) {
                        add_tiles(
                            &acc.0,
                            sink,
                            (xp, a.parts, b0),
                            (yp, b.parts),
                            b.rows,
                            k0 == 0,
                        );
                    }
                    k0 += len;
                }
            }
        }
    }
    if let Some(l) = local {
        l.release();
    }
    // SAFETY: as configure.
    unsafe { kernel::release() };
}

/// Add the four accumulator tiles of A tiles `xp` × B tiles `yp` into C: the tiles that land
/// on the same block of C (digits of the same rows and columns) are combined, each shifted by
/// its digits' weight `256^(i+j)`, and written once — stored instead of added where the group
/// holds the entry's first contribution (the lowest digits in the first K block).
#[inline(always)]
fn add_tiles<S: Sink>(
    acc: &[i32; 4 * ROWS * ROWS],
    sink: &mut S,
    (xp, pa, b0): (&[usize], usize, usize),
    (yp, pb): (&[usize], usize),
    n: usize,
    first_block: bool,
) {
    // (block row, block column, tile, shift) of every live accumulator.
    let mut live = [(0usize, 0usize, 0usize, 0u32); 4];
    let mut count = 0;
    for (i, &x) in xp.iter().enumerate() {
        for (j, &y) in yp.iter().enumerate() {
            let shift = 8 * (x % pa + y % pb) as u32;
            live[count] = (x / pa - b0, y / pb, 2 * i + j, shift);
            count += 1;
        }
    }
    let mut done = [false; 4];
    for g in 0..count {
        if done[g] {
            continue;
        }
        let (rb, cb, _, _) = live[g];
        let mut tiles = [&acc[..0]; 4];
        let mut shifts = [0u32; 4];
        let mut members = 0;
        for (h, &(r, c, t, sh)) in live.iter().enumerate().take(count).skip(g) {
            if (r, c) == (rb, cb) {
                done[h] = true;
                tiles[members] = &acc[t * ROWS * ROWS..][..ROWS * ROWS];
                shifts[members] = sh;
                members += 1;
            }
        }
        // The lowest digits of both operands: shift 0 (digit 0 of each).
        let first = first_block && shifts[..members].contains(&0);
        let at = Block {
            rows: ROWS.min(sink.rows() - rb * ROWS),
            cols: ROWS.min(n - cb * ROWS),
            r0: rb * ROWS,
            c0: cb * ROWS,
            first,
        };
        match members {
            1 => sink.put::<1>([tiles[0]], [shifts[0]], at),
            2 => sink.put::<2>([tiles[0], tiles[1]], [shifts[0], shifts[1]], at),
            3 => sink.put::<3>(
                [tiles[0], tiles[1], tiles[2]],
                [shifts[0], shifts[1], shifts[2]],
                at,
            ),
            _ => sink.put::<4>(tiles, shifts, at),
        }
    }
}

/// Where a group of tiles lands in C: live rows and columns, its first row (from the task's
/// first block) and column, and whether it stores (holds the entries' first contribution).
#[derive(Clone, Copy)]
struct Block {
    rows: usize,
    cols: usize,
    r0: usize,
    c0: usize,
    first: bool,
}

/// Products with every digit count on shapes that cross every tile and block edge, against the
/// exact `i64` sums: does the tile engine agree? (Only called where AMX is available.)
pub(super) fn self_check() -> bool {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: i64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let v = (state.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) as i64;
        match v % 5 {
            0 => bound,
            1 => -bound,
            _ => v % (2 * bound + 1) - bound,
        }
    };
    let (m, n, k) = (2 * ROWS + 3, 3 * ROWS + 5, MIN_K + 2 * CHUNK + 7);
    [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1), (1, 4)]
        .into_iter()
        .all(|(pa, pb)| {
            let (ba, bb) = (digit_bound(pa) as i64, digit_bound(pb) as i64);
            let a = Array2::from_shape_fn((m, k), |_| next(ba) as i32);
            let b = Array2::from_shape_fn((n, k), |_| next(bb) as i32);
            let want = Array2::from_shape_fn((m, n), |(i, j)| {
                (0..k)
                    .map(|t| i64::from(a[[i, t]]) * i64::from(b[[j, t]]))
                    .sum::<i64>()
            });
            let got = gemm(Operand::View(&a.view()), Operand::View(&b.view()));
            matches!(got, Ok(Some(c)) if c == want)
        })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kernels::nchw::rows_to_nchw;
    use crate::rng::Pcg32;

    /// Whether AMX can run here; else one visible line (straight to stderr: the harness
    /// captures `eprintln!`) naming what is missing. Also the tile gradients' tests'.
    pub(in crate::kernels::gemm) fn amx_here(what: &str) -> bool {
        if Isa::Amx.detected() {
            return true;
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {what}: this CPU (or OS) lacks {}",
            Isa::Amx.cpu_flags()
        );
        false
    }

    fn oracle(a: &Array2<i64>, b: &Array2<i64>) -> Array2<i64> {
        Array2::from_shape_fn((a.nrows(), b.nrows()), |(i, j)| {
            (0..a.ncols()).map(|t| a[[i, t]] * b[[j, t]]).sum()
        })
    }

    /// Random values of magnitude ≤ `bound`, a quarter of them at ±bound.
    fn matrix(r: &mut Pcg32, rows: usize, cols: usize, bound: i64) -> Array2<i64> {
        Array2::from_shape_fn((rows, cols), |_| match r.below(8) {
            0 => bound,
            1 => -bound,
            _ => i64::from(r.below(u32::try_from(2 * bound + 1).unwrap_or(u32::MAX))) - bound,
        })
    }

    fn to<T: TryFrom<i64>>(m: &Array2<i64>) -> Array2<T>
    where
        T::Error: core::fmt::Debug,
    {
        m.mapv(|v| T::try_from(v).unwrap())
    }

    #[test]
    fn quads_tiles_are_the_staged_rows_transposed_by_words() {
        let mut r = Pcg32::new(5, 9);
        let stage: Stage =
            core::array::from_fn(|_| core::array::from_fn(|_| r.symmetric(128) as i8));
        let mut want = [0i8; TILE_BYTES];
        quads_portable(&stage, &mut want);
        // The layout by its definition: tile row q holds bytes 4q..4q+4 of each row in turn.
        for q in 0..ROWS {
            for (row, st) in stage.iter().enumerate() {
                assert_eq!(
                    want[q * CHUNK + 4 * row..][..4],
                    st[4 * q..][..4],
                    "q {q} row {row}"
                );
            }
        }
        if !Isa::Avx512Vnni.detected() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: the AVX-512 quads transpose: this CPU lacks {}",
                Isa::Avx512Vnni.cpu_flags()
            );
            return;
        }
        let mut got = [0i8; TILE_BYTES];
        // SAFETY: AVX-512 F is detected (part of Avx512Vnni's detection).
        unsafe { avx512::quads16(&stage, &mut got) };
        assert_eq!(got, want);
    }

    #[test]
    fn tile_engine_matches_the_oracle_for_every_digit_count_and_edge() {
        if !amx_here("AMX tile engine not tested") {
            return;
        }
        assert!(self_check());
        let mut r = Pcg32::new(17, 2);
        let bounds = [
            127i64,
            128,
            32_639,
            32_640,
            8_355_711,
            8_355_712,
            2_139_062_143,
        ];
        for (case, &(m, n, k)) in [
            (1, 1, 256),
            (16, 16, 320),
            (17, 33, 321),
            (40, 7, 450),
            (3, 50, 2049),
            // More pairs of B tiles than a task keeps sums for (SUM_SETS), with one, two and
            // three digits: groups whose edges split a block's digits.
            (17, 16 * (2 * SUM_SETS + 1), 256),
            // A K long enough that a band of A pairs and a group of B pairs are three pairs
            // each (A_BAND_BYTES, B_GROUP_BYTES): several bands and groups, their edges
            // splitting a block's digits.
            (16 * 9 + 5, 16 * 7 + 3, 72 * CHUNK + 17),
        ]
        .iter()
        .enumerate()
        {
            for (ia, &ba) in bounds.iter().enumerate() {
                let bb = bounds[(ia + case) % bounds.len()];
                let (a, b) = (matrix(&mut r, m, k, ba), matrix(&mut r, n, k, bb));
                let (a32, b32) = (to::<i32>(&a), to::<i32>(&b));
                let got = gemm(Operand::View(&a32.view()), Operand::View(&b32.view()));
                let what = alloc::format!("{m}x{k}x{n}, bounds {ba} {bb}");
                if (ba as i128) * (bb as i128) * k as i128 > i64::MAX as i128 {
                    assert!(got.is_err(), "{what}: may exceed i64");
                    continue;
                }
                // The contract: declined exactly when the partial sums' bound, every digit
                // product at its largest (128·128) over all K terms, may exceed i64.
                let (pa, pb) = (parts_for(ba as u64).unwrap(), parts_for(bb as u64).unwrap());
                let worst: i128 = (0..pa)
                    .flat_map(|i| {
                        (0..pb).map(move |j| (1i128 << (8 * (i + j))) * 128 * 128 * k as i128)
                    })
                    .sum();
                match got.unwrap() {
                    Some(c) => assert_eq!(c, oracle(&a, &b), "{what}"),
                    None => assert!(worst > i64::MAX as i128, "{what}: declined"),
                }
            }
        }
        // Narrow types: one digit for i8 whatever its values (−128 included), a scan for i16.
        let a = matrix(&mut r, 20, 270, 128).mapv(|v| v.clamp(-128, 127));
        let b = matrix(&mut r, 18, 270, 32_767);
        let got = gemm(
            Operand::View(&to::<i8>(&a).view()),
            Operand::View(&to::<i16>(&b).view()),
        );
        assert_eq!(got.unwrap().unwrap(), oracle(&a, &b));
    }

    #[test]
    fn tile_engine_declines_what_it_cannot_prove() {
        if !amx_here("AMX tile engine not tested") {
            return;
        }
        // Shapes too small to pay are left to the pair engine (the engine could compute them).
        assert!(!worth_it(1 << 20, 1 << 20, MIN_K - 1));
        assert!(!worth_it(64, 200, 784));
        assert!(worth_it(50_176, 128, 1152));
        assert!(!worth_it(usize::MAX, usize::MAX, 0));
        // A convolution into its epilogue: short K too (VGG8B's first, 50176×9·128ᵀ), not
        // a small product.
        assert!(worth_it_nchw(50_176, 128, 9) && !worth_it(50_176, 128, 9));
        assert!(!worth_it_nchw(64, 200, 784));
        // A fifth digit would be needed.
        let a = Array2::from_elem((2, MIN_K), i32::MIN);
        let b = Array2::from_elem((2, MIN_K), 1i32);
        assert!(gemm(Operand::View(&a.view()), Operand::View(&b.view()))
            .unwrap()
            .is_none());
        // Four digits each: the result fits i64, but the partial sums' bound
        // Σ 256^(i+j)·2¹⁴·K does not, so another engine must take it.
        let a = Array2::from_elem((2, MIN_K), 1i32 << 24);
        assert!(gemm(Operand::View(&a.view()), Operand::View(&a.view()))
            .unwrap()
            .is_none());
        // A product beyond i64 is an error here too.
        let a = Array2::from_elem((1, MIN_K), i32::MAX);
        assert!(gemm(Operand::View(&a.view()), Operand::View(&a.view())).is_err());
    }

    #[test]
    fn the_convolution_product_goes_through_its_epilogue_band_by_band() {
        if !amx_here("AMX tile engine (fused convolution epilogue) not tested") {
            return;
        }
        let mut r = Pcg32::new(23, 4);
        // (images, positions, filters, K, bound of B): positions on and off the 16-row blocks
        // and the 64-row bands, images whose rows share a block, digits 1 to 3.
        for &(images, hw, f, k, bb) in &[
            (3usize, 49usize, 20usize, 300usize, 127i64),
            (2, 13, 33, 64, 32_639),
            (1, 16, 16, 256, 1000),
            (5, 196, 40, 130, 32_640),
            (4, 100, 17, 1, 5),
            (7, 30, 64, 577, 200_000),
            // Large enough for several tasks, which share the row blocks that straddle their
            // images: one and two digits (every block complete when written: fused) and three.
            (9, 49, 48, 1152, 127),
            (9, 49, 48, 1152, 32_639),
            (9, 49, 48, 1152, 32_640),
            // K = 4096: a band of A is 8 row blocks, so each task packs and multiplies its
            // 44 blocks in 6 bands (the last one short).
            (2, 700, 24, 4096, 127),
            (2, 700, 24, 4096, 32_639),
        ] {
            let a = to::<i16>(&matrix(&mut r, images * hw, k, 127));
            let b = to::<i32>(&matrix(&mut r, f, k, bb));
            let bias: Vec<i64> = (0..f).map(|_| i64::from(r.below(2001)) - 1000).collect();
            let c = oracle(&a.mapv(i64::from), &b.mapv(i64::from));
            let cs = c.as_slice().unwrap();
            let what = alloc::format!("{images}x{hw} positions, {f} filters, K {k}, |b| {bb}");
            let wide = gemm_nchw(
                Operand::View(&a.view()),
                Operand::View(&b.view()),
                (images, hw),
                &bias,
                &|v| v,
            );
            let want = rows_to_nchw(cs, (images, f, hw), &bias, |v| v);
            assert_eq!(wide.unwrap().unwrap(), want, "{what}");
            let narrow = |v: i64| (v >> 12).clamp(-127, 127) as i8;
            let bytes = gemm_nchw(
                Operand::View(&a.view()),
                Operand::View(&b.view()),
                (images, hw),
                &bias,
                &narrow,
            );
            let want = rows_to_nchw(cs, (images, f, hw), &bias, narrow);
            assert_eq!(bytes.unwrap().unwrap(), want, "{what}, i8");
        }
    }

    /// The AVX-512 filter gather against its loop (checked directly: the first-use check would
    /// hide a wrong gather behind the loop), on VGG's shapes, channel tails and no whole
    /// sixteen; and the first-use check itself.
    #[test]
    fn the_filter_gather_agrees_with_the_loop_where_the_cpu_has_it() {
        if !Isa::Avx512Vnni.detected() {
            std::eprintln!("SKIPPED: AVX-512 filter gather not tested: this CPU lacks AVX-512 F");
            return;
        }
        let mut r = Pcg32::new(31, 7);
        for &(c, kk) in &[
            (128usize, 9usize),
            (512, 9),
            (5, 9),
            (16, 1),
            (45, 25),
            (1, 9),
        ] {
            let filter: Vec<i32> = (0..c * kk).map(|_| r.symmetric(1 << 30)).collect();
            let mut want = alloc::vec![7i32; c * kk];
            taps_outer(&filter, (c, kk), 0, &mut want, |v| v);
            let mut got = alloc::vec![-7i32; c * kk];
            // SAFETY: AVX-512 F detected; the sizes are the kernel's contract.
            let done = unsafe { avx512::taps_outer(&filter, c, kk, &mut got) };
            assert_eq!(done, c / 16 * 16, "C {c}, {kk} taps");
            taps_outer(&filter, (c, kk), done, &mut got, |v| v);
            assert_eq!(got, want, "C {c}, {kk} taps");
        }
        assert!(gather_self_check());
    }

    #[test]
    fn every_tile_starts_on_a_cache_line() {
        // Packing is plain code (no AMX needed): every tile the kernel loads begins a line,
        // whatever the allocator returned, and the digits below the tiles are the operand's.
        let mut r = Pcg32::new(5, 9);
        for &(rows, k, bound) in &[
            (1usize, 1usize, 127i64),
            (17, 65, 32_639),
            (40, 300, 200_000),
        ] {
            let a = to::<i32>(&matrix(&mut r, rows, k, bound));
            let parts = parts_for(bound as u64).unwrap();
            for layout in [Layout::Rows, Layout::Quads] {
                let d = pack(&Operand::View(&a.view()), parts, layout);
                for x in 0..d.blocks * d.parts {
                    for c in 0..d.chunks {
                        assert_eq!(d.tile(x, c) as usize % LINE, 0, "{rows}x{k}: tile {x},{c}");
                    }
                }
                // Row 0's digits of chunk 0 (A layout: the tile's first row; B: the first
                // byte of every quad of row 0 is at 64·q).
                let first: i64 = (0..parts)
                    .map(|i| {
                        // SAFETY: tile (i, 0) is TILE_BYTES readable bytes of `d`.
                        let t = unsafe { core::slice::from_raw_parts(d.tile(i, 0), TILE_BYTES) };
                        i64::from(t[0]) << (8 * i)
                    })
                    .sum();
                assert_eq!(first, i64::from(a[[0, 0]]), "{rows}x{k}");
                d.release();
            }
        }
    }

    #[test]
    fn digits_are_exact_and_balanced_at_every_boundary() {
        for p in 1..=MAX_PARTS {
            let top = digit_bound(p) as i64;
            let mut vals = alloc::vec![0i64, 1, -1, 127, -128, 128, -129, 255, 256, top, -top];
            vals.extend([top - 1, -(top - 1), top / 3, -(top / 7)]);
            vals.retain(|v| v.unsigned_abs() <= top as u64);
            let mut chunk = [0i32; CHUNK];
            for (c, &v) in chunk.iter_mut().zip(&vals) {
                *c = v as i32;
            }
            let mut d = [[[0i8; CHUNK]; ROWS]; MAX_PARTS];
            split_chunk(&mut chunk, p, &mut d, 3);
            for (t, &v) in vals.iter().enumerate() {
                let back: i64 = (0..p).map(|i| i64::from(d[i][3][t]) << (8 * i)).sum();
                assert_eq!(back, v, "{v} in {p} digits");
            }
        }
        assert_eq!(parts_for(127), Some(1));
        assert_eq!(parts_for(128), Some(2));
        assert_eq!(parts_for(32_639), Some(2));
        assert_eq!(parts_for(32_640), Some(3));
        assert_eq!(parts_for(2_139_062_143), Some(4));
        assert_eq!(parts_for(2_139_062_144), None);
    }
}
