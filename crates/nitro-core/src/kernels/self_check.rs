//! The first-use check of the vector kernels that sit beside a portable loop (the byte
//! transposes, the byte max pools, the table lookup, the SGD fast pass): each runs once
//! against its loop on a small input before it is first used, and a kernel that ever
//! disagrees is never used again — the loop runs instead, after a one-line warning.

use core::sync::atomic::{AtomicU8, Ordering};

/// One kernel's verdict: 0 not yet checked, 1 agreed with its loop, 2 disagreed.
pub(crate) struct SelfCheck {
    verdict: AtomicU8,
    /// The kernel, as the warning names it (`"the AVX-512 VBMI byte transpose"`).
    what: &'static str,
}

impl SelfCheck {
    pub(crate) const fn new(what: &'static str) -> Self {
        SelfCheck {
            verdict: AtomicU8::new(0),
            what,
        }
    }

    /// Whether the kernel agreed with its loop: `check` (the comparison) runs the first time
    /// only; its verdict is kept for the process.
    pub(crate) fn passed(&self, check: impl FnOnce() -> bool) -> bool {
        match self.verdict.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let ok = check();
                self.verdict
                    .store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                #[cfg(feature = "std")]
                if !ok {
                    std::eprintln!(
                        "nitro-core: warning: {} disagreed with the portable loop on its \
                         self-check; using the loop",
                        self.what
                    );
                }
                // Without `std` there is nowhere to warn.
                #[cfg(not(feature = "std"))]
                let _ = self.what;
                ok
            }
        }
    }
}

/// Test values for a self-check from a fixed stream (xorshift64*, independent of the crate's
/// RNG): each call gives `bound`, `−bound` (two in five each, so edges are frequent) or a value
/// in `[−bound, bound]`.
#[cfg_attr(not(nitro_x86_simd), allow(dead_code))]
pub(crate) fn edge_values(seed: u64) -> impl FnMut(i64) -> i64 {
    let mut state = seed;
    move |bound: i64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let v = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as i64;
        match v % 5 {
            0 => bound,
            1 => -bound,
            _ => v % (2 * bound + 1) - bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_runs_once_and_its_verdict_stays() {
        let (good, bad) = (
            SelfCheck::new("a good kernel"),
            SelfCheck::new("a bad kernel"),
        );
        let mut runs = 0;
        for _ in 0..3 {
            assert!(good.passed(|| {
                runs += 1;
                true
            }));
            assert!(!bad.passed(|| false));
        }
        assert_eq!(runs, 1);
        // A later check that would pass does not revive a kernel that failed.
        assert!(!bad.passed(|| true));
    }
}
