//! A seeded, portable random number generator: PCG32 (XSH-RR, O'Neill 2014), implemented here so
//! that the stream is identical on every platform, thread count and library version.

/// PCG32 with a 64-bit state and a selectable stream. Same `(seed, stream)` → same numbers, forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pcg32 {
    state: u64,
    inc: u64,
}

const MULT: u64 = 6_364_136_223_846_793_005;

impl Pcg32 {
    /// A generator for `seed` on stream `stream` (use one stream per purpose, e.g. per layer).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = Pcg32 {
            state: 0,
            inc: (stream << 1) | 1,
        };
        r.next_u32();
        r.state = r.state.wrapping_add(seed);
        r.next_u32();
        r
    }

    /// The generator's whole state `(state, increment)`, e.g. to store it in a checkpoint.
    pub fn to_parts(&self) -> (u64, u64) {
        (self.state, self.inc)
    }

    /// A generator restored from [`Pcg32::to_parts`]; `None` if `inc` is even (no PCG32 has one).
    pub fn from_parts(state: u64, inc: u64) -> Option<Self> {
        (inc & 1 == 1).then_some(Pcg32 { state, inc })
    }

    /// The next 32 uniformly distributed bits.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        // PCG's LCG step is defined modulo 2^64: wrapping is the algorithm, not an overflow.
        self.state = old.wrapping_mul(MULT).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform integer in `[0, n)` without modulo bias (rejection sampling). `n` must be > 0.
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n; // = (2^32 - n) mod n
        loop {
            let r = self.next_u32();
            if r >= threshold {
                return r % n;
            }
        }
    }

    /// Uniform integer in `[-bound, bound]` (inclusive); `bound` ≤ 2^30.
    #[inline]
    pub fn symmetric(&mut self, bound: u32) -> i32 {
        let span = 2 * bound + 1;
        self.below(span) as i32 - bound as i32
    }

    /// A fair coin.
    #[inline]
    pub fn coin(&mut self) -> bool {
        self.next_u32() >> 31 == 1
    }

    /// Fisher–Yates shuffle of `items`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_continues_the_stream() {
        let mut a = Pcg32::new(7, 3);
        a.next_u32();
        let (state, inc) = a.to_parts();
        let mut b = Pcg32::from_parts(state, inc).unwrap();
        assert_eq!(a.next_u32(), b.next_u32());
        assert!(Pcg32::from_parts(state, inc & !1).is_none());
    }

    #[test]
    fn reference_stream_is_stable() {
        // PCG32 reference (pcg32-global demo): seed 42, stream 54.
        let mut r = Pcg32::new(42, 54);
        let got: [u32; 6] = core::array::from_fn(|_| r.next_u32());
        assert_eq!(
            got,
            [0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e]
        );
    }

    #[test]
    fn below_and_symmetric_stay_in_range_and_cover_it() {
        let mut r = Pcg32::new(1, 2);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = r.symmetric(3);
            assert!((-3..=3).contains(&v));
            seen[(v + 3) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn shuffle_is_a_permutation_and_seeded() {
        let mut a: alloc::vec::Vec<u32> = (0..100).collect();
        let mut b = a.clone();
        Pcg32::new(7, 0).shuffle(&mut a);
        Pcg32::new(7, 0).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<alloc::vec::Vec<_>>());
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<alloc::vec::Vec<_>>());
    }
}
