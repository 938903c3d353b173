//! Threads, in one place: every parallel loop of the crate goes through these helpers, which run
//! on rayon's current pool with feature `parallel` and sequentially without it. Work is always
//! split into disjoint pieces whose results do not depend on which thread computes them, so any
//! thread count gives the same bits.

use alloc::vec::Vec;

/// Multiply-adds below which a product stays on the calling thread (waking the pool costs more).
/// MLP2's largest products (64×784×200, 10 M) run on both threads above it; with the step
/// inside the pool ([`on_pool`]) 2²¹ was as fast as 2¹⁹ and faster than 2²⁴ (BENCHMARKS.md).
pub(crate) const PAR_MIN_MACS: usize = 1 << 21;

/// Threads of the current pool (1 without feature `parallel`).
pub fn threads() -> usize {
    #[cfg(feature = "parallel")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "parallel"))]
    {
        1
    }
}

/// Units (rows, panels) per task for `units` units of `macs` multiply-adds in all: all of them
/// in one task below [`PAR_MIN_MACS`], else about four tasks per thread, at least one unit each.
pub(crate) fn rows_per_task(units: usize, macs: usize) -> usize {
    if macs < PAR_MIN_MACS || threads() == 1 {
        units.max(1)
    } else {
        units.div_ceil(4 * threads()).max(1)
    }
}

/// `f(i, chunk)` for every consecutive chunk of `len` elements (the last may be shorter), on all
/// threads when there is more than one chunk.
pub fn for_each_chunk_mut<T, F>(data: &mut [T], len: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    let len = len.max(1);
    #[cfg(feature = "parallel")]
    if data.len() > len {
        use rayon::prelude::*;
        data.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    data.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
}

/// As [`for_each_chunk_mut`] (on all threads only when `parallel`), stopping at the first error
/// (which error is reported when several chunks fail may depend on timing; the caller discards
/// the output on any error).
pub fn try_for_each_chunk_mut<T, E, F>(
    data: &mut [T],
    len: usize,
    parallel: bool,
    f: F,
) -> Result<(), E>
where
    T: Send,
    E: Send,
    F: Fn(usize, &mut [T]) -> Result<(), E> + Sync + Send,
{
    let len = len.max(1);
    #[cfg(feature = "parallel")]
    if parallel {
        use rayon::prelude::*;
        return data
            .par_chunks_mut(len)
            .enumerate()
            .try_for_each(|(i, c)| f(i, c));
    }
    let _ = parallel;
    for (i, c) in data.chunks_mut(len).enumerate() {
        f(i, c)?;
    }
    Ok(())
}

/// As [`try_for_each_chunk_mut`] over two slices cut alike (chunk `i` of each, `la` and `lb`
/// elements).
pub fn try_for_each_chunk_pair_mut<A, B, E, F>(
    a: &mut [A],
    la: usize,
    b: &mut [B],
    lb: usize,
    parallel: bool,
    f: F,
) -> Result<(), E>
where
    A: Send,
    B: Send,
    E: Send,
    F: Fn(usize, &mut [A], &mut [B]) -> Result<(), E> + Sync + Send,
{
    let (la, lb) = (la.max(1), lb.max(1));
    #[cfg(feature = "parallel")]
    if parallel {
        use rayon::prelude::*;
        return a
            .par_chunks_mut(la)
            .zip(b.par_chunks_mut(lb))
            .enumerate()
            .try_for_each(|(i, (x, y))| f(i, x, y));
    }
    let _ = parallel;
    for (i, (x, y)) in a.chunks_mut(la).zip(b.chunks_mut(lb)).enumerate() {
        f(i, x, y)?;
    }
    Ok(())
}

/// `f` applied to every item, on all threads; results in item order.
pub fn map_mut<T, R, F>(items: &mut [T], f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(&mut T) -> R + Sync + Send,
{
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        items.par_iter_mut().map(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        items.iter_mut().map(f).collect()
    }
}

/// `f` on a thread of rayon's current pool (the global one outside any), returning its result:
/// at once when the caller already is one. For the entry points of a step: called from
/// another thread (a program's main thread, Python's), every parallel loop inside `f` would
/// otherwise be handed to the pool and waited for on its own, a thread wake-up each (tens of
/// them per step); from inside the pool they are forked and joined where they run. While `f`
/// runs, the pool's other workers stay awake, polling for its work (`kernels::awake`); an
/// `on_pool` inside another adds nothing.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "parallel")]
    {
        super::awake::run(f)
    }
    #[cfg(not(feature = "parallel"))]
    {
        f()
    }
}

/// `f` on a thread of rayon's current pool (at once when the caller already is one), without
/// keeping the pool awake: for a loop of steps (a training run called from a program's or
/// Python's own thread), so that each step's [`on_pool`] starts where it is instead of being
/// handed to the pool and waited for (two thread wake-ups per step).
pub fn inside_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "parallel")]
    {
        rayon::scope(|_| f())
    }
    #[cfg(not(feature = "parallel"))]
    {
        f()
    }
}

/// Both closures, possibly at the same time.
pub fn join<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    #[cfg(feature = "parallel")]
    {
        rayon::join(a, b)
    }
    #[cfg(not(feature = "parallel"))]
    {
        (a(), b())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_once_in_order() {
        let mut v = alloc::vec![0usize; 1000];
        for_each_chunk_mut(&mut v, 7, |i, c| c.iter_mut().for_each(|x| *x += i + 1));
        assert!(v.iter().enumerate().all(|(j, &x)| x == j / 7 + 1));
        let mut items: Vec<usize> = (0..50).collect();
        assert_eq!(
            map_mut(&mut items, |x| *x * 2),
            (0..50).map(|x| x * 2).collect::<Vec<_>>()
        );
        assert_eq!(rows_per_task(10, 0), 10);
        let (mut a, mut b) = (alloc::vec![0u8; 9], alloc::vec![0u16; 6]);
        let r: Result<(), ()> =
            try_for_each_chunk_pair_mut(&mut a, 3, &mut b, 2, true, |i, x, y| {
                x.fill(i as u8);
                y.fill(i as u16);
                Ok(())
            });
        assert!(r.is_ok());
        assert_eq!(a, [0, 0, 0, 1, 1, 1, 2, 2, 2]);
        assert_eq!(b, [0, 0, 1, 1, 2, 2]);
        assert_eq!(join(|| 1, || 2), (1, 2));
        // Called from outside the pool (the test's own thread), `f` runs on one of its threads.
        #[cfg(feature = "parallel")]
        {
            assert!(rayon::current_thread_index().is_none());
            assert!(on_pool(|| rayon::current_thread_index().is_some()));
        }
        assert_eq!(on_pool(|| 7), 7);
    }
}
