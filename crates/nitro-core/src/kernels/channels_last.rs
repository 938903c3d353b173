//! A zero-padded convolution input stored channels-last (`N × Hp × Wp × C`): the layout in which
//! a patch row is `k` contiguous runs of `k·C` values ([`super::im2col::PatchesHwc`]) and a
//! sparse gradient entry's patch is gathered the same way ([`super::sparse`]).
//!
//! A convolution builds it once per forward, straight from its NCHW input — widening, padding
//! and transposing in one pass — and keeps it for the backward, so the sparse weight gradient
//! reads the very same copy.

use super::{buffers, par};
use crate::error::{Error, Result};
use crate::kernels::Int;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array4, ArrayView4};

/// Channels per tile of the transpose: a tile's output run per position is 64 bytes, one
/// cache line.
const TILE_C: usize = 32;
/// Positions per tile: the tile (`TILE_C × TILE_P` values, 1 KiB) stays in L1, and its writes
/// touch only `TILE_P` output lines — few enough that lines a power-of-two stride apart (`C` of
/// 128, 256, 512) never outnumber a cache set's ways, which a longer run of positions did.
const TILE_P: usize = 16;

/// Words (`i16`) per 64 bytes. The values start on a 64-byte boundary, so where `C` is a
/// multiple of 32 every patch run the gradient kernels load a 512-bit vector from starts on a
/// cache line, and no load is split across two lines (a large buffer from the allocator starts
/// 16 bytes past a page boundary).
const ALIGN: usize = 32;

/// A padded input, channels-last, with the largest magnitude of its values.
#[derive(Clone, Debug)]
pub struct ChannelsLast {
    /// The values start at `data[lead]`, the first 64-byte boundary of the buffer (see
    /// [`ALIGN`]).
    data: Vec<i16>,
    lead: usize,
    /// `(N, C, Hp, Wp)`: the NCHW shape of the padded tensor it stores.
    dim: (usize, usize, usize, usize),
    bound: u64,
}

impl ChannelsLast {
    /// `x` (`N×C×H×W`, any layout) zero-padded by `p` on both spatial axes, as `i16`,
    /// channels-last. A shape error when the padded size overflows.
    pub fn padded<T>(x: ArrayView4<'_, T>, p: usize) -> Result<Self>
    where
        T: Int,
        i16: From<T>,
    {
        let (n, c, h, w) = x.dim();
        let padded = |v: usize| p.checked_mul(2).and_then(|p2| p2.checked_add(v));
        let (hp, wp) = padded(h)
            .zip(padded(w))
            .ok_or_else(|| Error::shape(format!("padding {p} is too large for a {h}×{w} input")))?;
        let per_image = hp
            .checked_mul(wp)
            .and_then(|v| v.checked_mul(c))
            .ok_or_else(|| Error::shape(format!("a padded {c}×{hp}×{wp} image is too large")))?;
        let len = per_image
            .checked_mul(n)
            .ok_or_else(|| Error::shape(format!("{n} padded images are too large")))?;
        let xs = x.as_standard_layout();
        let src = xs.as_slice().expect("standard layout");
        // A buffer of an earlier step (stale values): each image is zeroed where padded below.
        let mut data = buffers::take_dirty::<i16>(len + ALIGN - 1);
        let lead = data.as_ptr().align_offset(ALIGN * 2).min(ALIGN - 1);
        // Per image, max|x| (padding adds only zeros), found by the image's own task.
        let mut bounds = alloc::vec![0u64; n];
        if per_image > 0 {
            let per_input = c * h * w;
            let values = &mut data[lead..lead + len];
            let image = |m: usize, o: &mut [i16], b: &mut [u64]| {
                if p > 0 && buffers::REUSES {
                    zero_padding(o, (c, h, w), wp, p);
                }
                let s = &src[m * per_input..(m + 1) * per_input];
                b[0] = max_abs(s);
                transpose_image(s, o, (c, h, w), wp, p);
                Ok::<(), core::convert::Infallible>(())
            };
            let Ok(()) =
                par::try_for_each_chunk_pair_mut(values, per_image, &mut bounds, 1, true, image);
        }
        let bound = bounds.into_iter().max().unwrap_or(0);
        data.truncate(lead + len);
        Ok(ChannelsLast {
            data,
            lead,
            dim: (n, c, hp, wp),
            bound,
        })
    }

    /// `(N, C, Hp, Wp)`, the NCHW shape of the padded tensor.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        self.dim
    }

    /// `max |x|`.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// The values, `N × Hp × Wp × C` row-major.
    pub fn values(&self) -> &[i16] {
        &self.data[self.lead..]
    }

    /// The padded tensor in NCHW order (for the paths that read it that way).
    pub fn to_nchw(&self) -> Array4<i16> {
        let (n, c, hp, wp) = self.dim;
        let hwc = ArrayView4::from_shape((n, hp, wp, c), self.values()).expect("sizes");
        hwc.permuted_axes([0, 3, 1, 2])
            .as_standard_layout()
            .into_owned()
    }
}

impl Drop for ChannelsLast {
    /// The next forward's input of the same size takes the buffer (kernels/buffers.rs).
    fn drop(&mut self) {
        buffers::give(core::mem::take(&mut self.data));
    }
}

/// `max |v|` of an image's values (by the `i16` extremes: a loop that vectorises).
fn max_abs<T: Copy>(s: &[T]) -> u64
where
    i16: From<T>,
{
    let (lo, hi) = s.iter().fold((0i16, 0i16), |(lo, hi), &v| {
        let v = i16::from(v);
        (lo.min(v), hi.max(v))
    });
    u64::from(
        i32::from(lo)
            .unsigned_abs()
            .max(i32::from(hi).unsigned_abs()),
    )
}

/// The padding of one image's output `o` (`Hp × Wp × C`) set to zero: the `p` rows above and
/// below the input's and the `p` positions at both ends of each input row (the interior is
/// all written by the transpose).
fn zero_padding(o: &mut [i16], (c, h, _): (usize, usize, usize), wp: usize, p: usize) {
    let row = wp * c;
    o[..p * row].fill(0);
    o[(h + p) * row..].fill(0);
    for i in p..h + p {
        let r = &mut o[i * row..(i + 1) * row];
        r[..p * c].fill(0);
        r[(wp - p) * c..].fill(0);
    }
}

/// One image: `s` is its `C × H × W` input, `o` its `Hp × Wp × C` output, zero where padded;
/// input row `i` lands on output row `i + p`, shifted right by `p`. Bytes whose channels come
/// in sixteens go through the AVX-512 VBMI kernel where the processor has it
/// ([`bytes::transpose`]); otherwise tiles of [`TILE_C`] channels × [`TILE_P`] positions:
/// contiguous reads into the tile, contiguous 64-byte runs out of it.
fn transpose_image<T>(s: &[T], o: &mut [i16], shape: (usize, usize, usize), wp: usize, p: usize)
where
    T: Int,
    i16: From<T>,
{
    #[cfg(nitro_x86_simd)]
    if let Some(b) = T::bytes(s) {
        if bytes::usable(shape.0) {
            // SAFETY: `usable` found AVX-512 F, BW, VL and VBMI detected and allowed.
            return unsafe { bytes::transpose(b, o, shape, wp, p) };
        }
    }
    transpose_tiles(s, o, shape, wp, p)
}

/// [`transpose_image`]'s portable loop.
fn transpose_tiles<T>(s: &[T], o: &mut [i16], (c, h, w): (usize, usize, usize), wp: usize, p: usize)
where
    T: Copy,
    i16: From<T>,
{
    let hw = h * w;
    let mut tile = [0i16; TILE_C * TILE_P];
    for i in 0..h {
        let start = ((i + p) * wp + p) * c;
        let orow = &mut o[start..start + w * c];
        for c0 in (0..c).step_by(TILE_C) {
            let cb = TILE_C.min(c - c0);
            for j0 in (0..w).step_by(TILE_P) {
                let pb = TILE_P.min(w - j0);
                for t in 0..cb {
                    let from = (c0 + t) * hw + i * w + j0;
                    for (q, &v) in s[from..from + pb].iter().enumerate() {
                        tile[q * TILE_C + t] = i16::from(v);
                    }
                }
                for q in 0..pb {
                    let at = (j0 + q) * c + c0;
                    orow[at..at + cb].copy_from_slice(&tile[q * TILE_C..q * TILE_C + cb]);
                }
            }
        }
    }
}

/// The byte transpose on AVX-512 VBMI (`x86::avx512::transpose_bytes16`), with its first-use
/// check against the portable loop.
#[cfg(nitro_x86_simd)]
mod bytes {
    use crate::kernels::cpu::{avx512_vbmi, loop_build, Isa};
    use crate::kernels::self_check::SelfCheck;
    use crate::kernels::x86::avx512::{transpose_bytes16, TRANSPOSE_CHANNELS};

    static CHECK: SelfCheck = SelfCheck::new("the AVX-512 VBMI byte transpose");

    /// Whether the kernel may run for `c` channels: a multiple of sixteen, the dispatch allows
    /// the AVX-512 build, the CPU has VBMI (and VL), and the kernel agreed with the loop on
    /// its first-use check.
    pub(super) fn usable(c: usize) -> bool {
        c % TRANSPOSE_CHANNELS == 0
            && c > 0
            && loop_build() == Isa::Avx512Vnni
            && avx512_vbmi()
            && checked()
    }

    /// The first-use check (cached): three shapes — positions on and off the kernel's
    /// sixteen, paddings 0 to 2, every byte value — against the portable loop.
    fn checked() -> bool {
        CHECK.passed(|| {
            [((32, 3, 21), 1), ((16, 2, 7), 0), ((48, 1, 16), 2)]
                .into_iter()
                .all(|((c, h, w), p)| {
                    let s: alloc::vec::Vec<i8> =
                        (0..c * h * w).map(|i| (i * 151 + 7) as u8 as i8).collect();
                    let wp = w + 2 * p;
                    let len = (h + 2 * p) * wp * c;
                    let mut want = alloc::vec![0i16; len];
                    let mut got = alloc::vec![0i16; len];
                    super::transpose_tiles(&s, &mut want, (c, h, w), wp, p);
                    // SAFETY: `usable` checked the instruction sets before calling here.
                    unsafe { transpose(&s, &mut got, (c, h, w), wp, p) };
                    got == want
                })
        })
    }

    /// [`super::transpose_tiles`] for bytes with `C` a multiple of sixteen: per input row,
    /// blocks of sixteen channels × sixteen positions.
    ///
    /// # Safety
    /// AVX-512 F, BW, VL and VBMI must be available.
    pub(super) unsafe fn transpose(
        s: &[i8],
        o: &mut [i16],
        (c, h, w): (usize, usize, usize),
        wp: usize,
        p: usize,
    ) {
        let hw = h * w;
        for i in 0..h {
            let start = ((i + p) * wp + p) * c;
            let orow = &mut o[start..start + w * c];
            for c0 in (0..c).step_by(TRANSPOSE_CHANNELS) {
                for j0 in (0..w).step_by(16) {
                    let pb = 16.min(w - j0);
                    let from = c0 * hw + i * w + j0;
                    let src = &s[from..from + (TRANSPOSE_CHANNELS - 1) * hw + pb];
                    let dst = &mut orow[j0 * c + c0..(j0 + pb - 1) * c + c0 + TRANSPOSE_CHANNELS];
                    // SAFETY: the caller's instruction sets; the slices hold what it reads
                    // and writes (sliced to exactly that above).
                    unsafe { transpose_bytes16(src, hw, pb, dst, c) };
                }
            }
        }
    }
}

/// `x` zero-padded by `p`, the NCHW reference the tests compare against.
#[cfg(test)]
fn padded_nchw(x: ArrayView4<'_, i8>, p: usize) -> Array4<i16> {
    use ndarray::s;
    let (n, c, h, w) = x.dim();
    let mut out = Array4::<i16>::zeros((n, c, h + 2 * p, w + 2 * p));
    out.slice_mut(s![.., .., p..p + h, p..p + w])
        .zip_mut_with(&x, |o, &v| *o = i16::from(v));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The bound is the largest magnitude of every image, whichever image holds it (each
    /// image's task finds its own), with and without padding.
    #[test]
    fn the_bound_is_the_largest_of_every_image() {
        for (at, extreme) in [(0, -300i16), (2, -300), (3, 301), (1, i16::MIN)] {
            let mut x = Array4::from_shape_fn((4, 3, 5, 6), |(m, c, i, j)| {
                ((m + c + i + j) % 11) as i16 - 5
            });
            x[[at, 1, 2, 3]] = extreme;
            for p in [0, 2] {
                let got = ChannelsLast::padded(x.view(), p).unwrap();
                assert_eq!(got.bound(), u64::from(extreme.unsigned_abs()), "{at} {p}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every value lands where the NCHW index says, padding is zero, the bound is max|x|,
        /// the values start on a 64-byte boundary, for channel and width counts on and off the
        /// tile sizes.
        #[test]
        fn matches_the_padded_nchw_tensor(
            n in 1usize..3, c in 1usize..70, h in 1usize..6, w in 1usize..40, p in 0usize..3,
            seed in any::<u64>(),
        ) {
            let mut r = crate::rng::Pcg32::new(seed, 7);
            let x = Array4::from_shape_fn((n, c, h, w), |_| (r.next_u32() % 256) as u8 as i8);
            let want = padded_nchw(x.view(), p);
            let got = ChannelsLast::padded(x.view(), p).unwrap();
            prop_assert_eq!(got.dim(), want.dim());
            prop_assert_eq!(got.to_nchw(), want.clone());
            let (_, _, hp, wp) = want.dim();
            for ((m, ch, i, j), &v) in want.indexed_iter() {
                prop_assert_eq!(got.values()[((m * hp + i) * wp + j) * c + ch], v);
            }
            let max = x.iter().map(|&v| i32::from(v).unsigned_abs()).max().unwrap();
            prop_assert_eq!(got.bound(), u64::from(max));
            // The values start on a cache line and hold nothing after the last one.
            prop_assert_eq!(got.values().as_ptr() as usize % 64, 0);
            prop_assert_eq!(got.values().len(), n * c * hp * wp);
        }
    }

    /// A buffer of an earlier step holds stale values: the padding is zeroed all the same
    /// (rows above and below, positions at both ends of each row), for one padding and two.
    #[test]
    fn padding_is_zero_in_a_reused_buffer() {
        for p in [1usize, 2] {
            let (n, c, h, w) = (2, 5, 30, 31);
            let len = n * c * (h + 2 * p) * (w + 2 * p) + ALIGN - 1;
            for _ in 0..4 {
                buffers::give(alloc::vec![7i16; len]);
            }
            let x = Array4::from_shape_fn((n, c, h, w), |(m, ch, i, j)| {
                ((m * 7 + ch * 5 + i * 3 + j) % 200) as i16 - 100
            });
            let got = ChannelsLast::padded(x.view(), p).unwrap();
            assert_eq!(
                got.to_nchw(),
                crate::kernels::im2col::pad(x.view(), p),
                "p = {p}"
            );
        }
    }

    /// Channel counts in sixteens (the AVX-512 VBMI byte transpose where the CPU has it) and
    /// widths on and off its sixteen positions, through the dispatch on the portable and the
    /// AVX-512 build: the padded NCHW tensor's values at their channels-last places.
    #[test]
    fn byte_images_in_sixteens_of_channels_transpose_on_every_build() {
        use crate::kernels::cpu::{set_dispatch, Dispatch, Isa};
        #[cfg(nitro_x86_simd)]
        if !crate::kernels::cpu::avx512_vbmi() {
            std::eprintln!(
                "SKIPPED: AVX-512 VBMI byte transpose not tested: this CPU lacks VBMI or VL \
                 (the portable loop is)"
            );
        }
        let mut r = crate::rng::Pcg32::new(11, 2);
        for &(c, h, w) in &[
            (16, 1, 1),
            (16, 3, 7),
            (32, 2, 15),
            (48, 2, 16),
            (64, 3, 17),
            (128, 2, 28),
        ] {
            for p in [0usize, 1, 2] {
                let x = Array4::from_shape_fn((2, c, h, w), |_| r.next_u32() as i8);
                let want = padded_nchw(x.view(), p);
                for isa in [Isa::Portable, Isa::Avx512Vnni]
                    .into_iter()
                    .filter(|i| i.detected())
                {
                    set_dispatch(Dispatch::new(true, isa));
                    let got = ChannelsLast::padded(x.view(), p).unwrap();
                    assert_eq!(got.to_nchw(), want, "{isa}: {c}x{h}x{w}, padding {p}");
                }
                set_dispatch(Dispatch::DEFAULT);
            }
        }
    }

    /// The kernel alone: every position count from 1 to 16 moves byte `(ch, q)` to word
    /// `q·stride + ch` and writes nothing else.
    #[cfg(nitro_x86_simd)]
    #[test]
    fn the_byte_transpose_kernel_moves_each_byte_to_its_word() {
        use crate::kernels::x86::avx512::transpose_bytes16;
        if !crate::kernels::cpu::avx512_vbmi() {
            std::eprintln!(
                "SKIPPED: AVX-512 VBMI byte transpose kernel not tested: no VBMI or VL here"
            );
            return;
        }
        let (plane, stride) = (37usize, 21usize);
        let src: Vec<i8> = (0..16 * plane).map(|i| (i * 73 + 5) as u8 as i8).collect();
        for positions in 1..=16 {
            let mut dst = alloc::vec![i16::MIN; 16 * stride + 16];
            // SAFETY: VBMI (and F, BW, VL) detected above; the sizes cover what it touches.
            unsafe { transpose_bytes16(&src, plane, positions, &mut dst, stride) };
            for (i, &v) in dst.iter().enumerate() {
                let (q, ch) = (i / stride, i % stride);
                let want = if q < positions && ch < 16 {
                    i16::from(src[ch * plane + q])
                } else {
                    i16::MIN
                };
                assert_eq!(v, want, "{positions} positions: word {i}");
            }
        }
    }

    #[test]
    fn a_permuted_input_is_read_by_its_indices() {
        // 2×3×4×5 seen as N×C×H×W through permuted axes of a 2×5×3×4 array.
        let base = Array4::from_shape_fn((2, 5, 3, 4), |(m, j, c, i)| {
            (m * 60 + c * 20 + i * 5 + j) as i16 - 64
        });
        let x = base.view().permuted_axes([0, 2, 3, 1]);
        assert!(!x.is_standard_layout());
        let got = ChannelsLast::padded(x, 1).unwrap();
        let want = crate::kernels::im2col::pad(x, 1);
        assert_eq!(got.to_nchw(), want);
        assert_eq!(got.bound(), 64);
    }

    #[test]
    fn an_overflowing_padding_is_a_shape_error() {
        let x = Array4::<i8>::zeros((1, 1, 2, 2));
        let e = ChannelsLast::padded(x.view(), usize::MAX / 2).unwrap_err();
        assert!(e.to_string().contains("padding"), "{e}");
    }
}
