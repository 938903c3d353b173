//! Reused buffers: a training step (and an inference batch) packs operands, produces results
//! and keeps layer state — padded inputs, activations, arg-max positions, sparse errors — of
//! the same sizes batch after batch, so the kernels and layers take buffers from a small free
//! list and hand them back once spent, instead of asking the allocator every time. For large
//! sizes the allocator asks the OS, and fresh pages fault in one by one, each zeroed by the
//! kernel (on a two-core KVM guest, ~19,000 faults and ~10 % of a VGG8B step before the layers
//! handed their buffers back; BENCHMARKS.md). With `std` the lists are process-wide behind a
//! mutex; without it every buffer is a fresh allocation.

use alloc::vec::Vec;

/// Buffers kept per element type; beyond that the smallest is released.
#[cfg(feature = "std")]
const KEEP: usize = 32;

/// Smaller buffers are not kept (the allocator serves them cheaply).
#[cfg(feature = "std")]
const MIN_KEPT: usize = 4096;

/// A kept buffer serves requests down to `1/SLACK` of its capacity.
#[cfg(feature = "std")]
const SLACK: usize = 2;

/// Element types with a free list.
pub trait Reusable: Copy + Default + 'static {
    #[cfg(feature = "std")]
    fn list() -> &'static std::sync::Mutex<Vec<Vec<Self>>>;
}

/// One free list per element type, with what uses it; and [`release`], which empties them all.
macro_rules! reusable {
    ($($t:ty: $doc:literal),* $(,)?) => {
        $(
            #[doc = $doc]
            impl Reusable for $t {
                #[cfg(feature = "std")]
                fn list() -> &'static std::sync::Mutex<Vec<Vec<$t>>> {
                    static LIST: std::sync::Mutex<Vec<Vec<$t>>> =
                        std::sync::Mutex::new(Vec::new());
                    &LIST
                }
            }
        )*

        /// Free every kept buffer (the lists keep up to 32 per element type, process-wide, for
        /// the next step of the same sizes: after a large model is done with, hundreds of MB).
        /// Training after it is as exact as before; only its first step allocates again.
        pub fn release() {
            #[cfg(feature = "std")]
            {
                $(
                    let mut free = <$t as Reusable>::list()
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    free.clear();
                    free.shrink_to_fit();
                )*
            }
        }
    };
}

reusable!(
    u32: "Packed operand panels.",
    i64: "Products and gradient sums.",
    i32: "Updated weights, reordered conv weights, the sparse gradient's run sums and errors.",
    i16: "Channels-last convolution inputs.",
    i8: "The tile engine's digits, conv outputs and activations.",
    usize: "Max-pool arg-max positions and sparse errors' indices.",
);

/// A buffer of `len` elements whose contents are unspecified (stale values of an earlier use,
/// or zeros): for callers that write every element before reading any.
pub(crate) fn take_dirty<T: Reusable>(len: usize) -> Vec<T> {
    #[cfg(feature = "std")]
    {
        if let Some(mut v) = reuse::<T>(len) {
            if v.len() >= len {
                v.truncate(len);
            } else {
                v.resize(len, T::default());
            }
            return v;
        }
    }
    alloc::vec![T::default(); len]
}

/// Whether [`take_dirty`] may return stale values: only with `std`, where buffers are kept
/// (without it every buffer is a fresh allocation of default values).
pub(crate) const REUSES: bool = cfg!(feature = "std");

/// A buffer of `len` zeros (a memset of memory already mapped, where a fresh buffer of that
/// size would fault its pages in one by one).
pub(crate) fn take_zeroed<T: Reusable>(len: usize) -> Vec<T> {
    let mut v = take_dirty::<T>(len);
    if REUSES {
        v.fill(T::default());
    }
    v
}

/// An empty buffer with room for `len` elements (to be filled by pushing).
pub(crate) fn take_empty<T: Reusable>(len: usize) -> Vec<T> {
    #[cfg(feature = "std")]
    if let Some(mut v) = reuse::<T>(len) {
        v.clear();
        return v;
    }
    Vec::with_capacity(len)
}

/// A free buffer for `len` elements, if any: of those with capacity for `len` but not more than
/// [`SLACK`] times it, the smallest already holding `len` elements (no fill needed), else the
/// smallest. Why the bounds: a short request served by a long buffer gives it back shortened,
/// and the next long request then fills the difference (a memset of up to megabytes per
/// step); requests below [`MIN_KEPT`] never find a buffer (none is kept) and allocate.
#[cfg(feature = "std")]
fn reuse<T: Reusable>(len: usize) -> Option<Vec<T>> {
    if len < MIN_KEPT {
        return None;
    }
    let mut free = T::list().lock().unwrap_or_else(|e| e.into_inner());
    pick(&free, len).map(|i| free.swap_remove(i))
}

/// Which of the `free` buffers [`reuse`] takes for `len` elements.
#[cfg(feature = "std")]
fn pick<T>(free: &[Vec<T>], len: usize) -> Option<usize> {
    free.iter()
        .enumerate()
        .filter(|(_, v)| (len..=SLACK * len).contains(&v.capacity()))
        .min_by_key(|(_, v)| (v.len() < len, v.capacity()))
        .map(|(i, _)| i)
}

/// Return a buffer for reuse.
pub(crate) fn give<T: Reusable>(v: Vec<T>) {
    #[cfg(feature = "std")]
    {
        if v.capacity() < MIN_KEPT {
            return;
        }
        let mut free = T::list().lock().unwrap_or_else(|e| e.into_inner());
        free.push(v);
        if free.len() > KEEP {
            let smallest = free
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)
                .expect("non-empty");
            free.swap_remove(smallest);
        }
    }
    #[cfg(not(feature = "std"))]
    drop(v);
}

/// Hand a product's result back for reuse once its values have been consumed (optional; a
/// dropped result is simply freed).
pub fn recycle<D: ndarray::Dimension>(c: ndarray::Array<i64, D>) {
    give_array(c);
}

/// Return an array's buffer for reuse (a step's activations and errors, once consumed).
pub(crate) fn give_array<T: Reusable, D: ndarray::Dimension>(a: ndarray::Array<T, D>) {
    give(a.into_raw_vec_and_offset().0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After `release`, a kept buffer is gone: the next request of its size is a fresh one.
    /// (A size no other test asks for; another test may give a buffer meanwhile, but not one
    /// of sevens.)
    #[cfg(feature = "std")]
    #[test]
    fn release_frees_the_kept_buffers() {
        let len = 16_453;
        give(alloc::vec![7u32; len]);
        assert!(
            take_dirty::<u32>(len).iter().all(|&v| v == 7),
            "kept before release"
        );
        give(alloc::vec![7u32; len]);
        release();
        assert!(!take_dirty::<u32>(len).iter().all(|&v| v == 7), "released");
    }

    #[test]
    fn buffers_are_reused_with_the_requested_length() {
        let mut v = take_dirty::<u32>(10_000);
        assert_eq!(v.len(), 10_000);
        v.iter_mut().for_each(|x| *x = 7);
        give(v);
        // Storage comes back (stale contents allowed), shortened or grown as asked.
        let w = take_dirty::<u32>(5_000);
        assert_eq!(w.len(), 5_000);
        assert!(w.capacity() >= 5_000);
        give(w);
        let g = take_dirty::<u32>(20_000);
        assert_eq!(g.len(), 20_000);
        give(g);
    }

    #[test]
    fn a_buffer_is_picked_that_needs_no_fill_and_is_not_much_too_long() {
        let filled = |n: usize| alloc::vec![0u32; n];
        let shortened = |n: usize, len: usize| {
            let mut v = filled(n);
            v.truncate(len);
            v
        };
        // The smallest buffer that already holds the elements, before a smaller one that would
        // have to be filled.
        let free = [shortened(8_000, 100), filled(9_000), filled(8_500)];
        assert_eq!(pick(&free, 8_000), Some(2));
        // Without a filled one, the smallest that fits.
        let free = [shortened(9_000, 10), shortened(8_000, 10)];
        assert_eq!(pick(&free, 7_000), Some(1));
        // Never one more than SLACK times the request, nor one too short.
        let free = [filled(SLACK * 5_000 + 1), filled(4_999)];
        assert_eq!(pick(&free, 5_000), None);
        assert_eq!(pick(&[filled(SLACK * 5_000)], 5_000), Some(0));
        // Requests below MIN_KEPT never take a kept buffer.
        assert!(reuse::<u32>(MIN_KEPT - 1).is_none());
    }
}
