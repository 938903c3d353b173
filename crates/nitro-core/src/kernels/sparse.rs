//! Exact convolution weight gradients from a sparse error.
//!
//! Behind a max-pool (SPEC §3.5: kernel = stride, so windows never overlap) the error reaching a
//! convolution output has at most one non-zero entry per pooling window and channel. The weight
//! gradient `G[f,c,u,v] = Σ δ[m,f,i,j]·xp[m,c,i+u,j+v]` (SPEC §3.2) then has only as many terms
//! per filter as there are such entries, instead of `N·Ho·Wo`. This kernel computes it from the
//! entries alone — gathering one patch per entry and adding `δ·patch` into the filter's row —
//! and never builds the dense `δ`. Sums of integers are exact in any order, so the result equals
//! the dense product ([`super::gemm_nt_rows`] on the transposed patches) bit for bit.
//!
//! Accumulator widths (SPEC §10): a filter's entries are summed in `i32` in runs whose length
//! `L` is proven, `L·max|δ_f|·max|x| ≤ 2³¹−1`, each run then added into `i64`; when not even one
//! product is proven to fit `i32` the filter is summed in `i64` directly. The `i64` sums are
//! proven by the same bound the dense product checks (`max|δ|·max|x|·N·Ho·Wo ≤ 2⁶³−1`, and a
//! filter never has more than `N·Ho·Wo` entries), so both paths fail on exactly the same inputs.

use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array4, ArrayView4};

/// A convolution-output error `N×F×H×W` given by its non-zero entries, grouped by filter:
/// filter `f` owns `index[starts[f]..starts[f+1]]` (flat row-major `N×F×H×W` positions, each
/// with filter coordinate `f`) and the matching `value`s. Zero values are allowed (and
/// skipped by the gradient).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseDelta {
    dim: (usize, usize, usize, usize),
    starts: Vec<usize>,
    index: Vec<usize>,
    value: Vec<i32>,
}

impl SparseDelta {
    /// Check and build. `starts` has `F + 1` non-decreasing entries from 0 to `index.len()`;
    /// every index lies inside the tensor, in its filter's channel.
    pub fn new(
        dim: (usize, usize, usize, usize),
        starts: Vec<usize>,
        index: Vec<usize>,
        value: Vec<i32>,
    ) -> Result<Self> {
        let (n, f, h, w) = dim;
        let hw = h * w;
        let ok_starts = starts.len() == f + 1
            && starts.first() == Some(&0)
            && starts.last() == Some(&index.len())
            && starts.windows(2).all(|s| s[0] <= s[1]);
        if !ok_starts || index.len() != value.len() {
            return Err(Error::shape(format!(
                "sparse error: {} group starts, {} indices and {} values do not describe {f} \
                 filters",
                starts.len(),
                index.len(),
                value.len()
            )));
        }
        let total = n * f * hw;
        for (fi, s) in starts.windows(2).enumerate() {
            if let Some(&bad) = index[s[0]..s[1]]
                .iter()
                .find(|&&i| i >= total || (i / hw) % f != fi)
            {
                return Err(Error::shape(format!(
                    "sparse error: index {bad} is not in filter {fi} of a {dim:?} tensor"
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

    /// Filter `f`'s flat indices and values.
    pub fn filter(&self, f: usize) -> (&[usize], &[i32]) {
        let (a, b) = (self.starts[f], self.starts[f + 1]);
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
/// of a stride-1 convolution with kernel `k` whose padded input was `xp` (`N×C×Hp×Wp`), for the
/// sparse output error `delta` (`N×F×(Hp−k+1)×(Wp−k+1)`).
pub fn conv_weight_gradient(
    xp: ArrayView4<'_, i16>,
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
    let (xt, max_x) = channels_last(xp);
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
    let geom = Geometry {
        c,
        k,
        hp,
        wp,
        fhw: f * ho * wo,
        hw: ho * wo,
        wo,
    };
    let ckk = c * k * k;
    let d = super::dispatch();
    let how = How {
        narrow: d.allow_i16,
        simd: d.allow_simd && super::gemm::has_avx2(),
    };
    let mut g = alloc::vec![0i64; f * ckk];
    let mut gb = alloc::vec![0i64; if bias { f } else { 0 }];
    for_each_filter(&mut g, ckk, |fi, row| {
        let (idx, val) = delta.filter(fi);
        filter_row(&xt, &geom, idx, val, max_x, how, row);
    });
    for (fi, b) in gb.iter_mut().enumerate() {
        // Proven above: at most N·Ho·Wo terms of |δ| ≤ max|δ|.
        *b = delta.filter(fi).1.iter().map(|&v| i64::from(v)).sum();
    }
    Ok((g, bias.then_some(gb)))
}

/// Sizes an entry's patch is gathered with.
struct Geometry {
    c: usize,
    k: usize,
    hp: usize,
    wp: usize,
    /// `F·Ho·Wo`: one image of the error.
    fhw: usize,
    /// `Ho·Wo`: one channel of the error.
    hw: usize,
    wo: usize,
}

/// Which loops a filter's row may use (from [`super::dispatch`]: `allow_i16` permits the
/// proven `i32` runs, `allow_simd` the AVX2 build of the same loops).
#[derive(Clone, Copy)]
struct How {
    narrow: bool,
    simd: bool,
}

/// Rows of `out` (each `len` long) computed by `row(f, row)`, on all threads with `parallel`.
/// Every row depends on nothing but its own inputs, so any schedule gives the same bits.
fn for_each_filter<F>(out: &mut [i64], len: usize, row: F)
where
    F: Fn(usize, &mut [i64]) + Sync + Send,
{
    let len = len.max(1);
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(f, r)| row(f, r));
    }
    #[cfg(not(feature = "parallel"))]
    out.chunks_mut(len).enumerate().for_each(|(f, r)| row(f, r));
}

/// `xp` (`N×C×Hp×Wp`) as `N×Hp×Wp×C`, so that a patch is `k` runs of `k·C` contiguous values
/// (one per kernel row), and `max|xp|`.
fn channels_last(xp: ArrayView4<'_, i16>) -> (Vec<i16>, u64) {
    let (n, c, hp, wp) = xp.dim();
    let xs = xp.as_standard_layout();
    let src = xs.as_slice().expect("standard layout");
    let max_x = src
        .iter()
        .map(|v| u64::from(v.unsigned_abs()))
        .max()
        .unwrap_or(0);
    let plane = hp * wp;
    let per_image = (plane * c).max(1);
    let mut out = alloc::vec![0i16; n * plane * c];
    let image = |(m, o): (usize, &mut [i16])| {
        let s = &src[m * per_image..(m + 1) * per_image];
        // Tiles of 64 positions: the strided writes of a tile stay in L1.
        for p0 in (0..plane).step_by(64) {
            let p1 = (p0 + 64).min(plane);
            for ch in 0..c {
                let row = &s[ch * plane + p0..ch * plane + p1];
                for (p, &v) in (p0..p1).zip(row) {
                    o[p * c + ch] = v;
                }
            }
        }
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(per_image).enumerate().for_each(image);
    }
    #[cfg(not(feature = "parallel"))]
    out.chunks_mut(per_image).enumerate().for_each(image);
    (out, max_x)
}

/// One filter's gradient row (in `C×k×k` order) from its entries.
fn filter_row(
    xt: &[i16],
    g: &Geometry,
    idx: &[usize],
    val: &[i32],
    max_x: u64,
    how: How,
    row: &mut [i64],
) {
    let max_d = val
        .iter()
        .map(|v| u64::from(v.unsigned_abs()))
        .max()
        .unwrap_or(0);
    let per_product = max_d * max_x;
    if per_product == 0 {
        return; // every product is zero; the row stays zero
    }
    // Accumulated in kernel-row-major `k×k×C` order (the order patches are gathered in).
    let mut acc = alloc::vec![0i64; row.len()];
    // Longest run of entries whose i32 sum is proven: L·max|δ|·max|x| ≤ 2³¹−1.
    let run = (i32::MAX as u64 / per_product) as usize;
    if how.narrow && run > 0 {
        let mut part = alloc::vec![0i32; row.len()];
        for (ri, rv) in idx.chunks(run).zip(val.chunks(run)) {
            accumulate_i32(xt, g, ri, rv, &mut part, how.simd);
            for (a, p) in acc.iter_mut().zip(part.iter_mut()) {
                *a += i64::from(core::mem::take(p));
            }
        }
    } else {
        accumulate_i64(xt, g, idx, val, &mut acc, how.simd);
    }
    let (c, kk) = (g.c, g.k * g.k);
    for (t, a) in acc.chunks_exact(c).enumerate() {
        for (ch, &v) in a.iter().enumerate() {
            row[ch * kk + t] = v;
        }
    }
}

/// Where entry `i`'s patch starts in the channels-last input: kernel row `u` is the `k·C`
/// values from `start + u·Wp·C`.
#[inline(always)]
fn patch_start(g: &Geometry, i: usize) -> usize {
    let m = i / g.fhw;
    let s = i % g.hw;
    let (y, x) = (s / g.wo, s % g.wo);
    ((m * g.hp + y) * g.wp + x) * g.c
}

macro_rules! accumulate {
    ($name:ident, $avx2:ident, $impl:ident, $acc:ty) => {
        fn $name(
            xt: &[i16],
            g: &Geometry,
            idx: &[usize],
            val: &[i32],
            acc: &mut [$acc],
            simd: bool,
        ) {
            #[cfg(target_arch = "x86_64")]
            {
                if simd {
                    // SAFETY: the caller saw AVX2 detected (`has_avx2`); the body is the same
                    // safe code, compiled for AVX2.
                    return unsafe { $avx2(xt, g, idx, val, acc) };
                }
            }
            let _ = simd;
            $impl(xt, g, idx, val, acc)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2(xt: &[i16], g: &Geometry, idx: &[usize], val: &[i32], acc: &mut [$acc]) {
            $impl(xt, g, idx, val, acc)
        }

        /// `acc += δ·patch` for every entry, as plain slice loops the compiler vectorises.
        #[inline(always)]
        fn $impl(xt: &[i16], g: &Geometry, idx: &[usize], val: &[i32], acc: &mut [$acc]) {
            let kc = g.k * g.c;
            let stride = g.wp * g.c;
            for (&i, &d) in idx.iter().zip(val) {
                if d == 0 {
                    continue;
                }
                let d = <$acc>::from(d);
                let start = patch_start(g, i);
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

// i32: each run is proven (see `filter_row`); i64: proven by the bound of `conv_weight_gradient`.
accumulate!(
    accumulate_i32,
    accumulate_i32_avx2,
    accumulate_i32_impl,
    i32
);
accumulate!(
    accumulate_i64,
    accumulate_i64_avx2,
    accumulate_i64_impl,
    i64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_delta_checks_its_groups() {
        // 1×2×1×2: filter 0 owns flat 0..2, filter 1 owns 2..4.
        assert!(SparseDelta::new(
            (1, 2, 1, 2),
            alloc::vec![0, 1, 2],
            alloc::vec![1, 3],
            alloc::vec![5, -5]
        )
        .is_ok());
        assert!(SparseDelta::new(
            (1, 2, 1, 2),
            alloc::vec![0, 1, 2],
            alloc::vec![2, 3],
            alloc::vec![5, -5]
        )
        .is_err());
        assert!(SparseDelta::new(
            (1, 2, 1, 2),
            alloc::vec![0, 2],
            alloc::vec![0, 1],
            alloc::vec![1, 1]
        )
        .is_err());
        assert!(SparseDelta::new(
            (1, 2, 1, 2),
            alloc::vec![0, 1, 1],
            alloc::vec![0],
            alloc::vec![]
        )
        .is_err());
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
