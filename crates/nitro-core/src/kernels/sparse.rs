//! Exact convolution weight gradients from a sparse error.
//!
//! Behind a max-pool (algorithm.md §3.5: kernel = stride, so windows never overlap) the error
//! reaching a convolution output has at most one non-zero entry per pooling window and channel. The
//! weight gradient `G[f,c,u,v] = Σ δ[m,f,i,j]·xp[m,c,i+u,j+v]` (algorithm.md §3.2) then has only as
//! many terms per filter as there are such entries, instead of `N·Ho·Wo`. This kernel computes it
//! from the entries alone — gathering one patch per entry and adding `δ·patch` into the filter's
//! row — and never builds the dense `δ`. Sums of integers are exact in any order, so the result
//! equals the dense product ([`super::gemm_nt_rows`] on the transposed patches) bit for bit.
//!
//! Accumulator widths (algorithm.md §10): a filter's entries are summed in `i32` in runs whose
//! magnitudes are proven to fit, `Σ_run |δ|·max|x| ≤ 2³¹−1` (every partial sum of a run is bounded
//! by the same), each run then added into `i64`; an entry that does not fit even alone is added
//! in `i64` directly. The `i64` sums are proven by the same bound the dense product checks
//! before its `i64` sums (`max|δ|·max|x|·N·Ho·Wo ≤ 2⁶³−1`; a filter never has more than `N·Ho·Wo`
//! entries), and the sparse path refuses what fails that bound, as the dense one does.

use crate::error::{Error, Result};
use crate::kernels::channels_last::ChannelsLast;
use crate::kernels::cpu::{dispatch, loop_build, Isa};
use crate::kernels::{buffers, par};
use alloc::format;
use alloc::vec::Vec;
use ndarray::Array4;

/// A convolution-output error `N×F×H×W` given by its non-zero entries, grouped by plane: the
/// plane of image `m` and filter `f` is group `g = m·F + f`, which owns
/// `index[starts[g]..starts[g+1]]` (flat row-major `N×F×H×W` positions, all inside that plane,
/// `g·H·W ≤ index < (g+1)·H·W`) and the matching `value`s. Image-major groups let the
/// gradient read the entries of one image for every filter as one sequential run. Zero values
/// are allowed (and skipped by the gradient).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseDelta {
    dim: (usize, usize, usize, usize),
    starts: Vec<usize>,
    index: Vec<usize>,
    value: Vec<i32>,
}

impl Drop for SparseDelta {
    /// The next step's pooling backward takes the entries' buffers (kernels/buffers.rs).
    fn drop(&mut self) {
        buffers::give(core::mem::take(&mut self.index));
        buffers::give(core::mem::take(&mut self.value));
    }
}

impl SparseDelta {
    /// Check and build. `starts` has `N·F + 1` non-decreasing entries from 0 to `index.len()`;
    /// every index lies inside its group's plane.
    pub fn new(
        dim: (usize, usize, usize, usize),
        starts: Vec<usize>,
        index: Vec<usize>,
        value: Vec<i32>,
    ) -> Result<Self> {
        let (n, f, h, w) = dim;
        let hw = h * w;
        let ok_starts = Some(starts.len()) == n.checked_mul(f).and_then(|p| p.checked_add(1))
            && starts.first() == Some(&0)
            && starts.last() == Some(&index.len())
            && starts.windows(2).all(|s| s[0] <= s[1]);
        if !ok_starts || index.len() != value.len() {
            return Err(Error::shape(format!(
                "sparse error: {} group starts, {} indices and {} values do not describe {n}×{f} \
                 planes (one group per image and filter, then the end)",
                starts.len(),
                index.len(),
                value.len()
            )));
        }
        for (g, s) in starts.windows(2).enumerate() {
            let plane = g * hw..(g + 1) * hw;
            if let Some(&bad) = index[s[0]..s[1]].iter().find(|&&i| !plane.contains(&i)) {
                return Err(Error::shape(format!(
                    "sparse error: index {bad} is not in the plane of image {} and filter {} \
                     of a {dim:?} tensor",
                    g / f,
                    g % f
                )));
            }
        }
        Ok(SparseDelta {
            dim,
            starts,
            index,
            value,
        })
    }

    /// Shape `(N, F, H, W)` of the dense error this stands for.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        self.dim
    }

    /// The flat indices and values of image `m` and filter `f`.
    pub fn plane(&self, m: usize, f: usize) -> (&[usize], &[i32]) {
        let g = m * self.dim.1 + f;
        let (a, b) = (self.starts[g], self.starts[g + 1]);
        (&self.index[a..b], &self.value[a..b])
    }

    /// Every entry's flat index and (mutable) value, in storage order.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = (usize, &mut i32)> {
        self.index.iter().copied().zip(self.value.iter_mut())
    }

    /// The dense tensor (for tests and checks); an index given twice is a shape error.
    pub fn to_dense(&self) -> Result<Array4<i32>> {
        let (n, f, h, w) = self.dim;
        let mut out = alloc::vec![0i32; n * f * h * w];
        let mut seen = alloc::vec![false; out.len()];
        for (&i, &v) in self.index.iter().zip(&self.value) {
            if core::mem::replace(&mut seen[i], true) {
                return Err(Error::shape(format!("sparse error: index {i} given twice")));
            }
            out[i] = v;
        }
        Ok(Array4::from_shape_vec(self.dim, out).expect("sizes"))
    }
}

/// Weight gradient `F × (C·k·k)` (row-major `F×C×k×k`) and, when `bias`, the bias gradient `F`
/// of a stride-1 convolution with kernel `k` whose padded input was `xp` (`N×C×Hp×Wp`, kept
/// channels-last), for the sparse output error `delta` (`N×F×(Hp−k+1)×(Wp−k+1)`).
pub fn conv_weight_gradient(
    xp: &ChannelsLast,
    k: usize,
    delta: &SparseDelta,
    bias: bool,
) -> Result<(Vec<i64>, Option<Vec<i64>>)> {
    let (n, c, hp, wp) = xp.dim();
    let (ho, wo) = super::im2col::out_size(hp, wp, k)?;
    let (dn, f, dh, dw) = delta.dim;
    if (dn, dh, dw) != (n, ho, wo) {
        return Err(Error::shape(format!(
            "sparse weight gradient: error is {:?}, the input {:?} with kernel {k} gives \
             {n}×F×{ho}×{wo}",
            delta.dim,
            xp.dim()
        )));
    }
    let max_d = delta
        .value
        .iter()
        .map(|v| u64::from(v.unsigned_abs()))
        .max()
        .unwrap_or(0);
    let (xt, max_x) = (xp.values(), xp.bound());
    let bound = u128::from(max_d) * u128::from(max_x) * (n * ho * wo) as u128;
    if bound > i64::MAX as u128 {
        return Err(Error::overflow(
            "gemm",
            "product",
            format!(
                "a sum of {} products of |a| ≤ {max_d} and |b| ≤ {max_x} may exceed i64",
                n * ho * wo
            ),
        ));
    }
    let geom = Geometry::new(c, k, (hp, wp), (ho, wo));
    let ckk = c * k * k;
    let how = How {
        narrow: dispatch().allow_i16,
        build: loop_build(),
    };
    // Every row is written whole by its block; the update hands the buffer back (optim/sgd.rs).
    let mut g = buffers::take_dirty::<i64>(f * ckk);
    let mut gb = alloc::vec![0i64; if bias { f } else { 0 }];
    let block = filters_per_block(ckk, f);
    // Every block depends on nothing but its own inputs: any schedule gives the same bits.
    par::for_each_chunk_mut(&mut g, block * ckk, |bi, rows| {
        filter_block(xt, &geom, delta, bi * block, max_x, how, rows);
    });
    for (fi, b) in gb.iter_mut().enumerate() {
        // Proven above: at most N·Ho·Wo terms of |δ| ≤ max|δ|.
        *b = (0..n)
            .flat_map(|m| delta.plane(m, fi).1)
            .map(|&v| i64::from(v))
            .sum();
    }
    Ok((g, bias.then_some(gb)))
}

/// Sizes an entry's patch is gathered with.
struct Geometry {
    c: usize,
    k: usize,
    wp: usize,
    /// `Hp·Wp·C`: one channels-last input image.
    image: usize,
    /// `Ho·Wo`: one plane of the error.
    hw: usize,
    /// For each output position `s = y·Wo + x` of a plane, where its patch starts inside the
    /// image, `(y·Wp + x)·C`: a table instead of two divisions per entry.
    at: Vec<usize>,
}

impl Geometry {
    fn new(c: usize, k: usize, (hp, wp): (usize, usize), (ho, wo): (usize, usize)) -> Self {
        let at = (0..ho)
            .flat_map(|y| (0..wo).map(move |x| (y * wp + x) * c))
            .collect();
        Geometry {
            c,
            k,
            wp,
            image: hp * wp * c,
            hw: ho * wo,
            at,
        }
    }
}

/// The plane (image `m`, filter `f`) a run of entries lies in: its first flat index
/// `(m·F + f)·Ho·Wo` and where image `m` starts in the channels-last input.
#[derive(Clone, Copy)]
struct Plane {
    first: usize,
    image: usize,
}

impl Plane {
    fn new(g: &Geometry, m: usize, f: usize, filters: usize) -> Self {
        Plane {
            first: (m * filters + f) * g.hw,
            image: m * g.image,
        }
    }
}

/// Which loops a filter's row may use (from the dispatch: `allow_i16` permits the proven `i32`
/// runs; the instruction-set cap picks the build of the same loops, see `cpu::loop_build`).
#[derive(Clone, Copy)]
struct How {
    narrow: bool,
    build: Isa,
}

/// Filters per block: one block per thread, as long as its accumulators (`i32` run sums and
/// `i64` totals, 12 bytes per weight) stay within 2 MiB. Each block reads every image once, so
/// large blocks read the input least often; measured on VGG8B's block 2 (`benches/cnn.rs`),
/// reading the images dominates keeping the accumulators in L2.
fn filters_per_block(ckk: usize, f: usize) -> usize {
    let by_cache = (2 << 20) / (12 * ckk.max(1));
    let by_threads = f.div_ceil(par::threads());
    by_cache.min(by_threads).max(1)
}

/// The gradient rows (`C×k×k` order) of the filters from `f0` on that `rows` holds. Images are
/// visited one at a time, each adding every filter's entries of that image (consecutive groups
/// of the error, one sequential run), so that the image's patches are read from cache while
/// the block's accumulators stay there too.
fn filter_block(
    xt: &[i16],
    g: &Geometry,
    delta: &SparseDelta,
    f0: usize,
    max_x: u64,
    how: How,
    rows: &mut [i64],
) {
    let ckk = g.c * g.k * g.k;
    let nf = rows.len() / ckk.max(1);
    // Per filter, `Σ|δ|` of its current `i32` run.
    let mut used = alloc::vec![0u64; nf];
    // Largest `Σ|δ|` of a proven i32 run (`budget·max|x| ≤ 2³¹−1`); none without narrow sums.
    let budget = how
        .narrow
        .then(|| (i32::MAX as u64).checked_div(max_x).unwrap_or(u64::MAX));
    // Accumulated in kernel-row-major `k×k×C` order (the order patches are gathered in).
    let mut totals = Totals {
        sums: None,
        len: nf * ckk,
    };
    let mut part = buffers::take_zeroed::<i32>(nf * ckk);
    let (n, filters) = (delta.dim.0, delta.dim.1);
    for m in 0..n {
        for (j, u) in used.iter_mut().enumerate() {
            let (idx, val) = delta.plane(m, f0 + j);
            let pj = &mut part[j * ckk..(j + 1) * ckk];
            let plane = Plane::new(g, m, f0 + j, filters);
            let total = (&mut totals, j * ckk..(j + 1) * ckk);
            add_entries(xt, g, (plane, idx, val), budget, u, total, pj, how.build);
        }
    }
    let (c, kk) = (g.c, g.k * g.k);
    match totals.sums {
        // No run was ever closed: the run sums are the totals.
        None => reorder(rows, &part, (c, kk)),
        Some(mut total) => {
            for (pj, tj) in part.chunks_exact_mut(ckk).zip(total.chunks_exact_mut(ckk)) {
                flush(pj, tj);
            }
            reorder(rows, &total, (c, kk));
            buffers::give(total);
        }
    }
    buffers::give(part);
}

/// Gradient rows in `C×k×k` order from sums in the gathering order `k×k×C`.
fn reorder<S: Copy>(rows: &mut [i64], sums: &[S], (c, kk): (usize, usize))
where
    i64: From<S>,
{
    let ckk = c * kk;
    for (row, t) in rows.chunks_exact_mut(ckk).zip(sums.chunks_exact(ckk)) {
        for (tap, a) in t.chunks_exact(c).enumerate() {
            for (ch, &v) in a.iter().enumerate() {
                row[ch * kk + tap] = i64::from(v);
            }
        }
    }
}

/// The `i64` totals of a block's filters, made (zeroed) only when the first run is closed
/// into them: in most blocks every filter's entries fit one proven `i32` run, whose sums are
/// the totals, and zeroing 8 bytes per weight for nothing cost more than a tenth of the
/// gradient (VGG8B: up to 14 MB per layer and step).
struct Totals {
    sums: Option<Vec<i64>>,
    len: usize,
}

impl Totals {
    /// The totals `range` (made on first use).
    fn get(&mut self, range: core::ops::Range<usize>) -> &mut [i64] {
        let len = self.len;
        &mut self
            .sums
            .get_or_insert_with(|| buffers::take_zeroed::<i64>(len))[range]
    }
}

/// Add `δ·patch` of the given entries of one filter: into `part` in runs proven to fit `i32`
/// (`Σ|δ| ≤ budget`), each full run then added into `total`; an entry whose `|δ|` alone exceeds
/// the budget, or every entry when there is no budget, straight into `total`.
#[allow(clippy::too_many_arguments)]
fn add_entries(
    xt: &[i16],
    g: &Geometry,
    (p, mut idx, mut val): Run<'_>,
    budget: Option<u64>,
    used: &mut u64,
    (totals, range): (&mut Totals, core::ops::Range<usize>),
    part: &mut [i32],
    build: Isa,
) {
    let Some(budget) = budget else {
        accumulate_i64(xt, g, (p, idx, val), totals.get(range), build);
        return;
    };
    while !idx.is_empty() {
        let mut take = 0;
        for &v in val {
            match used.checked_add(u64::from(v.unsigned_abs())) {
                Some(u) if u <= budget => *used = u,
                _ => break,
            }
            take += 1;
        }
        accumulate_i32(xt, g, p, &idx[..take], &val[..take], part, build);
        if take < idx.len() {
            // The next entry does not fit this run: close it.
            let total = totals.get(range.clone());
            flush(part, total);
            *used = 0;
            if u64::from(val[take].unsigned_abs()) > budget {
                accumulate_i64(
                    xt,
                    g,
                    (p, &idx[take..=take], &val[take..=take]),
                    total,
                    build,
                );
                take += 1;
            }
        }
        idx = &idx[take..];
        val = &val[take..];
    }
}

/// `total += part; part = 0`.
fn flush(part: &mut [i32], total: &mut [i64]) {
    for (t, p) in total.iter_mut().zip(part.iter_mut()) {
        *t += i64::from(core::mem::take(p));
    }
}

/// Where entry `i` (of plane `p`) has its patch in the channels-last input: kernel row `u` is
/// the `k·C` values from `start + u·Wp·C`.
#[inline(always)]
fn patch_start(g: &Geometry, p: Plane, i: usize) -> usize {
    p.image + g.at[i - p.first]
}

/// The entries of one plane a loop adds: the plane, their flat indices and their values.
type Run<'a> = (Plane, &'a [usize], &'a [i32]);

macro_rules! accumulate {
    ($name:ident, $avx2:ident, $avx512:ident, $impl:ident, $acc:ty) => {
        fn $name(xt: &[i16], g: &Geometry, run: Run<'_>, acc: &mut [$acc], build: Isa) {
            #[cfg(nitro_x86_simd)]
            match build {
                // SAFETY (both): `loop_build` saw the instruction set allowed and detected; the
                // body is the same safe code, compiled for it.
                Isa::Avx512Vnni => return unsafe { $avx512(xt, g, run, acc) },
                Isa::Avx2 => return unsafe { $avx2(xt, g, run, acc) },
                _ => {}
            }
            let _ = build;
            $impl(xt, g, run, acc)
        }

        #[cfg(nitro_x86_simd)]
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn $avx512(xt: &[i16], g: &Geometry, run: Run<'_>, acc: &mut [$acc]) {
            $impl(xt, g, run, acc)
        }

        #[cfg(nitro_x86_simd)]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2(xt: &[i16], g: &Geometry, run: Run<'_>, acc: &mut [$acc]) {
            $impl(xt, g, run, acc)
        }

        /// `acc += δ·patch` for every entry, as plain slice loops the compiler vectorises.
        #[inline(always)]
        fn $impl(xt: &[i16], g: &Geometry, (p, idx, val): Run<'_>, acc: &mut [$acc]) {
            let kc = g.k * g.c;
            let stride = g.wp * g.c;
            for (&i, &d) in idx.iter().zip(val) {
                if d == 0 {
                    continue;
                }
                let d = <$acc>::from(d);
                let start = patch_start(g, p, i);
                for (u, dst) in acc.chunks_exact_mut(kc).enumerate() {
                    let src = &xt[start + u * stride..start + u * stride + kc];
                    for (a, &v) in dst.iter_mut().zip(src) {
                        *a += d * <$acc>::from(v);
                    }
                }
            }
        }
    };
}

// i32: each run is proven (see `add_entries`); i64: proven by the bound of `conv_weight_gradient`.
accumulate!(
    accumulate_i32_loop,
    accumulate_i32_avx2,
    accumulate_i32_avx512,
    accumulate_i32_impl,
    i32
);

/// Entries per batch of the pair kernels (their pairs live on the stack).
#[cfg(nitro_x86_simd)]
const PAIR_BATCH: usize = 64;

/// `acc += δ·patch` for the entries of one proven `i32` run. On x86-64 the entries whose `δ`
/// fits `i16` go through the pair kernels (`x86::{avx512,avx2}::sparse_chunk`: two entries per
/// `vpdpwssd`/`vpmaddwd`, the sums in registers), the rest and the run tails through the plain
/// loop. Integer sums in any order: the same bits (every partial sum is within the run's
/// proof).
fn accumulate_i32(
    xt: &[i16],
    g: &Geometry,
    p: Plane,
    idx: &[usize],
    val: &[i32],
    acc: &mut [i32],
    build: Isa,
) {
    #[cfg(nitro_x86_simd)]
    if matches!(build, Isa::Avx512Vnni | Isa::Avx2) && pairs_usable(build) {
        return accumulate_pairs(xt, g, p, idx, val, acc, build);
    }
    accumulate_i32_loop(xt, g, (p, idx, val), acc, build)
}

/// [`accumulate_i32`] through the pair kernel of `build` (AVX-512 VNNI or AVX2, detected).
#[cfg(nitro_x86_simd)]
fn accumulate_pairs(
    xt: &[i16],
    g: &Geometry,
    p: Plane,
    idx: &[usize],
    val: &[i32],
    acc: &mut [i32],
    build: Isa,
) {
    {
        let kc = g.k * g.c;
        let shape = (g.k, kc, g.wp * g.c);
        let mut pairs = [(0usize, 0usize, 0i32); PAIR_BATCH / 2];
        let mut rest: ([usize; PAIR_BATCH], [i32; PAIR_BATCH]) = ([0; PAIR_BATCH], [0; PAIR_BATCH]);
        for (ic, vc) in idx.chunks(PAIR_BATCH).zip(val.chunks(PAIR_BATCH)) {
            let (mut np, mut nr) = (0, 0);
            let mut pending: Option<(usize, i16)> = None;
            for (&i, &v) in ic.iter().zip(vc) {
                match i16::try_from(v) {
                    Ok(0) => {}
                    Ok(w) => {
                        let s = patch_start(g, p, i);
                        match pending.take() {
                            None => pending = Some((s, w)),
                            Some((s1, w1)) => {
                                pairs[np] = (s1, s, pair_word(w1, w));
                                np += 1;
                            }
                        }
                    }
                    Err(_) => {
                        rest.0[nr] = i;
                        rest.1[nr] = v;
                        nr += 1;
                    }
                }
            }
            if let Some((s1, w1)) = pending {
                pairs[np] = (s1, s1, pair_word(w1, 0));
                np += 1;
            }
            let done = pair_rows(xt, &pairs[..np], shape, acc, build);
            if done < kc {
                pair_tails(xt, &pairs[..np], shape, done, acc);
            }
            accumulate_i32_loop(xt, g, (p, &rest.0[..nr], &rest.1[..nr]), acc, build);
        }
    }
}

/// A chunk kernel of the pair engine: `acc[..len] += Σ d·x` at offset `off` of every pair.
#[cfg(nitro_x86_simd)]
type Chunk = unsafe fn(&[i16], &[(usize, usize, i32)], usize, &mut [i32]);

/// The leading words of every run of `pairs` that `build`'s chunk kernels cover (a multiple of
/// their vector width), added into `acc` (`k` runs of `kc` sums). The bounds every chunk reads
/// are checked here, once.
#[cfg(nitro_x86_simd)]
fn pair_rows(
    xt: &[i16],
    pairs: &[(usize, usize, i32)],
    (k, kc, stride): (usize, usize, usize),
    acc: &mut [i32],
    build: Isa,
) -> usize {
    use crate::kernels::x86::{avx2, avx512};
    // (words per vector, the 4-vector chunk, the 1-vector chunk)
    let (width, four, one): (usize, Chunk, Chunk) = match build {
        Isa::Avx512Vnni => (32, avx512::sparse_chunk::<4>, avx512::sparse_chunk::<1>),
        _ => (16, avx2::sparse_chunk::<4>, avx2::sparse_chunk::<1>),
    };
    assert_eq!(acc.len(), k * kc);
    let reach = k.saturating_sub(1) * stride + kc;
    assert!(pairs
        .iter()
        .all(|&(s1, s2, _)| s1.max(s2) + reach <= xt.len()));
    let words = kc / width * width;
    for (u, row) in acc.chunks_exact_mut(kc.max(1)).enumerate().take(k) {
        let mut c0 = 0;
        while c0 < words {
            let (n, f) = if c0 + 4 * width <= words {
                (4 * width, four)
            } else {
                (width, one)
            };
            // SAFETY: `build` was allowed and detected (`loop_build`, `pairs_usable`); every
            // pair's runs hold `kc ≥ c0 + n` words from `s + u·stride` (checked above), and the
            // chunk gets exactly `n` sums.
            unsafe { f(xt, pairs, u * stride + c0, &mut row[c0..c0 + n]) };
            c0 += n;
        }
    }
    words
}

/// The two `i16` weights of a pair as the word pair the pair kernels multiply with.
#[cfg(nitro_x86_simd)]
fn pair_word(lo: i16, hi: i16) -> i32 {
    (u32::from(lo as u16) | u32::from(hi as u16) << 16) as i32
}

/// The words `done..kc` of every run of `pairs`, which the pair kernels leave to the caller.
#[cfg(nitro_x86_simd)]
fn pair_tails(
    xt: &[i16],
    pairs: &[(usize, usize, i32)],
    (k, kc, stride): (usize, usize, usize),
    done: usize,
    acc: &mut [i32],
) {
    for &(s1, s2, w) in pairs {
        let (d1, d2) = (i32::from(w as i16), i32::from((w >> 16) as i16));
        for u in 0..k {
            let (r1, r2) = (s1 + u * stride, s2 + u * stride);
            for e in done..kc {
                acc[u * kc + e] += d1 * i32::from(xt[r1 + e]) + d2 * i32::from(xt[r2 + e]);
            }
        }
    }
}

/// Self-check verdicts of the pair kernels, per build: 0 not yet checked, 1 agrees with the
/// plain loop, 2 disagreed (never used again).
#[cfg(nitro_x86_simd)]
static PAIR_VERDICT: [core::sync::atomic::AtomicU8; 2] =
    [const { core::sync::atomic::AtomicU8::new(0) }; 2];

/// Whether `build`'s pair kernel agrees with the plain loop (checked once, at first use, on a
/// small random case with edge values and run tails).
#[cfg(nitro_x86_simd)]
fn pairs_usable(build: Isa) -> bool {
    use core::sync::atomic::Ordering;
    let slot = &PAIR_VERDICT[usize::from(build == Isa::Avx512Vnni)];
    match slot.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = pairs_self_check(build);
            slot.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            if !ok {
                #[cfg(feature = "std")]
                std::eprintln!(
                    "nitro-core: warning: the {build} sparse gradient kernel disagreed with the \
                     portable loop on its self-check; using the loop"
                );
            }
            ok
        }
    }
}

#[cfg(nitro_x86_simd)]
fn pairs_self_check(build: Isa) -> bool {
    // C = 37 channels, k = 3: runs of 111 words cross the 128-, 64-, 32- and 16-word chunks.
    let g = Geometry::new(37, 3, (6, 6), (4, 4));
    // Image 1 of a one-filter error: its plane is flat 16..32.
    let p = Plane::new(&g, 1, 0, 1);
    let mut next = crate::kernels::self_check::edge_values(0x2545_f491_4f6c_dd1d);
    let xt: Vec<i16> = (0..2 * 6 * 6 * 37).map(|_| next(255) as i16).collect();
    // Nine entries (an odd count), one δ outside i16 and one zero; Σ|δ|·255 < 2³¹.
    let idx: Vec<usize> = (0..9).map(|j| 16 + (j * 5) % 16).collect();
    let mut val: Vec<i32> = (0..9).map(|_| next(32_767) as i32).collect();
    val[3] = 40_000;
    val[5] = 0;
    let ckk = g.k * g.k * g.c;
    let mut want = alloc::vec![7i32; ckk];
    let mut got = want.clone();
    accumulate_i32_loop(&xt, &g, (p, &idx, &val), &mut want, Isa::Portable);
    accumulate_pairs(&xt, &g, p, &idx, &val, &mut got, build);
    got == want
}
accumulate!(
    accumulate_i64,
    accumulate_i64_avx2,
    accumulate_i64_avx512,
    accumulate_i64_impl,
    i64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(nitro_x86_simd)]
    #[test]
    fn pair_kernels_agree_with_the_loop_where_the_cpu_has_them() {
        for build in [Isa::Avx2, Isa::Avx512Vnni] {
            if !build.detected() {
                std::eprintln!("SKIPPED: {build} sparse pair kernel not tested: this CPU lacks it");
                continue;
            }
            assert!(pairs_self_check(build), "{build}");
            assert!(pairs_usable(build), "{build}");
        }
    }

    #[test]
    fn sparse_delta_checks_its_groups() {
        let make = |dim, starts: &[usize], index: &[usize], value: &[i32]| {
            SparseDelta::new(dim, starts.to_vec(), index.to_vec(), value.to_vec())
        };
        /// (dim, starts, indices, values, valid?)
        type Case = (
            (usize, usize, usize, usize),
            &'static [usize],
            &'static [usize],
            &'static [i32],
            bool,
        );
        let cases: [Case; 7] = [
            // 1×2×1×2: filter 0 owns flat 0..2, filter 1 owns 2..4.
            ((1, 2, 1, 2), &[0, 1, 2], &[1, 3], &[5, -5], true),
            ((1, 2, 1, 2), &[0, 1, 2], &[2, 3], &[5, -5], false),
            ((1, 2, 1, 2), &[0, 2], &[0, 1], &[1, 1], false),
            ((1, 2, 1, 2), &[0, 1, 1], &[0], &[], false),
            // 2×1×1×2: groups are image-major planes, image 0 owns flat 0..2, image 1 owns 2..4.
            ((2, 1, 1, 2), &[0, 1, 2], &[1, 3], &[5, -5], true),
            ((2, 1, 1, 2), &[0, 1, 2], &[3, 1], &[5, -5], false),
            // One start per filter (the old grouping) does not describe two images.
            ((2, 1, 1, 2), &[0, 2], &[1, 3], &[5, -5], false),
        ];
        for (i, (dim, starts, index, value, valid)) in cases.into_iter().enumerate() {
            assert_eq!(make(dim, starts, index, value).is_ok(), valid, "case {i}");
        }
        let two = make((2, 1, 1, 2), &[0, 1, 2], &[1, 3], &[5, -5]).unwrap();
        assert_eq!(two.plane(1, 0), (&[3usize][..], &[-5i32][..]));
        let twice = SparseDelta::new(
            (1, 2, 1, 2),
            alloc::vec![0, 2, 2],
            alloc::vec![0, 0],
            alloc::vec![1, 2],
        )
        .unwrap();
        assert!(twice.to_dense().is_err());
    }
}
