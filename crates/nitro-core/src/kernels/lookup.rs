//! `i8 → i8` maps through a 256-entry table (the activations' forward, `layers::activation`).
//! The portable loop loads one table entry per value; with AVX-512 VBMI a vector of 64 values
//! takes two byte permutes over two 64-entry halves each and a blend on the index's top bit
//! (`kernels::x86::avx512::lookup_vbmi`). VBMI is not implied by the VNNI build (Cascade Lake
//! has VNNI without it), so it is detected on its own, and checked once against the loop before
//! its first use.

use super::map::{PART, PAR_MIN};
use super::par;
use ndarray::{Array, ArrayView, Dimension};

/// `table[x as u8]` of every element of `a`, in a new array of its shape (standard order), in
/// a buffer of the kernels' free list.
pub(crate) fn lookup_array<D: Dimension>(
    a: ArrayView<'_, i8, D>,
    table: &[i8; 256],
) -> Array<i8, D> {
    let a = a.as_standard_layout();
    let src = a.as_slice().expect("standard layout");
    // Every element is written below: a buffer of an earlier step serves, stale values and all.
    let mut out = super::buffers::take_dirty::<i8>(src.len());
    lookup(src, &mut out, table);
    Array::from_shape_vec(a.raw_dim(), out).expect("as many elements as the shape")
}

/// `dst[i] = table[src[i] as u8]` (equal lengths), on all threads for long slices.
pub(crate) fn lookup(src: &[i8], dst: &mut [i8], table: &[i8; 256]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "lookup: source and destination lengths"
    );
    let vbmi = vbmi_usable();
    let part = |i: usize, d: &mut [i8]| {
        let s = &src[i * PART..i * PART + d.len()];
        on_build(s, d, table, vbmi)
    };
    if dst.len() >= PAR_MIN && par::threads() > 1 {
        par::for_each_chunk_mut(dst, PART, part);
    } else {
        on_build(src, dst, table, vbmi);
    }
}

/// An epilogue followed by a table lookup (`table[scale(v)]`), the lookup done on each tile
/// of the epilogue's output while it is in L1 ([`super::nchw::Epilogue::finish`]): a
/// convolution block's scaling and activation in one pass over its output (block/conv.rs).
pub(crate) struct Then<S> {
    scale: S,
    table: [i8; 256],
    /// Whether the VBMI kernel may run (decided once, not per tile).
    vbmi: bool,
}

impl<S> Then<S> {
    pub(crate) fn new(scale: S, table: [i8; 256]) -> Self {
        Then {
            scale,
            table,
            vbmi: vbmi_usable(),
        }
    }
}

impl<S: Fn(i64) -> i8 + Sync> super::nchw::Epilogue<i8> for Then<S> {
    #[inline(always)]
    fn value(&self, v: i64) -> i8 {
        (self.scale)(v)
    }

    #[inline(always)]
    fn finish(&self, tile: &mut [i8]) {
        let mut src = [0i8; 256];
        for part in tile.chunks_mut(256) {
            let src = &mut src[..part.len()];
            src.copy_from_slice(part);
            on_build(src, part, &self.table, self.vbmi);
        }
    }
}

fn on_build(src: &[i8], dst: &mut [i8], table: &[i8; 256], vbmi: bool) {
    #[cfg(nitro_x86_simd)]
    if vbmi {
        // SAFETY: `vbmi_usable` found AVX-512 F, BW and VBMI detected and allowed.
        return unsafe { x86::lookup_vbmi(src, dst, table, lookup_loop) };
    }
    let _ = vbmi;
    lookup_loop(src, dst, table)
}

/// The portable loop (and the reference the vector kernel is checked against).
fn lookup_loop(src: &[i8], dst: &mut [i8], table: &[i8; 256]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = table[usize::from(s as u8)];
    }
}

/// Whether the VBMI kernel may run: the dispatch allows the AVX-512 build, the CPU has VBMI,
/// and the kernel agreed with the loop on its first-use check.
fn vbmi_usable() -> bool {
    #[cfg(nitro_x86_simd)]
    {
        use super::cpu::{loop_build, Isa};
        loop_build() == Isa::Avx512Vnni && x86::detected() && x86::checked()
    }
    #[cfg(not(nitro_x86_simd))]
    false
}

#[cfg(nitro_x86_simd)]
mod x86 {
    use crate::kernels::self_check::SelfCheck;

    pub(super) use crate::kernels::cpu::avx512_vbmi as detected;
    pub(super) use crate::kernels::x86::avx512::lookup_vbmi;

    static CHECK: SelfCheck = SelfCheck::new("the AVX-512 VBMI table lookup");

    /// The first-use check (cached): every byte value, a tail, a table with no pattern.
    /// Callers check [`detected`] first.
    pub(super) fn checked() -> bool {
        CHECK.passed(|| {
            let table: [i8; 256] =
                core::array::from_fn(|i| (i.wrapping_mul(167) ^ 0x5a) as u8 as i8);
            let src: alloc::vec::Vec<i8> =
                (0..256 + 37).map(|i| (i * 89 + 3) as u8 as i8).collect();
            let mut want = alloc::vec![0i8; src.len()];
            let mut got = alloc::vec![1i8; src.len()];
            super::lookup_loop(&src, &mut want, &table);
            // SAFETY: detected (callers check first).
            unsafe { lookup_vbmi(&src, &mut got, &table, super::lookup_loop) };
            got == want
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu::{set_dispatch, Dispatch, Isa};
    use crate::rng::Pcg32;

    /// Random tables and lengths around the vector width and over several tasks, through the
    /// dispatch on the portable and the AVX-512 build: the loop's values.
    #[test]
    fn every_build_looks_up_like_the_loop() {
        let mut r = Pcg32::new(3, 5);
        for len in [0, 1, 63, 64, 65, 200, PAR_MIN + PART / 2 + 77] {
            let table: [i8; 256] = core::array::from_fn(|_| r.next_u32() as i8);
            let src: alloc::vec::Vec<i8> = (0..len).map(|_| r.next_u32() as i8).collect();
            let mut want = alloc::vec![0i8; len];
            lookup_loop(&src, &mut want, &table);
            for isa in [Isa::Portable, Isa::Avx512Vnni]
                .into_iter()
                .filter(|i| i.detected())
            {
                set_dispatch(Dispatch::new(true, isa));
                let mut got = alloc::vec![0x55i8; len];
                lookup(&src, &mut got, &table);
                assert_eq!(got, want, "{isa}, {len} values");
            }
            set_dispatch(Dispatch::DEFAULT);
        }
    }

    /// The vector kernel itself (whatever the dispatch), where the CPU has it: every byte
    /// value at every position of a vector, and tails.
    #[cfg(nitro_x86_simd)]
    #[test]
    fn the_vbmi_kernel_looks_up_like_the_loop() {
        if !x86::detected() {
            std::eprintln!("SKIPPED: AVX-512 VBMI table lookup not tested: this CPU lacks it");
            return;
        }
        let mut r = Pcg32::new(9, 1);
        for len in [64 * 256 + 1, 64 * 256 + 63, 5] {
            let table: [i8; 256] = core::array::from_fn(|_| r.next_u32() as i8);
            let src: alloc::vec::Vec<i8> = (0..len).map(|i| (i + i / 64) as u8 as i8).collect();
            let (mut want, mut got) = (alloc::vec![0i8; len], alloc::vec![0x55i8; len]);
            lookup_loop(&src, &mut want, &table);
            // SAFETY: detected above.
            unsafe { x86::lookup_vbmi(&src, &mut got, &table, lookup_loop) };
            assert_eq!(got, want, "{len} values");
        }
        assert!(x86::checked());
    }
}
