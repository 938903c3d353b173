//! Convolution lowering (algorithm.md §3.2, §10): a stride-1 convolution over a zero-padded NCHW
//! tensor becomes one exact matrix product, so that the accumulator proofs of
//! [`crate::kernels::gemm`] apply unchanged — in particular to the weight gradient, whose reduction
//! runs over `batch × H × W` terms (up to `64·28·28 = 50176`) and takes the chunked path when
//! needed.
//!
//! Index conventions: a "patch row" is `(m, i, j)` → `(m·Ho + i)·Wo + j`; a "patch column" is
//! `(c, u, v)` → `(c·k + u)·k + v`, which is the row-major flattening of a weight `F×C×k×k`.

use super::channels_last::ChannelsLast;
use super::gemm::RowSource;
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec;
use core::ops::Range;
use ndarray::{s, Array2, Array4, ArrayView4};

/// `x` zero-padded by `p` on each side of both spatial axes.
pub fn pad<T: Copy + Default>(x: ArrayView4<'_, T>, p: usize) -> Array4<T> {
    let (n, c, h, w) = x.dim();
    if p == 0 {
        return x.to_owned();
    }
    let mut out = Array4::<T>::default((n, c, h + 2 * p, w + 2 * p));
    out.slice_mut(s![.., .., p..p + h, p..p + w]).assign(&x);
    out
}

/// Output size of a stride-1 `k×k` window over a padded `hp×wp` plane.
pub fn out_size(hp: usize, wp: usize, k: usize) -> Result<(usize, usize)> {
    if k == 0 || hp < k || wp < k {
        return Err(Error::shape(format!(
            "convolution: kernel {k} does not fit the padded input {hp}×{wp}"
        )));
    }
    Ok((hp - k + 1, wp - k + 1))
}

/// Patch matrix `(N·Ho·Wo) × (C·k·k)` of a padded tensor (forward: `z = patches · Wᵀ`).
pub fn im2col<T: Copy + Default>(xp: ArrayView4<'_, T>, k: usize) -> Result<Array2<T>> {
    let (n, c, hp, wp) = xp.dim();
    let (ho, wo) = out_size(hp, wp, k)?;
    let xs = xp.as_standard_layout();
    let x = xs.as_slice().expect("standard layout");
    let ckk = c * k * k;
    let mut out = vec![T::default(); n * ho * wo * ckk];
    for m in 0..n {
        for i in 0..ho {
            for j in 0..wo {
                let row = ((m * ho + i) * wo + j) * ckk;
                for ch in 0..c {
                    for u in 0..k {
                        let src = ((m * c + ch) * hp + i + u) * wp + j;
                        let dst = row + (ch * k + u) * k;
                        out[dst..dst + k].copy_from_slice(&x[src..src + k]);
                    }
                }
            }
        }
    }
    Ok(Array2::from_shape_vec((n * ho * wo, ckk), out).expect("sizes computed above"))
}

/// Transposed patch matrix `(C·k·k) × (N·Ho·Wo)` (weight gradient: `G = δᵀ-rows · patchesᵀ`,
/// both operands row-contiguous along the long `N·Ho·Wo` reduction).
pub fn im2col_t<T: Copy + Default>(xp: ArrayView4<'_, T>, k: usize) -> Result<Array2<T>> {
    let (n, c, hp, wp) = xp.dim();
    let (ho, wo) = out_size(hp, wp, k)?;
    let xs = xp.as_standard_layout();
    let x = xs.as_slice().expect("standard layout");
    let r = n * ho * wo;
    let mut out = vec![T::default(); c * k * k * r];
    for ch in 0..c {
        for u in 0..k {
            for v in 0..k {
                let row = ((ch * k + u) * k + v) * r;
                for m in 0..n {
                    for i in 0..ho {
                        let src = ((m * c + ch) * hp + i + u) * wp + v;
                        let dst = row + (m * ho + i) * wo;
                        out[dst..dst + wo].copy_from_slice(&x[src..src + wo]);
                    }
                }
            }
        }
    }
    Ok(Array2::from_shape_vec((c * k * k, r), out).expect("sizes computed above"))
}

/// The geometry of a padded `N×C×Hp×Wp` tensor under a stride-1 `k×k` window.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    c: usize,
    hp: usize,
    wp: usize,
    k: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// Output positions `N·Ho·Wo`: the rows of the patch matrix.
    fn positions(&self) -> usize {
        self.n * self.ho * self.wo
    }

    /// Window taps `C·k·k`: its columns.
    fn taps(&self) -> usize {
        self.c * self.k * self.k
    }
}

fn geometry_of(xp: &ArrayView4<'_, i16>, k: usize) -> Result<(Geometry, u64)> {
    let (n, c, hp, wp) = xp.dim();
    let (ho, wo) = out_size(hp, wp, k)?;
    let bound = xp
        .iter()
        .fold(0u32, |m, &v| m.max(i32::from(v).unsigned_abs()));
    Ok((
        Geometry {
            n,
            c,
            hp,
            wp,
            k,
            ho,
            wo,
        },
        u64::from(bound),
    ))
}

/// The patch matrix of [`im2col`] — or, built with [`Patches::transposed`], that of
/// [`im2col_t`] — as a [`RowSource`]: rows are written on demand while the GEMM packs them, so
/// the matrix (`(N·Ho·Wo) × (C·k·k)` or its transpose) is never stored.
pub struct Patches<'a> {
    x: &'a [i16],
    g: Geometry,
    bound: u64,
    transposed: bool,
}

impl<'a> Patches<'a> {
    /// Patches of a padded tensor in standard layout: one row per output position.
    pub fn new(xp: ArrayView4<'a, i16>, k: usize) -> Result<Self> {
        Self::build(xp, k, false)
    }

    /// Transposed patches: one row per `(c, u, v)`, one column per output position.
    pub fn transposed(xp: ArrayView4<'a, i16>, k: usize) -> Result<Self> {
        Self::build(xp, k, true)
    }

    fn build(xp: ArrayView4<'a, i16>, k: usize, transposed: bool) -> Result<Self> {
        let (g, bound) = geometry_of(&xp, k)?;
        let x = xp
            .to_slice()
            .ok_or_else(|| Error::shape("convolution patches need a standard-layout input"))?;
        Ok(Patches {
            x,
            g,
            bound,
            transposed,
        })
    }
}

impl RowSource for Patches<'_> {
    fn rows(&self) -> usize {
        if self.transposed {
            self.g.taps()
        } else {
            self.g.positions()
        }
    }
    fn cols(&self) -> usize {
        if self.transposed {
            self.g.positions()
        } else {
            self.g.taps()
        }
    }
    fn bound(&self) -> u64 {
        self.bound
    }
    fn row(&self, r: usize, out: &mut [i16]) {
        let Geometry {
            n,
            c,
            hp,
            wp,
            k,
            ho,
            wo,
        } = self.g;
        if self.transposed {
            // Row (c, u, v): for every image and output row, `wo` consecutive inputs.
            let (ch, u, v) = (r / (k * k), (r / k) % k, r % k);
            for m in 0..n {
                for i in 0..ho {
                    let src = ((m * c + ch) * hp + i + u) * wp + v;
                    let dst = (m * ho + i) * wo;
                    out[dst..dst + wo].copy_from_slice(&self.x[src..src + wo]);
                }
            }
            return;
        }
        // Row (m, i, j): for every channel and window row, `k` consecutive inputs.
        let (m, i, j) = (r / (ho * wo), (r / wo) % ho, r % wo);
        for ch in 0..c {
            for u in 0..k {
                let src = ((m * c + ch) * hp + i + u) * wp + j;
                let dst = (ch * k + u) * k;
                if k == 3 {
                    // The common 3×3 case as a fixed-size copy (inlined, no memmove call).
                    let seg: &[i16; 3] = self.x[src..src + 3].try_into().expect("3 values");
                    out[dst..dst + 3].copy_from_slice(seg);
                } else {
                    out[dst..dst + k].copy_from_slice(&self.x[src..src + k]);
                }
            }
        }
    }
}

/// The patch matrix of [`im2col`] with its columns in channels-last order `(u, v, c)` →
/// `(u·k + v)·C + c` instead of `(c, u, v)`: the same products, so a product with the weights
/// in that order ([`hwc_weights`](super::filters::hwc_weights)) gives the same sums — integer addition does not depend on
/// the order. It reads a channels-last padded input ([`ChannelsLast`]), from which a patch row
/// is `k` contiguous runs of `k·C` values (the NCHW rows of [`Patches`] are `C·k` runs of `k`).
pub struct PatchesHwc<'a> {
    x: &'a ChannelsLast,
    g: Geometry,
}

impl<'a> PatchesHwc<'a> {
    /// Channels-last patches of a padded input under a stride-1 `k×k` window.
    pub fn new(x: &'a ChannelsLast, k: usize) -> Result<Self> {
        let (n, c, hp, wp) = x.dim();
        let (ho, wo) = out_size(hp, wp, k)?;
        let g = Geometry {
            n,
            c,
            hp,
            wp,
            k,
            ho,
            wo,
        };
        Ok(PatchesHwc { x, g })
    }
}

impl RowSource for PatchesHwc<'_> {
    fn rows(&self) -> usize {
        self.g.positions()
    }
    fn cols(&self) -> usize {
        self.g.taps()
    }
    fn bound(&self) -> u64 {
        self.x.bound()
    }
    fn row(&self, r: usize, out: &mut [i16]) {
        let x = self.x.values();
        self.runs(r, |dst, src| out[dst].copy_from_slice(&x[src]));
    }
    /// The runs narrowed straight from the input (no `i16` copy of the row first).
    fn row_bytes(&self, r: usize, out: &mut [i8], _wide: &mut [i16]) {
        let x = self.x.values();
        self.runs(r, |dst, src| {
            crate::kernels::map::on_build(&x[src], &mut out[dst], &|v: i16, _| v as i8)
        });
    }
}

impl PatchesHwc<'_> {
    /// Row `r = (m, i, j)`'s `k` runs, one per window row, of `k·C` consecutive inputs: `f(the
    /// run's place in the row, its place in the input)`.
    #[inline(always)]
    fn runs(&self, r: usize, mut f: impl FnMut(Range<usize>, Range<usize>)) {
        let Geometry {
            c,
            hp,
            wp,
            k,
            ho,
            wo,
            ..
        } = self.g;
        let (m, i, j) = (r / (ho * wo), (r / wo) % ho, r % wo);
        let run = k * c;
        for u in 0..k {
            let src = ((m * hp + i + u) * wp + j) * c;
            f(u * run..(u + 1) * run, src..src + run);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn patches_and_transposed_patches_agree() {
        let x = Array4::from_shape_fn((2, 3, 5, 4), |(m, c, i, j)| {
            (m * 60 + c * 20 + i * 4 + j) as i16
        });
        let xp = pad(x.view(), 1);
        assert_eq!(xp.dim(), (2, 3, 7, 6));
        assert_eq!(xp[[0, 0, 0, 0]], 0);
        assert_eq!(xp[[1, 2, 1, 1]], x[[1, 2, 0, 0]]);
        let p = im2col(xp.view(), 3).unwrap();
        let pt = im2col_t(xp.view(), 3).unwrap();
        assert_eq!(p.t(), pt);
        // Row (m=1, i=2, j=1), column (c=2, u=1, v=2) reads xp[1, 2, 3, 3].
        assert_eq!(p[[(5 + 2) * 4 + 1, (2 * 3 + 1) * 3 + 2]], xp[[1, 2, 3, 3]]);
        assert!(im2col(xp.view(), 8).is_err());
        // The on-demand row sources write exactly the rows of the stored matrices.
        let (src, src_t) = (
            Patches::new(xp.view(), 3).unwrap(),
            Patches::transposed(xp.view(), 3).unwrap(),
        );
        assert_eq!((src.rows(), src.cols()), p.dim());
        assert_eq!((src_t.rows(), src_t.cols()), pt.dim());
        assert_eq!(src.bound(), 119);
        for (r, want) in p.rows().into_iter().enumerate() {
            let mut row = vec![0i16; src.cols()];
            src.row(r, &mut row);
            assert_eq!(row, want.to_vec(), "patch row {r}");
        }
        for (r, want) in pt.rows().into_iter().enumerate() {
            let mut row = vec![-1i16; src_t.cols()];
            src_t.row(r, &mut row);
            assert_eq!(row, want.to_vec(), "transposed patch row {r}");
        }
        // Channels-last rows hold the same values, columns (c, u, v) moved to (u, v, c).
        let xl = ChannelsLast::padded(x.view(), 1).unwrap();
        let hwc = PatchesHwc::new(&xl, 3).unwrap();
        assert_eq!(
            (hwc.rows(), hwc.cols(), hwc.bound()),
            (p.nrows(), p.ncols(), 119)
        );
        let (mut row, mut bytes) = (vec![0i16; hwc.cols()], vec![0i8; hwc.cols()]);
        for (r, want) in p.rows().into_iter().enumerate() {
            hwc.row(r, &mut row);
            // Values of at most 119 are their own bytes: the narrowed row is the row.
            hwc.row_bytes(r, &mut bytes, &mut []);
            assert!(row.iter().zip(&bytes).all(|(&v, &b)| v == i16::from(b)));
            for (ch, u, v) in
                (0..3).flat_map(|c| (0..3).flat_map(move |u| (0..3).map(move |v| (c, u, v))))
            {
                assert_eq!(
                    row[(u * 3 + v) * 3 + ch],
                    want[(ch * 3 + u) * 3 + v],
                    "row {r}"
                );
            }
        }
        let w = Array4::from_shape_fn((2, 3, 3, 3), |(f, c, u, v)| {
            (f * 81 + c * 9 + u * 3 + v) as i32
        });
        let wh = crate::kernels::filters::hwc_weights(w.view());
        // Column (u, v, c) = (2, 0, 1) is (2·3 + 0)·3 + 1 = 19.
        assert_eq!(wh[[1, 19]], w[[1, 1, 2, 0]]);
        assert!(Patches::new(xp.view(), 8).is_err());
        assert!(Patches::transposed(xp.t(), 3).is_err());
    }
}
