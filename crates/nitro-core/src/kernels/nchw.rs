//! The convolution epilogue: a product `C` (`(N·Ho·Wo) × F`, row `(m, i, j)` holding every
//! filter's output at that position) written as `N × F × Ho·Wo` with `epilogue(c + bias[f])`
//! applied to every entry (bias, scaling, the transpose back to NCHW) — for a whole C
//! ([`rows_to_nchw`]) or a range of one image's positions (what the tile engine's bands use).

use alloc::vec::Vec;

/// What the epilogue makes of the entries of C: [`Epilogue::value`] of each (`c + bias[f]`),
/// then [`Epilogue::finish`] of each tile of values (at most sixteen positions × the filters)
/// before it is written out — where a table lookup follows the scaling (the activation after a
/// convolution block's scaling, `kernels::lookup::Then`), on the tile while it is in L1 instead
/// of over the whole tensor afterwards. Any `Fn(i64) -> O` is an epilogue with nothing to finish.
pub trait Epilogue<O>: Sync {
    /// The output of one entry.
    fn value(&self, v: i64) -> O;
    /// Applied to every tile of values before it is written.
    #[inline(always)]
    fn finish(&self, _tile: &mut [O]) {}
}

impl<O, F: Fn(i64) -> O + Sync> Epilogue<O> for F {
    #[inline(always)]
    fn value(&self, v: i64) -> O {
        self(v)
    }
}

/// An element type of a convolution's output: how a tile of `16 × F` epilogue values
/// (position-major) is written out filter-major.
pub trait NchwLane: Copy + Default + Send + Sync + super::buffers::Reusable {
    /// Write `tile` (`(s1 − s0) × f`, row `sp` holding every filter's value at position
    /// `s0 + sp`) into `o` (`f × hw`) at positions `s0..s1` of every filter row.
    #[inline(always)]
    fn write_tile(tile: &[Self], f: usize, o: &mut [Self], hw: usize, (s0, s1): (usize, usize)) {
        write_tile_plain(tile, f, 0..f, o, hw, s0, s1);
    }
}

impl NchwLane for i64 {}

impl NchwLane for i8 {
    /// A whole tile of 16 positions × 16 filters (the tile engine's) by the AVX-512 VBMI
    /// transpose where the CPU has it (`x86::avx512::transpose_tile16`). Otherwise blocks of
    /// 8 positions × 8 filters as one 8×8 byte transpose in `u64` words (three rounds of
    /// masked swaps), so every write is 8 contiguous bytes; what is left over (fewer than 8 of
    /// either) the plain loop writes.
    #[inline(always)]
    fn write_tile(tile: &[i8], f: usize, o: &mut [i8], hw: usize, (s0, s1): (usize, usize)) {
        #[cfg(nitro_x86_simd)]
        if f == 16 && s1 - s0 == 16 && vbmi::usable() {
            let t: &[i8; 256] = tile[..256].try_into().expect("a 16×16 tile");
            // SAFETY: `usable` found AVX-512 F, BW, VL and VBMI detected and allowed; the 16
            // filter rows from `s0` are inside `o` (`o` holds the image's 16·hw outputs of
            // them, and s0 + 16 ≤ hw).
            unsafe { crate::kernels::x86::avx512::transpose_tile16(t, &mut o[s0..], hw) };
            return;
        }
        let (f8, p8) = (f / 8 * 8, (s1 - s0) / 8 * 8);
        for q0 in (0..p8).step_by(8) {
            for f0 in (0..f8).step_by(8) {
                let mut rows = [0u64; 8];
                for (q, r) in rows.iter_mut().enumerate() {
                    let at = (q0 + q) * f + f0;
                    let bytes: [i8; 8] = tile[at..at + 8].try_into().expect("8 values");
                    *r = u64::from_le_bytes(bytes.map(|b| b as u8));
                }
                for (fi, word) in transpose_8x8(rows).into_iter().enumerate() {
                    let at = (f0 + fi) * hw + s0 + q0;
                    let bytes = word.to_le_bytes().map(|b| b as i8);
                    o[at..at + 8].copy_from_slice(&bytes);
                }
            }
            write_tile_plain(&tile[q0 * f..], f, f8..f, o, hw, s0 + q0, s0 + q0 + 8);
        }
        write_tile_plain(&tile[p8 * f..], f, 0..f, o, hw, s0 + p8, s1);
    }
}

/// The epilogue's tile transpose on AVX-512 VBMI, with its first-use check against the
/// `u64` transposes.
#[cfg(nitro_x86_simd)]
mod vbmi {
    use crate::kernels::cpu::{avx512_vbmi, loop_build, Isa};
    use crate::kernels::self_check::SelfCheck;

    static CHECK: SelfCheck = SelfCheck::new("the AVX-512 VBMI epilogue transpose");

    /// Whether `transpose_tile16` may run: the dispatch allows the AVX-512 build, the CPU has
    /// VBMI (and VL), and the kernel agreed with the portable transposes on a tile of every
    /// byte value written into rows of several strides.
    pub(super) fn usable() -> bool {
        loop_build() == Isa::Avx512Vnni && avx512_vbmi() && CHECK.passed(check)
    }

    /// The kernel against the plain transposed write, into rows of three strides.
    fn check() -> bool {
        let tile: [i8; 256] = core::array::from_fn(|i| (i * 113 + 9) as u8 as i8);
        [16usize, 17, 49].into_iter().all(|hw| {
            let mut want = alloc::vec![0i8; 16 * hw];
            super::write_tile_plain(&tile, 16, 0..16, &mut want, hw, 0, 16);
            let mut got = alloc::vec![0i8; 16 * hw];
            // SAFETY: VBMI (and F, BW, VL) detected before; 16 rows of `hw ≥ 16` bytes.
            unsafe { crate::kernels::x86::avx512::transpose_tile16(&tile, &mut got, hw) };
            got == want
        })
    }
}

/// The plain transposed write of [`NchwLane::write_tile`] for the filters `filters` (`tile`
/// starts at position `s0`).
#[inline(always)]
fn write_tile_plain<O: Copy>(
    tile: &[O],
    f: usize,
    filters: core::ops::Range<usize>,
    o: &mut [O],
    hw: usize,
    s0: usize,
    s1: usize,
) {
    for fi in filters {
        let orow = &mut o[fi * hw + s0..fi * hw + s1];
        for (sp, ov) in orow.iter_mut().enumerate() {
            *ov = tile[sp * f + fi];
        }
    }
}

/// The transpose of an 8×8 byte matrix held as 8 little-endian words (row `i` in word `i`,
/// column `j` in its byte `j`): swap the off-diagonal 1×1, then 2×2, then 4×4 blocks.
#[inline(always)]
fn transpose_8x8(mut x: [u64; 8]) -> [u64; 8] {
    for (shift, mask, pairs) in [
        (
            8,
            0x00ff_00ff_00ff_00ffu64,
            [(0, 1), (2, 3), (4, 5), (6, 7)],
        ),
        (16, 0x0000_ffff_0000_ffff, [(0, 2), (1, 3), (4, 6), (5, 7)]),
        (32, 0x0000_0000_ffff_ffff, [(0, 4), (1, 5), (2, 6), (3, 7)]),
    ] {
        for (i, j) in pairs {
            let t = ((x[i] >> shift) ^ x[j]) & mask;
            x[j] ^= t;
            x[i] ^= t << shift;
        }
    }
    x
}

/// A convolution's product `z` (`(N·Ho·Wo) × F`, row `(m, i, j)` holding every filter's output
/// at that position) as `N × F × Ho·Wo`, with `epilogue(z + bias[f])` applied to every entry:
/// per image, 16 positions at a time, the epilogue over whole (contiguous) rows of `z` into a
/// small buffer, then its transposed write ([`NchwLane`]). The plain loops are compiled for the
/// widest vectors the dispatch allows (the same safe code: the same values).
pub fn rows_to_nchw<O, E>(
    z: &[i64],
    (n, f, hw): (usize, usize, usize),
    bias: &[i64],
    epilogue: E,
) -> Vec<O>
where
    O: NchwLane,
    E: Epilogue<O>,
{
    let mut out = super::buffers::take_dirty::<O>(n * f * hw);
    let image = |m: usize, om: &mut [O]| {
        let zm = &z[m * hw * f..(m + 1) * hw * f];
        image_positions(zm, om, (f, hw), bias, &epilogue, (0, hw));
    };
    crate::kernels::par::for_each_chunk_mut(&mut out, (f * hw).max(1), image);
    out
}

/// Positions `s0..s1` of one image of [`rows_to_nchw`]: `z` holds their rows (`(s1 − s0) × F`),
/// `o` is the image's whole `F × Ho·Wo` output, of which those positions of every filter row
/// are written. On the widest build the dispatch allows (the same safe code, the same values).
pub(crate) fn image_positions<O, E>(
    z: &[i64],
    o: &mut [O],
    (f, hw): (usize, usize),
    bias: &[i64],
    epilogue: &E,
    range: (usize, usize),
) where
    O: NchwLane,
    E: Epilogue<O>,
{
    #[cfg(nitro_x86_simd)]
    {
        use crate::kernels::cpu::{loop_build, Isa};
        match loop_build() {
            // SAFETY (both): the instruction set is allowed and detected.
            Isa::Avx512Vnni => {
                return unsafe { image_avx512(z, o, (f, hw), bias, epilogue, range) }
            }
            Isa::Avx2 => return unsafe { image_avx2(z, o, (f, hw), bias, epilogue, range) },
            _ => {}
        }
    }
    image_impl(z, o, (f, hw), bias, epilogue, range)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn image_avx512<O: NchwLane, E: Epilogue<O>>(
    z: &[i64],
    o: &mut [O],
    shape: (usize, usize),
    bias: &[i64],
    e: &E,
    range: (usize, usize),
) {
    image_impl(z, o, shape, bias, e, range)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn image_avx2<O: NchwLane, E: Epilogue<O>>(
    z: &[i64],
    o: &mut [O],
    shape: (usize, usize),
    bias: &[i64],
    e: &E,
    range: (usize, usize),
) {
    image_impl(z, o, shape, bias, e, range)
}

/// [`image_positions`]' loop: 16 positions at a time, the epilogue over whole rows of `z` into
/// a small buffer, then its transposed write.
#[inline(always)]
fn image_impl<O: NchwLane, E: Epilogue<O>>(
    z: &[i64],
    o: &mut [O],
    (f, hw): (usize, usize),
    bias: &[i64],
    e: &E,
    (p0, p1): (usize, usize),
) {
    // A 16 × f tile: on the stack for the tile engine's blocks of 16 filters.
    let (mut stack, mut heap) = ([O::default(); 16 * 16], Vec::new());
    let tile: &mut [O] = if f <= 16 {
        &mut stack[..16 * f]
    } else {
        heap.resize(16 * f, O::default());
        &mut heap
    };
    for s0 in (p0..p1).step_by(16) {
        let s1 = (s0 + 16).min(p1);
        for (trow, zrow) in tile
            .chunks_exact_mut(f)
            .zip(z[(s0 - p0) * f..(s1 - p0) * f].chunks_exact(f))
        {
            for ((t, &zv), &b) in trow.iter_mut().zip(zrow).zip(bias) {
                *t = e.value(zv + b);
            }
        }
        e.finish(&mut tile[..(s1 - s0) * f]);
        O::write_tile(tile, f, o, hw, (s0, s1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The transposed epilogue writes `epilogue(z[m, s, f] + bias[f])` at `out[m, f, s]`,
        /// for both lane types (the `i8` one by 8×8 byte blocks) and sizes on and off the
        /// block edges.
        #[test]
        fn rows_to_nchw_is_the_transposed_epilogue(
            n in 1usize..3, f in 1usize..40, hw in 1usize..50, seed in proptest::prelude::any::<u64>(),
        ) {
            let mut r = crate::rng::Pcg32::new(seed, 3);
            let z: Vec<i64> = (0..n * hw * f).map(|_| i64::from(r.next_u32() as i32) >> 8).collect();
            let bias: Vec<i64> = (0..f).map(|_| i64::from(r.next_u32() % 2001) - 1000).collect();
            let narrow = |v: i64| (v >> 16).clamp(-127, 127) as i8;
            let wide = rows_to_nchw(&z, (n, f, hw), &bias, |v| v);
            let bytes = rows_to_nchw(&z, (n, f, hw), &bias, narrow);
            for m in 0..n {
                for fi in 0..f {
                    for sp in 0..hw {
                        let want = z[(m * hw + sp) * f + fi] + bias[fi];
                        let at = (m * f + fi) * hw + sp;
                        proptest::prop_assert_eq!(wide[at], want);
                        proptest::prop_assert_eq!(bytes[at], narrow(want));
                    }
                }
            }
        }
    }

    #[test]
    fn the_byte_transpose_moves_row_i_column_j_to_row_j_column_i() {
        let rows: [u64; 8] = core::array::from_fn(|i| {
            u64::from_le_bytes(core::array::from_fn(|j| (i * 8 + j) as u8))
        });
        let t = transpose_8x8(rows);
        for (j, word) in t.iter().enumerate() {
            for (i, &b) in word.to_le_bytes().iter().enumerate() {
                assert_eq!(b as usize, i * 8 + j);
            }
        }
    }

    /// The VBMI tile transpose itself (its first-use check would hide a wrong one behind the
    /// portable transposes): random tiles into rows of strides 16 to 70, nothing else
    /// written; and the epilogue takes it where the CPU has VBMI (a visible skip elsewhere).
    #[cfg(nitro_x86_simd)]
    #[test]
    fn the_vbmi_tile_transpose_moves_each_byte_to_its_filter_row() {
        if !crate::kernels::cpu::avx512_vbmi() {
            std::eprintln!(
                "SKIPPED: AVX-512 VBMI epilogue transpose not tested: no VBMI or VL here"
            );
            return;
        }
        assert!(vbmi::usable());
        let mut r = crate::rng::Pcg32::new(17, 6);
        for hw in [16usize, 17, 31, 49, 70] {
            let tile: [i8; 256] = core::array::from_fn(|_| r.next_u32() as i8);
            let mut got = alloc::vec![0x33i8; 16 * hw];
            // SAFETY: VBMI (and F, BW, VL) detected above; 16 rows of `hw ≥ 16` bytes.
            unsafe { crate::kernels::x86::avx512::transpose_tile16(&tile, &mut got, hw) };
            for (i, &v) in got.iter().enumerate() {
                let (fi, sp) = (i / hw, i % hw);
                let want = if sp < 16 { tile[sp * 16 + fi] } else { 0x33 };
                assert_eq!(v, want, "stride {hw}: byte {i}");
            }
        }
    }
}
