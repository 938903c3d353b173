//! Pooling and flattening (algorithm.md §3.5): MaxPool2d and IntegerAvgPool2d with kernel = stride,
//! asymmetric kernels and padding, and Flatten NCHW → `N × (C·H·W)`.

use super::saved::no_forward;
use crate::arith::tdiv;
use crate::error::{Error, Result};
use crate::kernels::maxpool::{self, PADDING};
use crate::kernels::sparse::SparseDelta;
use crate::kernels::{buffers, par, Int};
use crate::optim::Compat;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array2, Array4, ArrayView4};

/// A tensor shape `(n, c, h, w)`.
type Nchw = (usize, usize, usize, usize);

/// A value of the byte type as the byte it is (for the byte kernels, which run only where
/// [`Int::bytes`] gives the values as bytes).
fn byte<T: Int>(v: T) -> i8 {
    let v: i32 = v.into();
    v as i8
}

/// Element types that can be pooled (the `i8` block outputs, `i16` after dropout, `i32` errors).
pub trait PoolElem: Int + Ord + TryFrom<i64> + Default + buffers::Reusable {
    /// The type's minimum: the max-pool padding value (algorithm.md §3.5).
    const MIN: Self;
}
impl PoolElem for i8 {
    const MIN: Self = i8::MIN;
}
impl PoolElem for i16 {
    const MIN: Self = i16::MIN;
}
impl PoolElem for i32 {
    const MIN: Self = i32::MIN;
}

/// Maximum or (truncating) average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// MaxPool2d.
    Max,
    /// IntegerAvgPool2d.
    Avg,
}

impl PoolKind {
    /// Stable name (`"max"` / `"avg"`).
    pub fn name(&self) -> &'static str {
        match self {
            PoolKind::Max => "max",
            PoolKind::Avg => "avg",
        }
    }
    /// Parse [`PoolKind::name`].
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "max" => Ok(PoolKind::Max),
            "avg" => Ok(PoolKind::Avg),
            o => Err(Error::config(format!(
                "pooling must be \"max\" or \"avg\", got {o:?}"
            ))),
        }
    }
}

/// A pooling layer with kernel `(kh, kw)` = stride and padding `(ph, pw)`.
#[derive(Clone, Debug)]
pub struct Pool2d {
    /// Max or average.
    pub kind: PoolKind,
    /// Kernel (= stride) `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Padding `(ph, pw)`, each at most half the kernel.
    pub padding: (usize, usize),
    saved_shape: Option<(usize, usize, usize, usize)>,
    saved_argmax: Option<Vec<usize>>,
}

impl Pool2d {
    /// Validate and build.
    pub fn new(kind: PoolKind, kernel: (usize, usize), padding: (usize, usize)) -> Result<Self> {
        if kernel.0 == 0 || kernel.1 == 0 {
            return Err(Error::config("pooling kernel must be positive"));
        }
        if padding.0 > kernel.0 / 2 || padding.1 > kernel.1 / 2 {
            return Err(Error::config(format!(
                "pooling padding {padding:?} exceeds half the kernel {kernel:?} \
                 (docs/algorithm.md §3.5)"
            )));
        }
        Ok(Pool2d {
            kind,
            kernel,
            padding,
            saved_shape: None,
            saved_argmax: None,
        })
    }

    /// Output size `(H + 2ph − kh)/kh + 1` (floor) and likewise for the width.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let padded = |x: usize, p: usize| p.checked_mul(2).and_then(|p| p.checked_add(x));
        let (Some(hp), Some(wp)) = (padded(h, self.padding.0), padded(w, self.padding.1)) else {
            return Err(Error::shape(format!(
                "pooling padding {:?} is too large for an input {h}×{w}",
                self.padding
            )));
        };
        if kh == 0 || kw == 0 || hp < kh || wp < kw {
            return Err(Error::shape(format!(
                "pooling kernel {:?} does not fit input {h}×{w} with padding {:?}",
                self.kernel, self.padding
            )));
        }
        Ok(((hp - kh) / kh + 1, (wp - kw) / kw + 1))
    }

    /// Forward. Max pooling pads with the type's minimum, or with 0 in
    /// [`Compat::Reference`] (algorithm.md §12 item 3); ties go to the first element in row-major
    /// order. Average pooling pads with 0 and truncates. Training saves what backward needs.
    pub fn forward<T: PoolElem>(
        &mut self,
        x: ArrayView4<'_, T>,
        train: bool,
        compat: Compat,
    ) -> Result<Array4<T>> {
        let (y, arg) = self.apply(x, compat)?;
        if train {
            self.saved_shape = Some(x.dim());
            self.saved_argmax = (self.kind == PoolKind::Max).then_some(arg);
        } else {
            self.saved_shape = None;
            self.saved_argmax = None;
        }
        Ok(y)
    }

    /// Forward without saving: the pooled tensor and, for max pooling, each window's arg-max
    /// (flat input index; `usize::MAX` when the maximum was padding).
    pub fn apply<T: PoolElem>(
        &self,
        x: ArrayView4<'_, T>,
        compat: Compat,
    ) -> Result<(Array4<T>, Vec<usize>)> {
        let (n, c, h, w) = x.dim();
        let (ho, wo) = self.output_size(h, w)?;
        let (kh, kw) = self.kernel;
        let (ph, pw) = self.padding;
        let xs = x.as_standard_layout();
        let xv = xs.as_slice().expect("standard layout");
        let pad_value = match compat {
            Compat::Exact => T::MIN,
            Compat::Reference => T::default(),
        };
        let area = (kh * kw) as i64;
        let per = (ho * wo).max(1);
        let max = self.kind == PoolKind::Max;
        let windows = maxpool::Windows {
            kernel: self.kernel,
            padding: self.padding,
        };
        let mut out = alloc::vec![T::default(); n * c * ho * wo];
        let mut arg = if max {
            // Every window writes its arg-max below (kernels/maxpool.rs or the loop).
            buffers::take_dirty::<usize>(n * c * ho * wo)
        } else {
            Vec::new()
        };
        // One plane: its outputs (and arg-max indices for max pooling).
        let plane_fn = |plane: usize, o: &mut [T], mut a: Option<&mut [usize]>| -> Result<()> {
            let base = plane * h * w;
            // Max pooling: kernels/maxpool.rs (a kernel beyond its limits takes the loop below).
            if let Some(a) = a.as_deref_mut() {
                if kh <= maxpool::BAND_ROWS && kw <= maxpool::BAND_COLS {
                    let plane = maxpool::Plane { base, h, w };
                    // Bytes (the activations) by the byte kernel where it can take the plane.
                    if let (Some(xb), Some(ob)) = (T::bytes(xv), T::bytes_mut(o)) {
                        maxpool::plane_bytes(xb, plane, windows, byte(pad_value), ob, a);
                        return Ok(());
                    }
                    maxpool::plane(xv, plane, windows, pad_value, o, a);
                    return Ok(());
                }
            }
            for oi in 0..ho {
                // Windows wholly inside the input (no padding): read straight from the rows,
                // the first element starting the maximum (the same arg-max on ties: later
                // elements replace it only when strictly larger, in row-major order).
                let y0 = (oi * kh).wrapping_sub(ph);
                let rows_inside = y0 < h && y0 + kh <= h;
                for oj in 0..wo {
                    let x0 = (oj * kw).wrapping_sub(pw);
                    if rows_inside && x0 < w && x0 + kw <= w {
                        let i = oi * wo + oj;
                        let start = base + y0 * w + x0;
                        match a.as_deref_mut() {
                            Some(a) => {
                                let (mut best, mut best_at) = (xv[start], start);
                                for u in 0..kh {
                                    let at = start + u * w;
                                    for (v, &val) in xv[at..at + kw].iter().enumerate() {
                                        if val > best {
                                            best = val;
                                            best_at = at + v;
                                        }
                                    }
                                }
                                o[i] = best;
                                a[i] = best_at;
                            }
                            None => {
                                let mut sum = 0i64;
                                for u in 0..kh {
                                    let at = start + u * w;
                                    sum += xv[at..at + kw]
                                        .iter()
                                        .map(|&v| Into::<i64>::into(v))
                                        .sum::<i64>();
                                }
                                // |mean| ≤ max|x|: always fits T.
                                o[i] = T::try_from(tdiv(sum, area)).map_err(|_| {
                                    Error::overflow("avgpool", "forward", "mean outside the type")
                                })?;
                            }
                        }
                        continue;
                    }
                    let mut best = pad_value;
                    let mut best_at = PADDING;
                    let mut first = true;
                    let mut sum = 0i64;
                    for u in 0..kh {
                        let y = (oi * kh + u).wrapping_sub(ph);
                        for v in 0..kw {
                            let xx = (oj * kw + v).wrapping_sub(pw);
                            let (val, at) = if y < h && xx < w {
                                let at = base + y * w + xx;
                                sum += Into::<i64>::into(xv[at]);
                                (xv[at], at)
                            } else {
                                // Average pooling pads with zero: nothing to add.
                                (pad_value, PADDING)
                            };
                            if first || val > best {
                                best = val;
                                best_at = at;
                                first = false;
                            }
                        }
                    }
                    let i = oi * wo + oj;
                    match (self.kind, a.as_deref_mut()) {
                        (PoolKind::Max, Some(a)) => {
                            o[i] = best;
                            a[i] = best_at;
                        }
                        _ => {
                            // |mean| ≤ max|x|: always fits T.
                            o[i] = T::try_from(tdiv(sum, area)).map_err(|_| {
                                Error::overflow("avgpool", "forward", "mean outside the type")
                            })?;
                        }
                    }
                }
            }
            Ok(())
        };
        // Planes are independent: on all threads when there is enough work.
        let parallel = out.len() >= 1 << 14;
        if max {
            par::try_for_each_chunk_pair_mut(&mut out, per, &mut arg, per, parallel, |p, o, a| {
                plane_fn(p, o, Some(a))
            })?;
        } else {
            par::try_for_each_chunk_mut(&mut out, per, parallel, |p, o| plane_fn(p, o, None))?;
        }
        let y = Array4::from_shape_vec((n, c, ho, wo), out).expect("sizes computed above");
        Ok((y, arg))
    }

    /// The forward's outputs alone, without arg-max indices: what a pool between blocks needs,
    /// since no error crosses a block boundary (algorithm.md §4.2). The same values as
    /// [`Pool2d::apply`]: a window's maximum, the padding (the type's minimum in exact mode,
    /// 0 in reference mode) taking part where the window reaches into it.
    pub fn values<T: PoolElem>(&self, x: ArrayView4<'_, T>, compat: Compat) -> Result<Array4<T>> {
        if self.kind != PoolKind::Max {
            return Ok(self.apply(x, compat)?.0);
        }
        let (n, c, h, w) = x.dim();
        let (ho, wo) = self.output_size(h, w)?;
        let ((kh, kw), (ph, pw)) = (self.kernel, self.padding);
        let xs = x.as_standard_layout();
        let xv = xs.as_slice().expect("standard layout");
        let pad = match compat {
            Compat::Exact => T::MIN,
            Compat::Reference => T::default(),
        };
        // Every output is written below: a buffer of an earlier batch serves.
        let mut out = buffers::take_dirty::<T>(n * c * ho * wo);
        let per = (ho * wo).max(1);
        let parallel = out.len() >= 1 << 14;
        let windows = maxpool::Windows {
            kernel: (kh, kw),
            padding: (ph, pw),
        };
        par::try_for_each_chunk_mut(&mut out, per, parallel, |plane, o| {
            let plane = maxpool::Plane {
                base: plane * h * w,
                h,
                w,
            };
            match (T::bytes(xv), T::bytes_mut(o)) {
                // Bytes (the activations between blocks) by the byte kernel where it applies.
                (Some(xb), Some(ob)) => {
                    maxpool::plane_values_bytes(xb, plane, windows, byte(pad), ob)
                }
                _ => maxpool::plane_values(xv, plane, windows, pad, o),
            }
            Ok(())
        })?;
        Ok(Array4::from_shape_vec((n, c, ho, wo), out).expect("sizes computed above"))
    }

    /// The input shape `(n, c, h, w)` the training forward saved, taken, and the output size
    /// `(ho, wo)` it gave, which the error `delta` must match.
    fn take_saved_shape(&mut self, delta: &ArrayView4<'_, i32>) -> Result<(Nchw, (usize, usize))> {
        let (n, c, h, w) = self
            .saved_shape
            .take()
            .ok_or_else(|| no_forward("pooling"))?;
        let (ho, wo) = self.output_size(h, w)?;
        if delta.dim() != (n, c, ho, wo) {
            return Err(Error::shape(format!(
                "pooling: error is {:?}, expected {:?}",
                delta.dim(),
                (n, c, ho, wo)
            )));
        }
        Ok(((n, c, h, w), (ho, wo)))
    }

    /// The arg-max a max-pool training forward saved, taken.
    fn take_saved_argmax(&mut self) -> Result<Vec<usize>> {
        self.saved_argmax
            .take()
            .ok_or_else(|| Error::config("max-pool backward without saved arg-max"))
    }

    /// Backward: max routes each `δ` to the saved arg-max (nothing for a padding maximum);
    /// average gives every input of the window `tdiv(δ, kh·kw)`. Inputs outside every window
    /// get 0.
    pub fn backward(&mut self, delta: ArrayView4<'_, i32>) -> Result<Array4<i32>> {
        let ((n, c, h, w), (ho, wo)) = self.take_saved_shape(&delta)?;
        let ds = delta.as_standard_layout();
        let d = ds.as_slice().expect("standard layout");
        let mut out = alloc::vec![0i32; n * c * h * w];
        match self.kind {
            PoolKind::Max => {
                let arg = self.take_saved_argmax()?;
                // Windows do not overlap (stride = kernel), so each input gets at most one δ.
                for (&a, &dv) in arg.iter().zip(d) {
                    if a != PADDING {
                        out[a] = dv;
                    }
                }
                buffers::give(arg);
            }
            PoolKind::Avg => {
                let (kh, kw) = self.kernel;
                let (ph, pw) = self.padding;
                let area = (kh * kw) as i64;
                for plane in 0..n * c {
                    for y in 0..h {
                        let oi = (y + ph) / kh;
                        if oi >= ho {
                            continue;
                        }
                        for xx in 0..w {
                            let oj = (xx + pw) / kw;
                            if oj >= wo {
                                continue;
                            }
                            let dv = d[(plane * ho + oi) * wo + oj];
                            // |tdiv(δ, area)| ≤ |δ|: fits i32.
                            out[(plane * h + y) * w + xx] = tdiv(i64::from(dv), area) as i32;
                        }
                    }
                }
            }
        }
        Ok(Array4::from_shape_vec((n, c, h, w), out).expect("sizes"))
    }

    /// [`Pool2d::backward`] of a max pool as its non-zero entries, one group per image and
    /// channel (image-major): each window's `δ` at its saved arg-max, nothing for a padding
    /// maximum or a zero `δ`. The dense form ([`SparseDelta::to_dense`]) equals what
    /// [`Pool2d::backward`] returns; average pooling spreads every `δ` over its window and is
    /// refused.
    pub fn backward_sparse(&mut self, delta: ArrayView4<'_, i32>) -> Result<SparseDelta> {
        if self.kind != PoolKind::Max {
            return Err(Error::config(
                "a sparse pooling backward needs max pooling (average pooling spreads the error)",
            ));
        }
        let ((n, c, h, w), (ho, wo)) = self.take_saved_shape(&delta)?;
        let arg = self.take_saved_argmax()?;
        let ds = delta.as_standard_layout();
        let d = ds.as_slice().expect("standard layout");
        let per = ho * wo;
        let mut starts = Vec::with_capacity(n * c + 1);
        // The sparse error hands these back when dropped (kernels/sparse.rs).
        let mut index = buffers::take_empty::<usize>(arg.len());
        let mut value = buffers::take_empty::<i32>(arg.len());
        // One group per plane, image-major: the order of `arg` and `d` themselves.
        for (a_plane, d_plane) in arg.chunks(per.max(1)).zip(d.chunks(per.max(1))) {
            starts.push(index.len());
            for (&a, &dv) in a_plane.iter().zip(d_plane) {
                if a != PADDING && dv != 0 {
                    index.push(a);
                    value.push(dv);
                }
            }
        }
        starts.resize(n * c, index.len());
        starts.push(index.len());
        buffers::give(arg);
        SparseDelta::new((n, c, h, w), starts, index, value)
    }

    /// Drop saved training state.
    pub fn clear(&mut self) {
        self.saved_shape = None;
        self.saved_argmax = None;
    }
}

/// Flatten NCHW → `N × (C·H·W)` row-major (algorithm.md §3.5).
pub fn flatten<T: Clone>(x: Array4<T>) -> Array2<T> {
    let (n, c, h, w) = x.dim();
    let x = if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    };
    x.into_shape_with_order((n, c * h * w))
        .expect("standard layout")
}

/// Inverse of [`flatten`]: `N × (C·H·W)` → NCHW.
pub fn unflatten<T: Clone>(x: Array2<T>, chw: (usize, usize, usize)) -> Result<Array4<T>> {
    let n = x.nrows();
    if chw.0.checked_mul(chw.1).and_then(|v| v.checked_mul(chw.2)) != Some(x.ncols()) {
        return Err(Error::shape(format!(
            "cannot reshape {} features into {chw:?}",
            x.ncols()
        )));
    }
    let x = if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    };
    Ok(x.into_shape_with_order((n, chw.0, chw.1, chw.2))
        .expect("standard layout"))
}
