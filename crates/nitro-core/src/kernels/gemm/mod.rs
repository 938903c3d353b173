//! Exact integer matrix products with the accumulator width proven per algorithm.md §10.
//!
//! Every product `C = A·Bᵀ` is computed exactly into `i64`. The accumulation is chosen from
//! cheap magnitude bounds before the product runs ([`proof`]):
//!
//! * [`Accum::I32`] — `max|A|·max|B|·K ≤ 2³¹−1`: every partial sum of a dot product fits `i32`,
//!   so the whole reduction runs in `i32` (the fast, vectorisable kernels).
//! * [`Accum::Chunked`] — a single product fits `i32` but the full sum may not: the reduction
//!   is split into chunks of `c = ⌊(2³¹−1) / (max|A|·max|B|)⌋` terms, each summed in `i32`, and
//!   the chunk sums are added in `i64`.
//! * [`Accum::I64`] — a single product may exceed `i32`: everything in `i64`.
//!
//! Three engines compute them. Where AMX-INT8 is there and allowed, the tile engine (`amx`:
//! operands written exactly as signed base-256 digits, one `tdpbssd` tile product per pair of
//! digits) takes every product it can prove. Otherwise the pair engine (`pairs`, operands
//! packed as `i16` pairs by `pack`, one micro-kernel per instruction set) runs whenever both
//! operands fit `i16` — or one is wider but splits exactly: along the reduction when the other
//! is narrow (`split_k`: each term becomes one pair, C keeps its shape), else into two `i16`
//! rows added back afterwards — and the `i32` engine (`wide`) otherwise. A weight gradient
//! consumed block by block (`gemm_nt_each`) whose error needs three digits takes tiles where
//! AMX runs, however short its reduction (`tiles_each`).
//! All paths give the exact integer result (tested against a naive `i64` oracle); they only
//! differ in speed. Because integer addition is exact and no path can overflow, results are
//! bit-identical for any thread count and instruction set.

#[cfg(nitro_x86_simd)]
mod amx;
pub(crate) mod pack;
pub(crate) mod pairs;
pub mod proof;
mod split_k;
#[cfg(nitro_x86_simd)]
mod tiles_each;
mod wide;

pub use pack::RowSource;
pub use proof::Accum;

use super::buffers;
use super::cpu::{dispatch, Dispatch, Int, Isa};
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};
use pack::{Narrow, Packed16, SPLIT_MAX};
use proof::{check_k, prove_i64};

/// The instruction set the products run on under the current dispatch: [`Isa::Amx`] when the
/// tile engine may run, else the pair engine's (the most capable detected, self-checked one the
/// dispatch allows).
pub fn kernel_isa() -> Isa {
    let d = dispatch();
    if tiles_allowed(d) {
        Isa::Amx
    } else {
        pairs_isa()
    }
}

/// How many products each engine has computed in this process (a diagnostic: benchmarks print
/// it to say which path their numbers used, tests check that a path really ran).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounts {
    /// On the AMX tile engine.
    pub tiles: u64,
    /// On the pair engine (any of its micro-kernels).
    pub pairs: u64,
    /// On the `i32`/`i64` engine.
    pub wide: u64,
}

/// Products per engine (with `std` only: 64-bit atomic counters do not exist on every embedded
/// target, and the firmware has no use for them).
#[cfg(feature = "std")]
static COUNTS: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];

/// The products computed so far by each engine (all zero without `std`).
pub fn engine_counts() -> EngineCounts {
    #[cfg(not(feature = "std"))]
    return EngineCounts::default();
    #[cfg(feature = "std")]
    let get = |i: usize| COUNTS[i].load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(feature = "std")]
    EngineCounts {
        tiles: get(0),
        pairs: get(1),
        wide: get(2),
    }
}

fn count(engine: usize) {
    #[cfg(feature = "std")]
    COUNTS[engine].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "std"))]
    let _ = engine;
}

/// The pair engine's micro-kernel under the current dispatch (products the tile engine declines,
/// or all of them where it cannot run, take it).
pub fn pairs_isa() -> Isa {
    pairs::resolve(dispatch().isa)
}

/// Whether the tile engine may run under `d`: AMX allowed, detected and self-checked.
fn tiles_allowed(d: Dispatch) -> bool {
    d.isa >= Isa::Amx && Isa::Amx.detected() && pairs::usable(Isa::Amx)
}

/// `A·Bᵀ` on the tile engine when it is allowed and can take the operands (`Ok(None)`: another
/// engine must), or the overflow error when no engine can.
#[cfg(nitro_x86_simd)]
fn on_tiles<A: Int, B: Int>(
    a: amx::Operand<'_, '_, A>,
    b: amx::Operand<'_, '_, B>,
    d: Dispatch,
) -> Result<Option<Array2<i64>>> {
    let worth_it = amx::worth_it(a.rows(), b.rows(), a.cols());
    tiles_run(worth_it, d, || amx::gemm(a, b))
}

/// `run` (a tile engine product) when the tile engine is allowed under `d` and the shape is
/// `worth_it`, counted when it took the operands; `Ok(None)` otherwise.
#[cfg(nitro_x86_simd)]
fn tiles_run<R>(
    worth_it: bool,
    d: Dispatch,
    run: impl FnOnce() -> Result<Option<R>>,
) -> Result<Option<R>> {
    if !tiles_allowed(d) || !worth_it {
        return Ok(None);
    }
    let c = run()?;
    if c.is_some() {
        count(0);
    }
    Ok(c)
}

/// `C = A·Bᵀ` with `A: m×k`, `B: n×k`, exactly, into `i64`; accumulation proven from the operands.
pub fn gemm_nt<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt_with(a, b, None, dispatch())
}

/// `C = A·B` with `A: m×k`, `B: k×n`.
pub fn gemm_nn<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt(a, b.t())
}

/// `C = Aᵀ·B` with `A: k×m`, `B: k×n`.
pub fn gemm_tn<A: Int, B: Int>(a: ArrayView2<'_, A>, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    gemm_nt(a.t(), b.t())
}

/// `A·Bᵀ` with an optionally forced accumulation and restricted kernels — for tests and
/// benchmarks. A forced accumulation is never allowed to be less safe than the proof: if it
/// is, the proven one is used instead.
///
/// Kernel choice: when both operands fit `i16` (`|v| ≤ 32767`, found while packing them), the
/// pair engine runs with `i32` blocks of at most `chunk/2` pairs. When one operand is wider
/// (typically errors) and the other fits `i16`, the wide one is split exactly: along K when
/// the other is narrow enough (`split_k`: one pair per term, C unsplit), else into high and
/// low `i16` halves (`|v| ≤ 32767·32768`) whose products run on the pair engine and are
/// recombined (`C = C_hi·2¹⁵ + C_lo`); neither when an accumulation is forced. Everything
/// else takes the `i32` engine.
pub fn gemm_nt_with<A: Int, B: Int>(
    a: ArrayView2<'_, A>,
    b: ArrayView2<'_, B>,
    forced: Option<Accum>,
    d: Dispatch,
) -> Result<Array2<i64>> {
    check_k(a.ncols(), b.ncols())?;
    let k = a.ncols();
    let (m, n) = (a.nrows(), b.nrows());
    // A forced accumulation is a test of the other engines' blocking: it never takes tiles.
    #[cfg(nitro_x86_simd)]
    if forced.is_none() {
        if let Some(c) = on_tiles(amx::Operand::View(&a), amx::Operand::View(&b), d)? {
            return Ok(c);
        }
    }
    if d.allow_i16 && forced != Some(Accum::I64) {
        let pa = pack::pack_a(&a, Narrow::Direct);
        // A too wide for i16 and B narrow (a weight gradient): the split along K packs B
        // itself, in the form it needs, straight from its view.
        if pa.is_none() && forced.is_none() {
            if let Some(c) = split_k::product_a_wide(&a, &b, pairs::KC, d)? {
                return Ok(c);
            }
        }
        let pb = pack::pack_b(&b, Narrow::Direct);
        match (pa, pb) {
            (Some(pa), Some(pb)) => {
                if let Some(c) = proven_pairs(pa, pb, k, forced, d)? {
                    return Ok(Array2::from_shape_vec((m, n), c).expect("m*n elements"));
                }
            }
            // One side too wide for i16: split it exactly (unless an accumulation was forced),
            // along K when the other side is narrow enough (A's case tried above), else into
            // two rows.
            (None, Some(pb)) if forced.is_none() => {
                if let Some(c) = split_a(&a, pb, d)? {
                    return Ok(c);
                }
            }
            (Some(pa), None) if forced.is_none() => {
                let mb = pack::max_abs_view(&b);
                let pa = match split_k::product_b_wide(pa, &b, mb, pairs::KC, d)? {
                    Ok(c) => return Ok(c),
                    Err(pa) => pa,
                };
                prove_i64(pa.max, mb, k)?;
                let pb = if mb <= SPLIT_MAX {
                    pack::pack_b(&b, Narrow::Split)
                } else {
                    None
                };
                match pb {
                    Some(pb) => {
                        if let Some(c) = proven_pairs(pa, pb, k, None, d)? {
                            return Ok(combine_cols(c, m, n));
                        }
                    }
                    None => pa.release(),
                }
            }
            (pa, pb) => {
                for p in [pa, pb].into_iter().flatten() {
                    p.release();
                }
            }
        }
    }
    let (ma, mb) = (pack::max_abs_view(&a), pack::max_abs_view(&b));
    prove_i64(ma, mb, k)?;
    let acc = Accum::forced(forced, Accum::prove(ma, mb, k), k);
    count(2);
    Ok(wide::gemm(&a, &b, acc, d.avx2()))
}

/// `C = A·Bᵀ` (as [`gemm_nt`]) handed to `f` in blocks of C's rows instead of returned: for a
/// product read once, by a pass that writes `out` (one element per entry of C, row-major `m×n`),
/// such as a weight gradient going straight into IntegerSGD's new weights. Where the pair
/// engine takes the product (both operands within `i16`, or A wider and split along K) each
/// block goes to `f(first row, its sums row-major, out's rows of it)` while it is in cache
/// ([`pairs::gemm16_each`]) and C is never written out, and so on tiles where AMX runs and A
/// (the error) needs three digits (`tiles_each`: blocks of 16 rows; a dispatch without `i16`
/// pairs leaves both to the `i32` engine); any other product is computed by
/// [`gemm_nt`]'s engines and handed over whole. The sums are [`gemm_nt`]'s, exactly; so are
/// the errors. `f`'s results in row order.
pub(crate) fn gemm_nt_each<A: Int, B: Int, O: Send, R: Send>(
    a: ArrayView2<'_, A>,
    b: ArrayView2<'_, B>,
    out: &mut [O],
    f: impl Fn(usize, &[i64], &mut [O]) -> R + Sync + Send,
) -> Result<Vec<R>> {
    gemm_nt_each_with(a, b, out, dispatch(), f)
}

/// [`gemm_nt_each`] under the dispatch `d` (tests force each path).
fn gemm_nt_each_with<A: Int, B: Int, O: Send, R: Send>(
    a: ArrayView2<'_, A>,
    b: ArrayView2<'_, B>,
    out: &mut [O],
    d: Dispatch,
    f: impl Fn(usize, &[i64], &mut [O]) -> R + Sync + Send,
) -> Result<Vec<R>> {
    check_k(a.ncols(), b.ncols())?;
    let (m, n, k) = (a.nrows(), b.nrows(), a.ncols());
    if out.len() != m * n {
        return Err(Error::shape(format!(
            "room for {} results of a {m}×{n} product",
            out.len()
        )));
    }
    // A product the tile engine would take goes its way (and is handed over whole).
    #[cfg(nitro_x86_simd)]
    let tiles = tiles_allowed(d) && amx::worth_it(m, n, k);
    #[cfg(not(nitro_x86_simd))]
    let tiles = false;
    if d.allow_i16 && !tiles {
        let operands = match pack::pack_a(&a, Narrow::Direct) {
            Some(pa) => match pack::pack_b(&b, Narrow::Direct) {
                Some(pb) => match pairs_per_block(&pa, &pb, k, None) {
                    Ok(Some(kc)) => Some((pa, pb, kc)),
                    other => {
                        pa.release();
                        pb.release();
                        other?;
                        None
                    }
                },
                None => {
                    pa.release();
                    None
                }
            },
            // A wider than i16 (an error of three digits or more): on tiles where AMX runs
            // and the operands are a weight gradient's, else split along K.
            None => {
                #[cfg(nitro_x86_simd)]
                if let Some(r) = tiles_run(tiles_allowed(d) && tiles_each::usable(), d, || {
                    tiles_each::gemm_each(&a, &b, out, &f)
                })? {
                    return Ok(r);
                }
                split_k::operands_a_wide(&a, &b, pairs::KC)?
            }
        };
        if let Some((pa, pb, kc)) = operands {
            let r = pairs::gemm16_each(&pa, &pb, kc, pairs::resolve(d.isa), out, f);
            pa.release();
            pb.release();
            count(1);
            return Ok(r);
        }
    }
    let c = gemm_nt_with(a, b, None, d)?;
    let r = match c.as_slice() {
        Some(sums) => f(0, sums, out),
        None => f(0, &c.iter().copied().collect::<Vec<i64>>(), out),
    };
    buffers::recycle(c);
    Ok(alloc::vec![r])
}

/// The pair engine on packed operands, releasing both: every sum proven to fit `i64` (else the
/// overflow error), `i32` blocks as long as the proof allows (no longer than a `forced`
/// accumulation); `None` when not even one pair per block is proven.
fn proven_pairs(
    pa: Packed16,
    pb: Packed16,
    k: usize,
    forced: Option<Accum>,
    d: Dispatch,
) -> Result<Option<Vec<i64>>> {
    let c = pairs_per_block(&pa, &pb, k, forced)
        .map(|kc| kc.map(|kc| pairs::gemm16(&pa, &pb, kc, pairs::resolve(d.isa))));
    pa.release();
    pb.release();
    if matches!(c, Ok(Some(_))) {
        count(1);
    }
    c
}

/// The pairs per `i32` block of the pair engine's product of `pa` and `pb` (K = `k`), as long
/// as the proof allows and no longer than a `forced` accumulation; `None` when not even one
/// pair is proven; the overflow error when not even `i64` holds the sums.
fn pairs_per_block(
    pa: &Packed16,
    pb: &Packed16,
    k: usize,
    forced: Option<Accum>,
) -> Result<Option<usize>> {
    prove_i64(pa.max, pb.max, k)?;
    Ok(Accum::forced(forced, Accum::prove(pa.max, pb.max, k), k).pairs_per_block(k))
}

/// `A·Bᵀ` for an A wider than `i16` (up to `32767·32768`) and a packed B: A split exactly into
/// high and low halves, one product on the pair engine, recombined. `None` if A is too wide or
/// no pair is proven to fit `i32` (the caller then takes the `i32` engine).
fn split_a<A: Int>(
    a: &ArrayView2<'_, A>,
    pb: Packed16,
    d: Dispatch,
) -> Result<Option<Array2<i64>>> {
    let (m, k, n) = (a.nrows(), a.ncols(), pb.rows);
    let ma = pack::max_abs_view(a);
    if let Err(e) = prove_i64(ma, pb.max, k) {
        pb.release();
        return Err(e);
    }
    if ma <= SPLIT_MAX {
        if let Some(pa) = pack::pack_a(a, Narrow::Split) {
            return Ok(proven_pairs(pa, pb, k, None, d)?.map(|c| combine_rows(c, m, n)));
        }
    }
    pb.release();
    Ok(None)
}

/// `C = A·Bᵀ` where B (`n×k`) is given row by row ([`RowSource`], e.g. the patches of a
/// convolution, never materialised): packed straight from its rows on the pair engine (A direct
/// or split as in [`gemm_nt_with`]); otherwise B is materialised and takes [`gemm_nt`]'s paths.
pub fn gemm_nt_rows<A: Int>(a: ArrayView2<'_, A>, b: &dyn RowSource) -> Result<Array2<i64>> {
    check_k(a.ncols(), b.cols())?;
    let d = dispatch();
    let (m, n, k) = (a.nrows(), b.rows(), b.cols());
    #[cfg(nitro_x86_simd)]
    if let Some(c) = on_tiles(amx::Operand::View(&a), amx::Operand::<i16>::Rows(b), d)? {
        return Ok(c);
    }
    if d.allow_i16 {
        if let Some(pb) = pack::pack_b_rows(b) {
            match pack::pack_a(&a, Narrow::Direct) {
                Some(pa) => {
                    if let Some(c) = proven_pairs(pa, pb, k, None, d)? {
                        return Ok(Array2::from_shape_vec((m, n), c).expect("m*n elements"));
                    }
                }
                None => {
                    if let Some(c) = split_a(&a, pb, d)? {
                        return Ok(c);
                    }
                }
            }
        }
    }
    gemm_nt_with(a, materialise(b).view(), None, d)
}

/// `C = A·Bᵀ` where A (`m×k`) is given row by row ([`RowSource`]) and B is a matrix: the
/// orientation to use when A is the long operand (e.g. convolution patches `(N·Ho·Wo)×(C·k·k)`
/// times weights `F×(C·k·k)`), so that C's rows are short. B direct or split as in
/// [`gemm_nt_with`]; otherwise A is materialised and takes [`gemm_nt`]'s paths.
pub fn gemm_rows_nt<B: Int>(a: &dyn RowSource, b: ArrayView2<'_, B>) -> Result<Array2<i64>> {
    check_k(a.cols(), b.ncols())?;
    let d = dispatch();
    let (m, n, k) = (a.rows(), b.nrows(), a.cols());
    #[cfg(nitro_x86_simd)]
    if let Some(c) = on_tiles(amx::Operand::<i16>::Rows(a), amx::Operand::View(&b), d)? {
        return Ok(c);
    }
    if d.allow_i16 {
        if let Some(pa) = pack::pack_a_rows(a) {
            let (pb, split) = match pack::pack_b(&b, Narrow::Direct) {
                Some(pb) => (Some(pb), false),
                None if pack::max_abs_view(&b) <= SPLIT_MAX => {
                    (pack::pack_b(&b, Narrow::Split), true)
                }
                None => (None, false),
            };
            match pb {
                Some(pb) => {
                    if let Some(c) = proven_pairs(pa, pb, k, None, d)? {
                        return Ok(if split {
                            combine_cols(c, m, n)
                        } else {
                            Array2::from_shape_vec((m, n), c).expect("m*n elements")
                        });
                    }
                }
                None => pa.release(),
            }
        }
    }
    gemm_nt_with(materialise(a).view(), b, None, d)
}

/// A convolution's product and epilogue in one: [`gemm_rows_nt`] (`a`: the `images·hw` patch
/// rows, image-major; `b`: the `F` filters) followed by
/// [`rows_to_nchw`](crate::kernels::nchw::rows_to_nchw)`(C, (images, F, hw), bias,
/// epilogue)`, the same values. On the tile engine the `i64` product is never written whole
/// (its blocks or bands go straight through the epilogue); elsewhere it is those two calls.
pub fn gemm_rows_nt_nchw<B, O, E>(
    a: &dyn RowSource,
    b: ArrayView2<'_, B>,
    shape: (usize, usize),
    bias: &[i64],
    epilogue: E,
) -> Result<Vec<O>>
where
    B: Int,
    O: crate::kernels::nchw::NchwLane,
    E: crate::kernels::nchw::Epilogue<O>,
{
    nchw_product(a, Weights::Matrix(b), shape, bias, epilogue)
}

/// [`gemm_rows_nt_nchw`] with B given as convolution weights `F×C×k×k`, standing for their
/// channels-last matrix ([`hwc_weights`](crate::kernels::filters::hwc_weights), whose column
/// order the patch rows `a` follow). The tile engine reorders each filter as it packs it; the
/// other engines multiply the matrix written out.
pub fn conv_rows_nt_nchw<O, E>(
    a: &dyn RowSource,
    w: ndarray::ArrayView4<'_, i32>,
    shape: (usize, usize),
    bias: &[i64],
    epilogue: E,
) -> Result<Vec<O>>
where
    O: crate::kernels::nchw::NchwLane,
    E: crate::kernels::nchw::Epilogue<O>,
{
    nchw_product(a, Weights::<i32>::Filters(w), shape, bias, epilogue)
}

/// The B operand of [`nchw_product`].
enum Weights<'v, B> {
    /// A matrix, one row per filter.
    Matrix(ArrayView2<'v, B>),
    /// Convolution weights `F×C×k×k`, as their channels-last matrix.
    Filters(ndarray::ArrayView4<'v, i32>),
}

/// `f` of the channels-last matrix of the weights `w`, written out for it (in a buffer handed
/// back after).
fn with_hwc<R>(w: &ndarray::ArrayView4<'_, i32>, f: impl FnOnce(ArrayView2<'_, i32>) -> R) -> R {
    let m = crate::kernels::filters::hwc_weights(w.view());
    let r = f(m.view());
    buffers::give_array(m);
    r
}

/// [`gemm_rows_nt_nchw`] and [`conv_rows_nt_nchw`].
fn nchw_product<B, O, E>(
    a: &dyn RowSource,
    b: Weights<'_, B>,
    (images, hw): (usize, usize),
    bias: &[i64],
    epilogue: E,
) -> Result<Vec<O>>
where
    B: Int,
    O: crate::kernels::nchw::NchwLane,
    E: crate::kernels::nchw::Epilogue<O>,
{
    let (f, k) = match &b {
        Weights::Matrix(m) => (m.nrows(), m.ncols()),
        Weights::Filters(w) => {
            let (f, c, kh, kw) = w.dim();
            (f, c * kh * kw)
        }
    };
    check_k(a.cols(), k)?;
    if a.rows() != images * hw || bias.len() != f {
        return Err(Error::shape(format!(
            "convolution product: {} patch rows for {images} images of {hw} positions, {} \
             biases for {f} filters",
            a.rows(),
            bias.len()
        )));
    }
    #[cfg(nitro_x86_simd)]
    {
        let worth_it = amx::worth_it_nchw(a.rows(), f, a.cols());
        let banded = tiles_run(worth_it, dispatch(), || {
            let ta = amx::Operand::<i16>::Rows(a);
            match &b {
                Weights::Matrix(m) => {
                    amx::gemm_nchw(ta, amx::Operand::View(m), (images, hw), bias, &epilogue)
                }
                Weights::Filters(w) => match amx::Filters::new(w.view()) {
                    Some(fw) => amx::gemm_nchw(
                        ta,
                        amx::Operand::<i32>::Filters(fw),
                        (images, hw),
                        bias,
                        &epilogue,
                    ),
                    // Not in standard layout: the matrix written out.
                    None => with_hwc(w, |m| {
                        let tb = amx::Operand::View(&m);
                        amx::gemm_nchw(ta, tb, (images, hw), bias, &epilogue)
                    }),
                },
            }
        })?;
        if let Some(out) = banded {
            return Ok(out);
        }
    }
    let z = match &b {
        Weights::Matrix(m) => gemm_rows_nt(a, m.view())?,
        Weights::Filters(w) => with_hwc(w, |m| gemm_rows_nt(a, m))?,
    };
    let zs = z.as_slice().expect("standard layout");
    let out = crate::kernels::nchw::rows_to_nchw(zs, (images, f, hw), bias, epilogue);
    crate::kernels::recycle(z);
    Ok(out)
}

/// A row source written out as a matrix (the fallback when it cannot be packed directly).
fn materialise(src: &dyn RowSource) -> Array2<i16> {
    let mut mat = Array2::<i16>::zeros((src.rows(), src.cols()));
    for (r, mut row) in mat.rows_mut().into_iter().enumerate() {
        src.row(r, row.as_slice_mut().expect("standard layout"));
    }
    mat
}

/// `C[i][j] = C'[i][j]·2¹⁵ + C'[m+i][j]` for a product whose A was split (rows: high halves,
/// then low halves), in place (no second buffer: the embedded heap is small). Cannot overflow:
/// the caller proved the whole product fits `i64`.
fn combine_rows(mut c: Vec<i64>, m: usize, n: usize) -> Array2<i64> {
    let (hi, lo) = c.split_at_mut(m * n);
    for (h, &l) in hi.iter_mut().zip(lo.iter()) {
        *h = *h * 32_768 + l;
    }
    c.truncate(m * n);
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

/// As [`combine_rows`] for a split B (each row: high halves `0..n`, then low halves `n..2n`),
/// in place: entry `(i, j)` moves from `2n·i + j` down to `n·i + j`, never over an unread one.
fn combine_cols(mut c: Vec<i64>, m: usize, n: usize) -> Array2<i64> {
    for i in 0..m {
        for j in 0..n {
            let (h, l) = (c[2 * n * i + j], c[2 * n * i + n + j]);
            c[n * i + j] = h * 32_768 + l;
        }
    }
    c.truncate(m * n);
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::rng::Pcg32;

    fn oracle(a: &Array2<i32>, b: &Array2<i32>) -> Array2<i64> {
        let (m, k) = a.dim();
        let n = b.nrows();
        Array2::from_shape_fn((m, n), |(i, j)| {
            (0..k)
                .map(|t| i64::from(a[[i, t]]) * i64::from(b[[j, t]]))
                .sum()
        })
    }

    fn random(r: &mut Pcg32, rows: usize, cols: usize, bound: u32) -> Array2<i32> {
        Array2::from_shape_fn((rows, cols), |_| r.symmetric(bound))
    }

    /// `gemm_nt_each` hands every row of the product over exactly once, in order, with the
    /// oracle's sums and `out`'s matching rows, on every path this CPU has: both operands
    /// within `i16`, A wide (the split along K, an error gradient's case), both wide (handed
    /// over whole), shapes that cross the micro-tiles and the consumer's blocks, and K = 0.
    #[test]
    fn each_block_of_a_product_reaches_its_consumer_once() {
        let mut r = Pcg32::new(11, 2);
        let shapes = [
            (1, 1, 1),
            (7, 5, 3),
            (13, 37, 64),
            (200, 784, 64),
            (25, 300, 129),
            (6, 9, 0),
        ];
        for d in Dispatch::all_detected() {
            for (case, &(m, n, k)) in shapes.iter().enumerate() {
                for bound in [127u32, 32_767, 60_000, 1 << 24] {
                    let a = random(&mut r, m, k, bound);
                    let b = random(&mut r, n, k, if bound > 60_000 { bound } else { 127 });
                    let want = oracle(&a, &b);
                    let mut out = alloc::vec![(usize::MAX, 0i64); m * n];
                    let rows = gemm_nt_each_with(a.view(), b.view(), &mut out, d, |r0, c, o| {
                        assert_eq!(c.len(), o.len());
                        assert_eq!(c.len() % n, 0);
                        for (i, (slot, &v)) in o.iter_mut().zip(c).enumerate() {
                            *slot = (r0 + i / n, v);
                        }
                        (r0, c.len() / n)
                    })
                    .unwrap();
                    // The blocks tile 0..m in order.
                    let mut next = 0;
                    for (r0, len) in rows {
                        assert_eq!(r0, next, "{d:?} case {case}");
                        next += len;
                    }
                    assert_eq!(next, m, "{d:?} case {case}");
                    for (idx, &(row, v)) in out.iter().enumerate() {
                        assert_eq!(
                            row,
                            idx / n,
                            "{d:?} case {case}: entry {idx} in another row"
                        );
                        assert_eq!(
                            v,
                            want[[idx / n, idx % n]],
                            "{d:?} case {case} bound {bound}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn all_paths_match_oracle_on_random_shapes() {
        let mut r = Pcg32::new(3, 0);
        for case in 0..140 {
            let m = 1 + r.below(9) as usize;
            let n = 1 + r.below(9) as usize;
            let k = 1 + r.below(300) as usize;
            let bound = [1u32, 127, 30_000, 32_767, 32_768, 1 << 20, (1 << 30) - 1][case % 7];
            let a = random(&mut r, m, k, bound);
            let b = random(&mut r, n, k, 127);
            let want = oracle(&a, &b);
            assert_eq!(
                gemm_nt(a.view(), b.view()).unwrap(),
                want,
                "auto case {case}"
            );
            for p in [
                Accum::I32,
                Accum::Chunked(1),
                Accum::Chunked(7),
                Accum::Chunked(33),
                Accum::I64,
            ] {
                for d in Dispatch::all_detected() {
                    assert_eq!(
                        gemm_nt_with(a.view(), b.view(), Some(p), d).unwrap(),
                        want,
                        "{p:?} {d:?} case {case}"
                    );
                }
            }
        }
    }

    #[test]
    fn i32_overflowing_product_is_exact() {
        // Each sum is 4000 · (2^20 · 2^10) = 2^30 · 4000 ≫ 2^31: must take the chunked path.
        let a = Array2::from_elem((2, 4000), 1i32 << 20);
        let b = Array2::from_elem((3, 4000), -(1i32 << 10));
        let c = gemm_nt(a.view(), b.view()).unwrap();
        assert!(c.iter().all(|&v| v == -4000i64 * (1 << 30)));
        // Products that alone exceed i32: the i64 path.
        let a = Array2::from_elem((1, 2), i32::MAX);
        let b = Array2::from_elem((1, 2), i32::MIN);
        assert_eq!(
            gemm_nt(a.view(), b.view()).unwrap()[[0, 0]],
            2 * i64::from(i32::MAX) * i64::from(i32::MIN)
        );
        // A sum that cannot be represented even in i64 is an error, not a wrap.
        let a = Array2::from_elem((1, 3), i32::MAX);
        let b = Array2::from_elem((1, 3), i32::MIN);
        assert!(matches!(
            gemm_nt(a.view(), b.view()),
            Err(Error::Overflow { .. })
        ));
        assert!(matches!(gemm_nt(a.view(), b.t()), Err(Error::Shape(_))));
    }

    #[test]
    fn blocked_shapes_match_oracle() {
        // Larger than one K block and one column block, odd rows, columns not a multiple of 4.
        let mut r = Pcg32::new(11, 3);
        for (m, n, k, ba, bb) in [
            (5, 150, 5000, 127, 30_000),
            (3, 67, 2049, 40_000, 127),
            (7, 9, 4100, 1 << 20, 1 << 9),
        ] {
            let a = random(&mut r, m, k, ba);
            let b = random(&mut r, n, k, bb);
            let want = oracle(&a, &b);
            for d in Dispatch::all_detected() {
                assert_eq!(
                    gemm_nt_with(a.view(), b.view(), None, d).unwrap(),
                    want,
                    "{m}x{n}x{k} {d:?}"
                );
            }
            assert_eq!(
                gemm_nt_with(
                    a.view(),
                    b.view(),
                    Some(Accum::Chunked(100)),
                    Dispatch::default()
                )
                .unwrap(),
                want
            );
        }
    }

    #[test]
    fn split_products_match_oracle() {
        let mut r = Pcg32::new(21, 4);
        for (bound, k) in [
            (40_000u32, 300usize),
            (1 << 29, 70),
            (32_767 * 32_768, 3000),
        ] {
            let a = random(&mut r, 6, k, bound);
            let b = random(&mut r, 9, k, 127);
            // Extremes of the split range on both signs.
            let mut a2 = a.clone();
            a2[[0, 0]] = -(bound as i32);
            a2[[1, 1]] = bound as i32;
            let want = oracle(&a2, &b);
            assert_eq!(
                gemm_nt(a2.view(), b.view()).unwrap(),
                want,
                "A wide, bound {bound}"
            );
            assert_eq!(
                gemm_nt(b.view(), a2.view()).unwrap(),
                want.t().to_owned(),
                "B wide, bound {bound}"
            );
        }
        // The exact split of algorithm.md §10 at its extremes: v = hi·2¹⁵ + lo, 0 ≤ lo ≤ 32767,
        // |hi| ≤ 32767.
        let vals = [
            -1i32,
            0,
            32_767,
            32_768,
            -32_768,
            -1_073_709_056,
            1_073_709_056,
        ];
        for v in vals {
            let (hi, lo) = (v >> 15, v & 0x7fff);
            assert_eq!(i64::from(hi) * 32_768 + i64::from(lo), i64::from(v));
            assert!(
                (0..=32_767).contains(&lo) && hi.unsigned_abs() <= 32_767,
                "{v}"
            );
        }
    }

    #[test]
    fn transposed_forms_match() {
        let mut r = Pcg32::new(9, 1);
        let a = random(&mut r, 5, 7, 100);
        let b = random(&mut r, 7, 4, 100);
        let want = oracle(&a, &b.t().to_owned());
        assert_eq!(gemm_nn(a.view(), b.view()).unwrap(), want);
        let at = a.t().as_standard_layout().into_owned();
        assert_eq!(gemm_tn(at.view(), b.view()).unwrap(), want);
    }

    #[test]
    fn large_product_parallel_matches_oracle() {
        let mut r = Pcg32::new(5, 5);
        let a = random(&mut r, 64, 300, 127);
        let b = random(&mut r, 40, 300, 40_000);
        assert_eq!(gemm_nt(a.view(), b.view()).unwrap(), oracle(&a, &b));
    }
}
