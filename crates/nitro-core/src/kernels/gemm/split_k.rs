//! The split along the reduction: a product of one operand wider than `i16` with one that is
//! narrow (activations, `|x| ≤ 127`), on the pair engine, in one pass and without recombining.
//!
//! The row split of [`super::pack::Narrow::Split`] writes the wide operand as two `i16` rows
//! (`v = hi·2¹⁵ + lo`), computes a product with twice the rows of C and adds the halves back
//! together afterwards: twice the stores, a second output of C's size and a pass over both.
//! Here each wide value `v` becomes the *pair* `(v >> s, v & (2ˢ − 1))` and each narrow value
//! `x` the pair `(x·2ˢ, x)`, so the pair product the micro-kernels already compute is
//!
//! ```text
//! (v >> s)·(x·2ˢ) + (v & (2ˢ−1))·x = ((v >> s)·2ˢ + (v & (2ˢ−1)))·x = v·x
//! ```
//!
//! exactly: every pair contributes one term of the original dot product, C has its own shape,
//! and there is nothing to recombine. The reduction has twice the pairs (one per original term
//! instead of one per two), the same multiply-adds as the row split.
//!
//! Why it is exact (algorithm.md §10): `s` is the largest shift with `max|x|·2ˢ ≤ 32767`, and
//! the split is used only when `|v| ≤ 32767·2ˢ`, so `|v >> s| ≤ 32767` and `0 ≤ v & (2ˢ−1) <
//! 2ˢ ≤ 2¹⁴`: all four packed values fit `i16`, each of the two products fits `i32`
//! (`32767² < 2³¹`), and their sum is `v·x`, at most `max|v|·max|x|`. A running `i32` sum of
//! `kc` pairs is a partial sum of `kc` terms of the dot product, so blocks of
//! `kc = ⌊(2³¹−1) / (max|v|·max|x|)⌋` pairs cannot overflow — the proof of an unsplit product.

use super::pack::{self, for_panels, word, Packed16, I16_MAX};
use super::pairs;
use super::proof::{prove_i64, Accum};
use crate::error::Result;
use crate::kernels::buffers;
use crate::kernels::cpu::{Dispatch, Int};
use crate::kernels::tile::{MR, NR};
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// The shift `s` for a narrow operand bounded by `narrow`: the largest with `narrow·2ˢ ≤ 32767`,
/// or `None` when not even `s = 1` fits (or the operand is all zeros: any path will do).
pub(super) fn shift_for(narrow: u64) -> Option<u32> {
    (1..=I16_MAX / 2)
        .contains(&narrow)
        .then(|| (I16_MAX / narrow).ilog2())
}

/// The largest wide magnitude the split takes with shift `s` (`|v >> s| ≤ 32767`).
pub(super) fn wide_max(s: u32) -> u64 {
    I16_MAX << s
}

/// The pair word of a wide term `v`: `(v >> s, v & (2ˢ−1))`.
#[inline(always)]
fn wide_word(v: i32, s: u32) -> u32 {
    word(v >> s, v & ((1 << s) - 1))
}

/// The pair word of a narrow term `x`: `(x·2ˢ, x)`, so that its pair product with
/// [`wide_word`]`(v, s)` is `v·x`.
#[inline(always)]
fn narrow_word(x: i32, s: u32) -> u32 {
    word(x << s, x)
}

/// Reduction pairs of a split operand with `k` terms: one per term, padded to an even count so
/// that a narrow operand's direct packing (`⌈k/2⌉` pairs) expands to the same length.
fn pairs_for(k: usize) -> usize {
    2 * k.div_ceil(2)
}

/// `A·Bᵀ` by the split along K with B the wide operand and A narrow, already packed directly
/// (its `max` a bound of its values), `mw` a bound of B's: a forward product with weights
/// grown past `i16`.
/// `Ok(Err(a))` hands the packing back untouched where the split does not apply (see
/// [`plan`]); the overflow error when not even `i64` holds the sums.
pub(super) fn product_b_wide<T: Int>(
    a: Packed16,
    b: &ArrayView2<'_, T>,
    mw: u64,
    min_pairs: usize,
    d: Dispatch,
) -> Result<core::result::Result<Array2<i64>, Packed16>> {
    let (s, kc) = match plan(mw, a.max, b.ncols(), min_pairs) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Err(a)),
        Err(e) => {
            a.release();
            return Err(e);
        }
    };
    let (pa, pb) = (expand_narrow::<MR>(a, s), pack_wide::<T, NR>(b, mw, s));
    Ok(Ok(run(pa, pb, kc, d)))
}

/// `A·Bᵀ` by the split along K with A the wide operand, packing the narrow `b` straight from
/// its view: the MLP weight gradient `δᵀ·x`, whose `xᵀ` is column-major, so each packed pair
/// of a B panel is `NR` consecutive values of one input row. `None` where the split does
/// not apply ([`plan`]; the caller then packs as usual); the overflow error when not even
/// `i64` holds the sums.
pub(super) fn product_a_wide<T: Int, N: Int>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, N>,
    min_pairs: usize,
    d: Dispatch,
) -> Result<Option<Array2<i64>>> {
    Ok(operands_a_wide(a, b, min_pairs)?.map(|(pa, pb, kc)| run(pa, pb, kc, d)))
}

/// The packed operands and the `i32` block length of [`product_a_wide`], for a caller that
/// runs the pair engine on them itself (and releases them).
pub(super) fn operands_a_wide<T: Int, N: Int>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, N>,
    min_pairs: usize,
) -> Result<Option<(Packed16, Packed16, usize)>> {
    let (mw, mx) = (pack::max_abs_view(a), pack::max_abs_view(b));
    let Some((s, kc)) = plan(mw, mx, a.ncols(), min_pairs)? else {
        return Ok(None);
    };
    let (pa, pb) = (pack_wide::<T, MR>(a, mw, s), pack_narrow::<N, NR>(b, mx, s));
    Ok(Some((pa, pb, kc)))
}

/// The shift and the `i32` block length (in pairs) of a split product with the wide operand
/// bounded by `mw`, the narrow one by `mx` and `k` terms; `None` where the split does not
/// apply — no shift fits `mx`, `mw` exceeds [`wide_max`], or the blocks would be shorter than
/// `min_pairs` (the row split then keeps more of each block in `i32`).
fn plan(mw: u64, mx: u64, k: usize, min_pairs: usize) -> Result<Option<(u32, usize)>> {
    let Some(s) = shift_for(mx) else {
        return Ok(None);
    };
    prove_i64(mw, mx, k)?;
    if mw > wide_max(s) {
        return Ok(None);
    }
    let kc = match Accum::prove(mw, mx, k) {
        Accum::I64 => return Ok(None),
        p => p.chunk_len(k),
    };
    Ok((kc >= min_pairs.min(k)).then_some((s, kc)))
}

/// The pair engine on the two split operands, which go back to the buffer list.
fn run(pa: Packed16, pb: Packed16, kc: usize, d: Dispatch) -> Array2<i64> {
    let (m, n) = (pa.rows, pb.rows);
    let c = pairs::gemm16(&pa, &pb, kc, pairs::resolve(d.isa));
    pa.release();
    pb.release();
    super::count(1);
    Array2::from_shape_vec((m, n), c).expect("m*n elements")
}

/// The wide operand as panels of `W` rows, one pair word `(v >> s, v & (2ˢ−1))` per term
/// (`mw` bounds its values; the caller checked `mw ≤ wide_max(s)`).
fn pack_wide<T: Int, const W: usize>(a: &ArrayView2<'_, T>, mw: u64, s: u32) -> Packed16 {
    Packed16 {
        data: pack_terms::<T, W>(a, move |v| wide_word(v, s)),
        rows: a.nrows(),
        kp: pairs_for(a.ncols()),
        max: mw_packed(mw, s),
    }
}

/// The largest packed value of a wide operand bounded by `m` (informative: the proof uses the
/// operands' own bounds).
fn mw_packed(m: u64, s: u32) -> u64 {
    m.div_ceil(1 << s).max(m.min((1 << s) - 1))
}

/// The narrow operand for the split as panels of `W` rows straight from its view, one pair
/// word `(x·2ˢ, x)` per term (`mx` bounds its values, `mx·2ˢ ≤ 32767`): the words
/// [`expand_narrow`] makes from a direct packing, without the packing.
fn pack_narrow<N: Int, const W: usize>(b: &ArrayView2<'_, N>, mx: u64, s: u32) -> Packed16 {
    Packed16 {
        data: pack_terms::<N, W>(b, move |x| narrow_word(x, s)),
        rows: b.nrows(),
        kp: pairs_for(b.ncols()),
        max: mx << s,
    }
}

/// Panels of `W` rows of `a`, one pair word `pair(v)` per term (the layout of the direct
/// packing with one term per pair instead of two); rows past the operand and the padding
/// pair of an odd `K` are zero. Compiled for the widest loop build the dispatch allows, as
/// the direct packing is.
fn pack_terms<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    pair: impl Fn(i32) -> u32 + Sync + Send,
) -> Vec<u32> {
    #[cfg(nitro_x86_simd)]
    {
        use crate::kernels::cpu::{loop_build, Isa};
        match loop_build() {
            // SAFETY (both): `loop_build` names a build this CPU has.
            Isa::Avx512Vnni => return unsafe { pack_terms_avx512::<T, W>(a, pair) },
            Isa::Avx2 => return unsafe { pack_terms_avx2::<T, W>(a, pair) },
            _ => {}
        }
    }
    pack_terms_impl::<T, W>(a, pair)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx2")]
unsafe fn pack_terms_avx2<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    pair: impl Fn(i32) -> u32 + Sync + Send,
) -> Vec<u32> {
    pack_terms_impl::<T, W>(a, pair)
}

#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_terms_avx512<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    pair: impl Fn(i32) -> u32 + Sync + Send,
) -> Vec<u32> {
    pack_terms_impl::<T, W>(a, pair)
}

#[inline(always)]
fn pack_terms_impl<T: Int, const W: usize>(
    a: &ArrayView2<'_, T>,
    pair: impl Fn(i32) -> u32 + Sync + Send,
) -> Vec<u32> {
    let (m, k) = a.dim();
    let kp = pairs_for(k);
    let mut data = buffers::take_dirty::<u32>(m.div_ceil(W) * kp * W);
    let row_major = k > 0 && a.strides()[1] == 1;
    // A column-major operand whose columns follow each other (the transposed error or input
    // of a weight gradient): all its values, column by column, read without a view per term.
    let at = a.t();
    let columns = match k > 0 && m > 0 && a.strides()[0] == 1 {
        true => at.as_slice(),
        false => None,
    };
    for_panels(&mut data, kp * W, |p, dst| {
        let live = W.min(m - p * W);
        if live < W {
            dst.fill(0); // rows past the operand stay zero
        } else if kp > k {
            dst[k * W..].fill(0); // the padding pair
        }
        if row_major {
            for r in 0..live {
                let row = a.row(p * W + r);
                let row = row.as_slice().expect("unit stride row");
                for (d, &v) in dst.chunks_exact_mut(W).zip(row) {
                    d[r] = pair(v.into());
                }
            }
            return;
        }
        let rows = p * W..p * W + live;
        if let Some(cols) = columns {
            // Each term's W words from a run of consecutive values: a loop that vectorises.
            for (t, d) in dst.chunks_exact_mut(W).take(k).enumerate() {
                let c = &cols[t * m..(t + 1) * m][rows.clone()];
                for (dr, &v) in d.iter_mut().zip(c) {
                    *dr = pair(v.into());
                }
            }
            return;
        }
        // Column-major with gaps between columns, or strided: one column per packed pair.
        for (t, d) in dst.chunks_exact_mut(W).take(k).enumerate() {
            let col = a.column(t);
            match col.as_slice() {
                Some(c) => {
                    for (dr, &v) in d.iter_mut().zip(&c[rows.clone()]) {
                        *dr = pair(v.into());
                    }
                }
                None => {
                    for (dr, i) in d.iter_mut().zip(rows.clone()) {
                        *dr = pair(col[i].into());
                    }
                }
            }
        }
    });
    data
}

/// The narrow operand for the split, from its direct packing (panels of `W` rows): each pair
/// word `(x₀, x₁)` becomes the two words `(x₀·2ˢ, x₀)` and `(x₁·2ˢ, x₁)`, so the pairs double
/// (an odd `K`'s zero padding term becomes the padding pair). The direct packing is released.
fn expand_narrow<const W: usize>(p: Packed16, s: u32) -> Packed16 {
    let mut data = buffers::take_dirty::<u32>(2 * p.data.len());
    let scaled = |x: u32| narrow_word(i32::from(x as u16 as i16), s);
    for (src, dst) in p.data.chunks_exact(W).zip(data.chunks_exact_mut(2 * W)) {
        let (even, odd) = dst.split_at_mut(W);
        for ((e, o), &w) in even.iter_mut().zip(odd.iter_mut()).zip(src) {
            *e = scaled(w);
            *o = scaled(w >> 16);
        }
    }
    let out = Packed16 {
        data,
        rows: p.rows,
        kp: 2 * p.kp,
        max: p.max << s,
    };
    p.release();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::pack::Narrow;
    use crate::rng::Pcg32;

    /// `a`'s transpose stored row-major, so that its `.t()` is a column-major view of `a`
    /// (`a.t().to_owned()` keeps the view's memory order: its `.t()` would be row-major again).
    fn transposed(a: &Array2<i32>) -> Array2<i32> {
        a.t().as_standard_layout().into_owned()
    }

    fn oracle(a: &Array2<i32>, b: &Array2<i32>) -> Array2<i64> {
        Array2::from_shape_fn((a.nrows(), b.nrows()), |(i, j)| {
            (0..a.ncols())
                .map(|t| i64::from(a[[i, t]]) * i64::from(b[[j, t]]))
                .sum()
        })
    }

    #[test]
    fn shifts_are_the_largest_that_fit() {
        assert_eq!(shift_for(0), None);
        assert_eq!(shift_for(1), Some(14));
        assert_eq!(shift_for(114), Some(8)); // 114·256 = 29184, 114·512 > 32767
        assert_eq!(shift_for(127), Some(8));
        assert_eq!(shift_for(128), Some(7));
        assert_eq!(shift_for(16_383), Some(1));
        assert_eq!(shift_for(16_384), None);
        for x in 1..=16_383u64 {
            let s = shift_for(x).unwrap();
            assert!(x << s <= I16_MAX && x << (s + 1) > I16_MAX, "{x}");
        }
    }

    /// Both sides, every detected kernel, odd and even K, the wide operand's extremes (±32767·2ˢ
    /// and values whose low part is 2ˢ−1), row-major and transposed views.
    #[test]
    fn split_products_match_oracle() {
        let mut r = Pcg32::new(41, 7);
        let mut ran = 0;
        for case in 0..48 {
            let (m, n) = (
                1 + r.below(2 * MR as u32 + 3),
                1 + r.below(2 * NR as u32 + 5),
            );
            let (m, n) = (m as usize, n as usize);
            let k = 1 + r.below(90) as usize;
            let nb = [1u32, 114, 127, 128, 1000, 16_383][case % 6];
            let s = shift_for(u64::from(nb)).unwrap();
            let wb = [40_000u32, 127_519, wide_max(s) as u32][case % 3];
            let mut w = Array2::from_shape_fn((m, k), |_| r.symmetric(wb));
            w[[0, 0]] = wb as i32;
            w[[m - 1, k - 1]] = -(wb as i32);
            w[[m / 2, k / 2]] = (wb as i32 >> s << s) - 1; // low part 2ˢ−1
            let x = Array2::from_shape_fn((n, k), |_| r.symmetric(nb));
            let want = oracle(&w, &x);
            let (wt, xt) = (transposed(&w), transposed(&x));
            // Column-major with gaps between its columns: B's transpose inside a wider array.
            let mut wider = Array2::zeros((k, n + 3));
            wider.slice_mut(ndarray::s![.., ..n]).assign(&xt);
            let gapped = wider.slice(ndarray::s![.., ..n]);
            // Neither row- nor column-major: every second value of a larger array.
            let mut spaced = Array2::zeros((2 * n, 2 * k));
            spaced.slice_mut(ndarray::s![..;2, ..;2]).assign(&x);
            let strided = spaced.slice(ndarray::s![..;2, ..;2]);
            for d in Dispatch::all_detected() {
                // Wide A, narrow B packed from its view: row-major, column-major (the
                // transposed view of a weight gradient, the contiguous path), column-major
                // with gaps (one column view per term) and strided.
                for b in [x.view(), xt.t(), gapped.t(), strided] {
                    let c = product_a_wide(&w.view(), &b, 1, d).unwrap();
                    assert_eq!(c.unwrap(), want, "A wide, case {case} {d:?}");
                }
                let c = product_a_wide(&wt.t(), &xt.t(), 1, d).unwrap();
                assert_eq!(c.unwrap(), want, "A wide transposed, case {case} {d:?}");
                // Narrow A packed directly, wide B, from transposed (column-major) views.
                let pa = pack::pack_a(&xt.t(), Narrow::Direct).unwrap();
                let c = product_b_wide(pa, &wt.t(), pack::max_abs_view(&wt.t()), 1, d).unwrap();
                assert_eq!(c.ok().unwrap(), want.t(), "B wide, case {case} {d:?}");
                ran += 1;
            }
        }
        assert!(ran >= 48);
    }

    #[test]
    fn declines_what_it_cannot_prove() {
        let dd = Dispatch::default();
        let x = Array2::from_elem((3, 10), 127i32);
        let s = shift_for(127).unwrap();
        let too_wide = Array2::from_elem((2, 10), wide_max(s) as i32 + 1);
        let c = product_a_wide(&too_wide.view(), &x.view(), 1, dd).unwrap();
        assert!(c.is_none(), "|v| > 32767·2ˢ must be declined");
        let pa = pack::pack_a(&x.view(), Narrow::Direct).unwrap();
        let back = product_b_wide(pa, &too_wide.view(), wide_max(s) + 1, 1, dd).unwrap();
        let pa = back.expect_err("|v| > 32767·2ˢ must be declined (B wide)");
        // Blocks shorter than asked for: declined too (the row split keeps longer blocks).
        let wide = Array2::from_elem((2, 10), 8_000_000i32);
        let c = product_a_wide(&wide.view(), &x.view(), 10, dd).unwrap();
        assert!(c.is_none(), "2 pairs per block < 10");
        let back = product_b_wide(pa, &wide.view(), 8_000_000, 10, dd).unwrap();
        back.expect_err("2 pairs per block < 10 (B wide)").release();
        // A narrow operand too wide for any shift.
        let x = Array2::from_elem((3, 10), 16_384i32);
        let wide = Array2::from_elem((2, 10), 40_000i32);
        let c = product_a_wide(&wide.view(), &x.view(), 1, dd).unwrap();
        assert!(c.is_none(), "no shift for 16384");
    }
}
