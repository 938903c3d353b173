//! Element-wise maps — a product scaled back to `i8`, an activation's backward — as plain
//! loops compiled for the widest build the dispatch allows ([`loop_build`]), on all threads when
//! the tensor is large. The layers' element functions are small and branch-free; compiled for the
//! crate's baseline target (SSE2) and called through ndarray's iterators they had cost more than
//! a small product: scaling MLP2's 64×200 first-layer output took 15 µs, a tenth of the
//! 64×784×200 product before it. Every build runs the same safe code compiled for another
//! target, and each element depends on its own inputs only, so the integers never change.

#[cfg(nitro_x86_simd)]
use crate::kernels::cpu::{loop_build, Isa};
use crate::kernels::par;
use ndarray::{Array, ArrayView, Dimension};

/// Elements from which a map runs on all threads (smaller ones stay on the calling thread:
/// waking the pool would cost more than the loop); also the table lookup's (`lookup.rs`).
pub(crate) const PAR_MIN: usize = 1 << 16;
/// Elements per part of a map on several threads.
pub(crate) const PART: usize = 1 << 14;

/// `dst[i] = f(src[i], dst[i])` for every `i` (equal lengths).
pub(crate) fn zip_with<S, D, F>(src: &[S], dst: &mut [D], f: F)
where
    S: Copy + Sync,
    D: Copy + Send,
    F: Fn(S, D) -> D + Sync + Send,
{
    debug_assert_eq!(src.len(), dst.len());
    let part = |i: usize, d: &mut [D]| {
        let s = &src[i * PART..i * PART + d.len()];
        on_build(s, d, &f)
    };
    if dst.len() >= PAR_MIN && par::threads() > 1 {
        par::for_each_chunk_mut(dst, PART, part);
    } else {
        on_build(src, dst, &f);
    }
}

/// `f` of every element of `a`, in a new array of its shape (any layout; the result is in
/// standard order).
pub(crate) fn map_array<S, D, Dim, F>(a: ArrayView<'_, S, Dim>, f: F) -> Array<D, Dim>
where
    S: Copy + Sync,
    D: super::buffers::Reusable + Send,
    Dim: Dimension,
    F: Fn(S) -> D + Sync + Send,
{
    let Some(src) = a.as_slice() else {
        return a.mapv(f);
    };
    // Every element is written below: a buffer of an earlier step serves, stale values and all.
    let mut out = super::buffers::take_dirty::<D>(src.len());
    zip_with(src, &mut out, |s, _| f(s));
    Array::from_shape_vec(a.raw_dim(), out).expect("as many elements as the shape")
}

/// `dst[i] = f(src[i], dst[i])` on the calling thread, on the widest allowed build (also for
/// short runs inside other kernels' loops).
pub(crate) fn on_build<S: Copy, D: Copy, F: Fn(S, D) -> D>(src: &[S], dst: &mut [D], f: &F) {
    #[cfg(nitro_x86_simd)]
    match loop_build() {
        // SAFETY (both): the instruction set is allowed and detected; the body is safe code.
        Isa::Avx512Vnni => return unsafe { zip_avx512(src, dst, f) },
        Isa::Avx2 => return unsafe { zip_avx2(src, dst, f) },
        _ => {}
    }
    zip_impl(src, dst, f)
}

#[inline(always)]
fn zip_impl<S: Copy, D: Copy, F: Fn(S, D) -> D>(src: &[S], dst: &mut [D], f: &F) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f(s, *d);
    }
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn zip_avx2<S: Copy, D: Copy, F: Fn(S, D) -> D>(src: &[S], dst: &mut [D], f: &F) {
    zip_impl(src, dst, f)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn zip_avx512<S: Copy, D: Copy, F: Fn(S, D) -> D>(src: &[S], dst: &mut [D], f: &F) {
    zip_impl(src, dst, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu::{set_dispatch, Dispatch, Isa};
    use ndarray::{Array2, ShapeBuilder};

    /// Every build, on a tensor large enough for several threads and a transposed (not
    /// contiguous) one, gives the plain iterator's values. (Other tests running meanwhile see
    /// the forced dispatch too: every path computes the same integers.)
    #[test]
    fn every_build_maps_like_the_iterator() {
        let mut state = 7u64;
        let a = Array2::from_shape_fn((300, 301), |_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 20) as i64 - (1 << 43)
        });
        let f = |v: i64| (v >> 37).clamp(-127, 127) as i8;
        let want = a.mapv(f);
        let t = Array2::from_shape_vec((301, 300).f(), a.iter().copied().collect()).unwrap();
        for isa in Isa::ALL.into_iter().filter(|i| i.detected()) {
            set_dispatch(Dispatch::new(true, isa));
            assert_eq!(map_array(a.view(), f), want, "{isa}");
            assert_eq!(map_array(t.view(), f), t.mapv(f), "{isa}, transposed");
            let mut d: alloc::vec::Vec<i32> = (0..a.len() as i32).collect();
            zip_with(a.as_slice().unwrap(), &mut d, |s, d| d ^ f(s) as i32);
            let plain: alloc::vec::Vec<i32> = (0..a.len() as i32)
                .zip(a.iter())
                .map(|(d, &s)| d ^ f(s) as i32)
                .collect();
            assert_eq!(d, plain, "{isa}");
        }
        set_dispatch(Dispatch::default());
    }
}
