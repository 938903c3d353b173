//! A convolution's weights in the column order of its channels-last patches
//! ([`PatchesHwc`](super::im2col::PatchesHwc): tap `(u, v)` outer, channel inner): the
//! reorder of one filter, and the whole `F × (k·k·C)` matrix. The tile engine reorders each
//! filter as it packs it (`gemm::amx`'s `Filters`); the other engines multiply the matrix.

use super::buffers::{self, Reusable};
use ndarray::{Array2, ArrayView4};

/// One filter's weights `C×T` (`filter[ch·T + t]`, `T = k·k` taps) in tap-major order,
/// `out[t·C + ch] = f(filter[ch·T + t])`, for the channels from `from` on (the ones below it
/// are the caller's: a vector kernel's).
#[inline(always)]
pub(crate) fn taps_outer<T: Copy, D>(
    filter: &[T],
    (c, taps): (usize, usize),
    from: usize,
    out: &mut [D],
    f: impl Fn(T) -> D,
) {
    if from >= c {
        return;
    }
    for (tap, run) in out.chunks_exact_mut(c).enumerate().take(taps) {
        let vals = filter[from * taps + tap..].iter().step_by(taps);
        for (o, &v) in run[from..].iter_mut().zip(vals) {
            *o = f(v);
        }
    }
}

/// Convolution weights `F×C×k×k` as the `F × (k·k·C)` matrix whose columns match
/// [`PatchesHwc`](super::im2col::PatchesHwc)'s order.
/// Built in a buffer of the kernels' free list (every element written), which the caller may
/// hand back once the product has read it (`buffers::give_array`).
pub fn hwc_weights<T: Reusable + Send + Sync>(w: ArrayView4<'_, T>) -> Array2<T> {
    let (f, c, k, _) = w.dim();
    let ws = w.as_standard_layout();
    let src = ws.as_slice().expect("standard layout");
    let kk = k * k;
    let ckk = (c * kk).max(1);
    let mut out = buffers::take_dirty::<T>(src.len());
    let filters = |first: usize, rows: &mut [T]| {
        let from = &src[first * ckk..][..rows.len()];
        for (filter, row) in from.chunks_exact(ckk).zip(rows.chunks_exact_mut(ckk)) {
            taps_outer(filter, (c, kk), 0, row, |v| v);
        }
    };
    // A VGG layer's weights (up to 2.4 M) on all threads, in blocks of whole filters; a
    // small layer on the calling thread.
    if out.len() >= HWC_PARALLEL {
        let per = HWC_BLOCK.div_ceil(ckk).max(1);
        super::par::for_each_chunk_mut(&mut out, per * ckk, |b, rows| filters(b * per, rows));
    } else {
        filters(0, &mut out);
    }
    Array2::from_shape_vec((f, kk * c), out).expect("F·k·k·C values")
}

/// Weights from which [`hwc_weights`] runs on all threads.
const HWC_PARALLEL: usize = 1 << 16;
/// Weights per block of the parallel [`hwc_weights`] (rounded up to whole filters).
const HWC_BLOCK: usize = 1 << 15;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    /// Small layers (the calling thread) and large ones (blocks of filters on all threads,
    /// the last block short) against the definition: column `(u·k + v)·C + c` of filter `f`
    /// is `w[f, c, u, v]`.
    #[test]
    fn hwc_weights_reorder_every_filter_by_its_definition() {
        for dim in [(3, 5, 3, 3), (41, 200, 3, 3), (7, 300, 5, 5)] {
            let (f, c, k, _) = dim;
            let w = Array4::from_shape_fn(dim, |(a, b, u, v)| {
                (a * 7919 + b * 104_729 + u * 31 + v) as i32 % 65_521 - 32_760
            });
            let h = hwc_weights(w.view());
            assert_eq!(h.dim(), (f, k * k * c), "{dim:?}");
            for ((fi, col), &got) in h.indexed_iter() {
                let (uv, ch) = (col / c, col % c);
                assert_eq!(
                    got,
                    w[[fi, ch, uv / k, uv % k]],
                    "{dim:?} filter {fi} column {col}"
                );
            }
        }
    }
}
