//! The IntegerSGD update loops (algorithm.md §5), vectorised: an [`Plan`] turns both divisions of
//! `P ← P − (tdiv(G, lr_inv·amp) + tdiv(P, decay_inv))` into exact multiply-and-shift
//! reciprocals. An update is all-or-nothing: either staged — one pass computes every new value
//! into a separate buffer and checks that it fits `i32` ([`Plan::updated`]) — or in place, in
//! two allocation-free passes (check, then write).

use crate::arith::{tdiv, DivU31};
use crate::error::{Error, Result};
#[cfg(nitro_x86_simd)]
use crate::kernels::cpu::{loop_build, Isa};
use crate::kernels::par;
#[cfg(nitro_x86_simd)]
use crate::kernels::x86::avx512;
use alloc::format;

/// The parameters `Plan::new` needs: what an `Sgd` holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rates {
    /// Inverse learning rate.
    pub(crate) lr_inv: i64,
    /// Amplification of the inverse learning rate.
    pub(crate) amp: i64,
    /// Inverse weight decay (0: off).
    pub(crate) decay_inv: i64,
}

/// Parameters and gradients have the same length.
pub(crate) fn check_lengths(params: &[i32], grads: &[i64], layer: &str) -> Result<()> {
    if params.len() != grads.len() {
        return Err(Error::shape(format!(
            "{layer}: {} parameters but {} gradients",
            params.len(),
            grads.len()
        )));
    }
    Ok(())
}

/// The error of an update that would leave `i32`.
pub(crate) fn overflow_at(layer: &str, i: usize, v: i64) -> Error {
    Error::overflow(
        layer,
        "weight update",
        format!("parameter {i} would become {v}, outside i32"),
    )
}

/// A part's parameters and their gradients.
type Inputs<'a> = (&'a [i32], &'a [i64]);

/// Parameters per block of the range-checked update loops.
const LANES: usize = 8;

/// Parameters per part of a pass run on several threads (a multiple of [`LANES`]): smaller
/// layers stay on the calling thread, where waking the pool would cost more than it saves.
const PART: usize = 1 << 15;

/// The part length for `n` parameters: all of them in one part unless there are several
/// threads and more than two parts' worth.
fn part_len(n: usize) -> usize {
    if par::threads() > 1 && n > 2 * PART {
        PART
    } else {
        n.max(1)
    }
}

/// `f` of every part of equal-length `params` and `grads` (cut by [`part_len`]), in order, on
/// all threads when there are several parts.
fn on_parts<R: Send>(
    params: &[i32],
    grads: &[i64],
    f: impl Fn(&[i32], &[i64]) -> R + Sync + Send,
) -> alloc::vec::Vec<R> {
    let len = part_len(params.len());
    if len >= params.len() {
        return alloc::vec![f(params, grads)];
    }
    let mut parts: alloc::vec::Vec<(&[i32], &[i64])> =
        params.chunks(len).zip(grads.chunks(len)).collect();
    par::map_mut(&mut parts, |(p, g)| f(p, g))
}

/// An IntegerSGD step prepared for one update: both divisors as exact multiply-and-shift reciprocals.
///
/// The new value of a parameter is `(P − tdiv(P, decay_inv)) − tdiv(G, lr_inv·amp)`, which is
/// `Sgd::step`'s `P − (tdiv(G, lr_inv·amp) + tdiv(P, decay_inv))`: both are the same integer,
/// and where that integer leaves `i64` (only for `|G|` near 2⁶³) both wrap to the same value
/// modulo 2⁶⁴ — far outside `i32`, so an [`Error::Overflow`] either way.
///
/// A staged update is one pass, [`Plan::updated`]. An update in place is two passes over the
/// parameters, without allocating: [`Plan::scan`] bounds every new value (and, only if that
/// bound is not enough, [`Plan::fits`] computes them); then [`Plan::write`] computes and stores
/// them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// `lr_inv · amp`, > 0.
    div: i64,
    /// `decay_inv`, ≥ 0 (0: no decay).
    decay_inv: i64,
    grad_div: DivU31,
    /// `⌊log₂(lr_inv·amp)⌋`, so `|G| >> grad_shift ≥ ⌊|G| / (lr_inv·amp)⌋`.
    grad_shift: u32,
    /// `DivU31::new(0)` (the quotient 0) when decay is off.
    decay_div: DivU31,
}

/// What [`Plan::scan`] learned about a slice of parameters and gradients.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scan {
    /// Every new value certainly fits `i32`.
    surely_fits: bool,
    /// Every `|P|` and `|G|` is below 2³¹: [`Plan::fast`] is exact for all of them.
    narrow: bool,
}

impl Plan {
    /// `None` for hyper-parameters `Sgd::new` would reject.
    pub(crate) fn new(s: Rates) -> Option<Plan> {
        if s.lr_inv <= 0 || s.amp <= 0 || s.decay_inv < 0 {
            return None;
        }
        let div = s.lr_inv.checked_mul(s.amp)?;
        Some(Plan {
            div,
            decay_inv: s.decay_inv,
            grad_div: DivU31::new(div as u64),
            grad_shift: div.ilog2(),
            decay_div: DivU31::new(s.decay_inv as u64),
        })
    }

    /// The new value of one parameter with `i64` division (every input).
    #[inline]
    fn exact(&self, p: i32, g: i64) -> i64 {
        let p = i64::from(p);
        // |tdiv(p, d)| ≤ |p| with the sign of p: the difference cannot overflow.
        let kept = if self.decay_inv > 0 {
            p - tdiv(p, self.decay_inv)
        } else {
            p
        };
        kept.wrapping_sub(tdiv(g, self.div))
    }

    /// The new value of one parameter by the reciprocals, branch-free: equal to
    /// [`Plan::exact`] when `|P| < 2³¹` and `|G| < 2³¹`, and meaningless otherwise.
    #[inline(always)]
    fn fast(&self, p: i32, g: i64) -> i64 {
        // |x| = (x ⊕ s) − s with s the sign mask; tdiv(x, d) = ±⌊|x| / d⌋ = (⌊|x| / d⌋ ⊕ s) − s.
        let sg = (g >> 63) as u64;
        let ag = ((g as u64) ^ sg).wrapping_sub(sg);
        let pv = i64::from(p);
        let sp = (pv >> 63) as u64;
        let ap = ((pv as u64) ^ sp).wrapping_sub(sp);
        let qg = (self.grad_div.div(ag) ^ sg).wrapping_sub(sg);
        let qp = (self.decay_div.div(ap) ^ sp).wrapping_sub(sp);
        (pv as u64).wrapping_sub(qp).wrapping_sub(qg) as i64
    }

    /// New values of one block: [`Plan::fast`] where every `|G|` and `|P|` is below 2³¹,
    /// otherwise [`Plan::exact`] for the whole block.
    #[inline(always)]
    fn block(&self, p: &[i32; LANES], g: &[i64; LANES]) -> [i64; LANES] {
        let mut out = [0i64; LANES];
        let mut wide = 0u64;
        for i in 0..LANES {
            wide |= (g[i].unsigned_abs() | i64::from(p[i]).unsigned_abs()) >> 31;
            out[i] = self.fast(p[i], g[i]);
        }
        if wide != 0 {
            for i in 0..LANES {
                out[i] = self.exact(p[i], g[i]);
            }
        }
        out
    }

    /// First pass (lengths are equal). `surely_fits` uses the bound
    /// `|P − tdiv(P, decay_inv) − tdiv(G, div)| ≤ |P| + ⌊|G| / div⌋ ≤ |P| + (|G| >> grad_shift)`:
    /// below 2³¹, the new value lies in `(−2³¹, 2³¹)`.
    #[inline(always)]
    fn scan_generic(&self, params: &[i32], grads: &[i64]) -> Scan {
        let (mut bound, mut wide) = (0u64, 0u64);
        for (&p, &g) in params.iter().zip(grads) {
            let (ap, ag) = (i64::from(p).unsigned_abs(), g.unsigned_abs());
            // ≤ 2³¹ + 2⁶³: no overflow.
            bound |= (ap + (ag >> self.grad_shift)) >> 31;
            wide |= ap | ag;
        }
        Scan {
            surely_fits: bound == 0,
            narrow: wide >> 31 == 0,
        }
    }

    /// Whether every new value fits `i32`, computing them (lengths are equal).
    #[inline(always)]
    fn fits_generic(&self, params: &[i32], grads: &[i64]) -> bool {
        // v fits i32 ⇔ v + 2³¹ ∈ [0, 2³²) ⇔ (v + 2³¹) >> 32 = 0 (wrapping, as u64).
        let out_of_range = |v: i64| (v as u64).wrapping_add(1 << 31) >> 32;
        let n = params.len() / LANES * LANES;
        let mut bad = 0u64;
        for (&p, &g) in params[n..].iter().zip(&grads[n..]) {
            bad |= out_of_range(self.exact(p, g));
        }
        for (p, g) in params[..n]
            .chunks_exact(LANES)
            .zip(grads[..n].chunks_exact(LANES))
        {
            let (Ok(p), Ok(g)) = (p.try_into(), g.try_into()) else {
                unreachable!("chunks_exact yields LANES elements")
            };
            for v in self.block(p, g) {
                bad |= out_of_range(v);
            }
        }
        bad == 0
    }

    /// Every new value into `out` (lengths are equal); whether all of them fit `i32` (those
    /// that do not are stored truncated: the caller discards `out` then).
    #[inline(always)]
    fn updated_generic(&self, params: &[i32], grads: &[i64], out: &mut [i32]) -> bool {
        let flags = self.fast_pass(params, grads, out);
        self.finish(flags, params, grads, out)
    }

    /// [`Plan::fast`] of every parameter into `out` (lengths are equal), truncated to `i32`, in
    /// one branch-free loop; returns its two flags: the OR of every `|P|` and `|G|`, and the OR
    /// of every new value `v + 2³¹` (wrapping, as `u64`). Both are ORs of whole values, shifted
    /// once by [`Plan::finish`] (`(a | b) >> k` is `(a >> k) | (b >> k)`), so the loop stays
    /// short.
    #[inline(always)]
    fn fast_pass(&self, params: &[i32], grads: &[i64], out: &mut [i32]) -> (u64, u64) {
        let (mut wide, mut shifted) = (0u64, 0u64);
        for ((o, &p), &g) in out.iter_mut().zip(params).zip(grads) {
            wide |= g.unsigned_abs() | i64::from(p).unsigned_abs();
            let v = self.fast(p, g);
            shifted |= (v as u64).wrapping_add(1 << 31);
            *o = v as i32;
        }
        (wide, shifted)
    }

    /// The verdict of a staged update from [`Plan::fast_pass`]'s flags over all of `params`.
    /// Nearly always every |P| and |G| is below 2³¹: the fast values are exact, and all fit
    /// `i32` ⇔ every `v + 2³¹ ∈ [0, 2³²)` ⇔ the OR's bits from 32 up are clear. Otherwise
    /// (rare) the passes of an update in place: the write's block-by-block form into `out` (a
    /// value that does not fit is stored truncated, and `out` discarded), then the check.
    #[inline(always)]
    fn finish(
        &self,
        (wide, shifted): (u64, u64),
        params: &[i32],
        grads: &[i64],
        out: &mut [i32],
    ) -> bool {
        if wide >> 31 == 0 {
            return shifted >> 32 == 0;
        }
        out.copy_from_slice(params);
        self.write_generic(out, grads, false);
        self.fits_generic(params, grads)
    }

    /// Store every new value (lengths are equal; one that does not fit `i32` is stored truncated —
    /// the in-place update writes only values known to fit). With `narrow` (see
    /// [`Scan`]) every value comes from [`Plan::fast`] in one branch-free loop.
    #[inline(always)]
    fn write_generic(&self, params: &mut [i32], grads: &[i64], narrow: bool) {
        if narrow {
            for (p, &g) in params.iter_mut().zip(grads) {
                *p = self.fast(*p, g) as i32;
            }
            return;
        }
        let n = params.len() / LANES * LANES;
        let (head, tail) = params.split_at_mut(n);
        for (p, &g) in tail.iter_mut().zip(&grads[n..]) {
            *p = self.exact(*p, g) as i32;
        }
        for (p, g) in head
            .chunks_exact_mut(LANES)
            .zip(grads[..n].chunks_exact(LANES))
        {
            let (Ok(p), Ok(g)) = (<&mut [i32; LANES]>::try_from(p), g.try_into()) else {
                unreachable!("chunks_exact yields LANES elements")
            };
            let v = self.block(p, g);
            for (o, v) in p.iter_mut().zip(v) {
                *o = v as i32;
            }
        }
    }

    /// Lengths equal and every new value fits `i32`, else the error `Sgd::apply` reports (the
    /// first offending parameter). Returns what [`Plan::write`] needs.
    pub(crate) fn check(&self, params: &[i32], grads: &[i64], layer: &str) -> Result<Scan> {
        check_lengths(params, grads, layer)?;
        let scan = self.scan(params, grads);
        if scan.surely_fits || self.fits(params, grads) {
            return Ok(scan);
        }
        // Rare: find the first offending parameter one at a time (this scan is authoritative).
        for (i, (&p, &g)) in params.iter().zip(grads).enumerate() {
            let v = self.exact(p, g);
            if i32::try_from(v).is_err() {
                return Err(overflow_at(layer, i, v));
            }
        }
        Ok(scan)
    }

    /// The new value of every parameter into `out`, in one pass (on all threads for a large
    /// layer), if every one fits `i32`; else the error [`Plan::check`] reports, and `out` holds
    /// nothing of use. `params`, `grads` and `out` have equal lengths (else a shape error).
    pub(crate) fn updated(
        &self,
        params: &[i32],
        grads: &[i64],
        out: &mut [i32],
        layer: &str,
    ) -> Result<()> {
        check_lengths(params, grads, layer)?;
        if out.len() != params.len() {
            return Err(Error::shape(format!(
                "{layer}: {} parameters but room for {} new values",
                params.len(),
                out.len()
            )));
        }
        let len = part_len(params.len());
        let mut parts: alloc::vec::Vec<(Inputs<'_>, &mut [i32])> = params
            .chunks(len)
            .zip(grads.chunks(len))
            .zip(out.chunks_mut(len))
            .collect();
        let fits = match parts.len() {
            1 => alloc::vec![self.updated_part(parts[0].0 .0, parts[0].0 .1, parts[0].1)],
            _ => par::map_mut(&mut parts, |((p, g), o)| self.updated_part(p, g, o)),
        };
        if fits.into_iter().all(|f| f) {
            return Ok(());
        }
        // Rare: the first offending parameter, one at a time (this scan is authoritative; if it
        // finds none, every value is stored again from it).
        self.check(params, grads, layer)?;
        for ((o, &p), &g) in out.iter_mut().zip(params).zip(grads) {
            *o = self.exact(p, g) as i32;
        }
        Ok(())
    }

    /// The new value of every parameter of one part into `out` (lengths are equal, one
    /// thread); whether all of them fit `i32` (else `out` holds nothing of use).
    pub(crate) fn updated_part(&self, params: &[i32], grads: &[i64], out: &mut [i32]) -> bool {
        #[cfg(nitro_x86_simd)]
        match loop_build() {
            // SAFETY (both): the instruction set is allowed and detected.
            Isa::Avx512Vnni => return unsafe { self.updated_avx512(params, grads, out) },
            Isa::Avx2 => return unsafe { self.updated_avx2(params, grads, out) },
            _ => {}
        }
        self.updated_generic(params, grads, out)
    }

    /// [`Plan::updated_generic`] compiled for AVX2.
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx2")]
    unsafe fn updated_avx2(&self, params: &[i32], grads: &[i64], out: &mut [i32]) -> bool {
        self.updated_generic(params, grads, out)
    }

    /// [`Plan::updated_generic`] with the fast pass by the AVX-512 kernel (eight parameters per
    /// step, one multiply per division; the tail of fewer than eight by the portable loop),
    /// unless that kernel failed its first-use check.
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn updated_avx512(&self, params: &[i32], grads: &[i64], out: &mut [i32]) -> bool {
        if !fast_kernel_usable() {
            return self.updated_generic(params, grads, out);
        }
        // SAFETY: AVX-512 F is enabled here; equal lengths (the caller).
        let flags = unsafe { self.fast_pass_avx512(params, grads, out) };
        self.finish(flags, params, grads, out)
    }

    /// [`Plan::fast_pass`] by the AVX-512 kernel on whole groups of eight, the portable loop on
    /// the rest.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; lengths are equal.
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx512f")]
    unsafe fn fast_pass_avx512(
        &self,
        params: &[i32],
        grads: &[i64],
        out: &mut [i32],
    ) -> (u64, u64) {
        let n = params.len() / 8 * 8;
        let (head, tail) = out.split_at_mut(n);
        // SAFETY: the caller has AVX-512 F; the three heads have length n.
        let (w1, s1) = unsafe {
            avx512::sgd_fast(
                &params[..n],
                &grads[..n],
                head,
                self.grad_div.parts(),
                self.decay_div.parts(),
            )
        };
        let (w2, s2) = self.fast_pass(&params[n..], &grads[n..], tail);
        (w1 | w2, s1 | s2)
    }

    /// [`Plan::scan_part`] of every part, on all threads: each field of [`Scan`] says
    /// something of every element, so the parts' answers combine with `and`.
    fn scan(&self, params: &[i32], grads: &[i64]) -> Scan {
        let parts = on_parts(params, grads, |p, g| self.scan_part(p, g));
        Scan {
            surely_fits: parts.iter().all(|s| s.surely_fits),
            narrow: parts.iter().all(|s| s.narrow),
        }
    }

    fn scan_part(&self, params: &[i32], grads: &[i64]) -> Scan {
        #[cfg(nitro_x86_simd)]
        match loop_build() {
            // SAFETY (all three entry points): the instruction set is allowed and detected.
            Isa::Avx512Vnni => return unsafe { self.scan_avx512(params, grads) },
            Isa::Avx2 => return unsafe { self.scan_avx2(params, grads) },
            _ => {}
        }
        self.scan_generic(params, grads)
    }

    /// [`Plan::fits_part`] of every part, on all threads.
    fn fits(&self, params: &[i32], grads: &[i64]) -> bool {
        on_parts(params, grads, |p, g| self.fits_part(p, g))
            .into_iter()
            .all(|f| f)
    }

    fn fits_part(&self, params: &[i32], grads: &[i64]) -> bool {
        #[cfg(nitro_x86_simd)]
        match loop_build() {
            Isa::Avx512Vnni => return unsafe { self.fits_avx512(params, grads) },
            Isa::Avx2 => return unsafe { self.fits_avx2(params, grads) },
            _ => {}
        }
        self.fits_generic(params, grads)
    }

    /// Second pass, on all threads for a large layer: every new value depends on its own
    /// parameter and gradient only, so any cut into parts writes the same bits.
    pub(crate) fn write(&self, params: &mut [i32], grads: &[i64], scan: Scan) {
        let len = part_len(params.len());
        par::for_each_chunk_mut(params, len, |i, p| {
            self.write_part(p, &grads[i * len..i * len + p.len()], scan)
        });
    }

    fn write_part(&self, params: &mut [i32], grads: &[i64], scan: Scan) {
        #[cfg(nitro_x86_simd)]
        match loop_build() {
            Isa::Avx512Vnni => return unsafe { self.write_avx512(params, grads, scan.narrow) },
            Isa::Avx2 => return unsafe { self.write_avx2(params, grads, scan.narrow) },
            _ => {}
        }
        self.write_generic(params, grads, scan.narrow)
    }

    /// [`Plan::scan_generic`] compiled for AVX2.
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(&self, params: &[i32], grads: &[i64]) -> Scan {
        self.scan_generic(params, grads)
    }

    /// [`Plan::scan_generic`] compiled for AVX-512 (twice the lanes of AVX2).
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn scan_avx512(&self, params: &[i32], grads: &[i64]) -> Scan {
        self.scan_generic(params, grads)
    }

    /// [`Plan::fits_generic`] compiled for AVX2.
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx2")]
    unsafe fn fits_avx2(&self, params: &[i32], grads: &[i64]) -> bool {
        self.fits_generic(params, grads)
    }

    /// [`Plan::fits_generic`] compiled for AVX-512 (twice the lanes of AVX2).
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fits_avx512(&self, params: &[i32], grads: &[i64]) -> bool {
        self.fits_generic(params, grads)
    }

    /// [`Plan::write_generic`] compiled for AVX2.
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx2")]
    unsafe fn write_avx2(&self, params: &mut [i32], grads: &[i64], narrow: bool) {
        self.write_generic(params, grads, narrow)
    }

    /// [`Plan::write_generic`] compiled for AVX-512 (twice the lanes of AVX2).
    #[cfg(nitro_x86_simd)]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn write_avx512(&self, params: &mut [i32], grads: &[i64], narrow: bool) {
        self.write_generic(params, grads, narrow)
    }
}

/// The AVX-512 fast-pass kernel's first-use check.
#[cfg(nitro_x86_simd)]
static FAST_CHECK: crate::kernels::self_check::SelfCheck =
    crate::kernels::self_check::SelfCheck::new("the AVX-512 SGD update kernel");

/// Whether the AVX-512 fast-pass kernel agrees with the portable loop (checked once, at first
/// use; the caller has detected AVX-512).
#[cfg(nitro_x86_simd)]
fn fast_kernel_usable() -> bool {
    // SAFETY: only called where AVX-512 F and BW are detected.
    FAST_CHECK.passed(|| unsafe { fast_kernel_self_check() })
}

/// The kernel's pass against [`Plan::fast_pass`] — values and both flags — for several
/// divisors (1, odd, a power of two, beyond 2³¹, decay off) on edge and random parameters and
/// gradients, narrow and wide (the pass is defined for every input, so all must agree), with a
/// tail of fewer than eight.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(nitro_x86_simd)]
#[target_feature(enable = "avx512f")]
unsafe fn fast_kernel_self_check() -> bool {
    let edges_p = [
        0,
        1,
        -1,
        2,
        -2,
        i32::MAX,
        i32::MIN,
        i32::MIN + 1,
        1 << 30,
        -(1 << 30),
    ];
    let edges_g = [
        0,
        1,
        -1,
        (1 << 31) - 1,
        -(1 << 31) + 1,
        1 << 31,
        -(1 << 31),
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
        (1 << 32) + 5,
        -(1 << 40) - 3,
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*: a fixed stream, independent of the crate's RNG.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut params = alloc::vec::Vec::new();
    let mut grads = alloc::vec::Vec::new();
    for &p in &edges_p {
        for &g in &edges_g {
            params.push(p);
            grads.push(g);
        }
    }
    for _ in 0..101 {
        let (a, b) = (next(), next());
        // Mostly narrow values: a few bits of `b` pick the widths.
        params.push((a as i32) >> (b & 31));
        grads.push((b as i64) >> (24 + (a >> 59)));
    }
    let n = params.len();
    let rates = [
        (1, 1, 0),
        (3, 7, 5),
        (512, 64, 1 << 20),
        (1 << 16, 1 << 16, 3),
        (12_345, 1, 1),
    ];
    rates.iter().all(|&(lr_inv, amp, decay_inv)| {
        let Some(plan) = Plan::new(Rates {
            lr_inv,
            amp,
            decay_inv,
        }) else {
            return false;
        };
        [n, n - 3, 7].iter().all(|&len| {
            let (mut want, mut got) = (alloc::vec![0i32; len], alloc::vec![0i32; len]);
            let a = plan.fast_pass(&params[..len], &grads[..len], &mut want);
            // SAFETY: the caller has AVX-512 F; equal lengths.
            let b = unsafe { plan.fast_pass_avx512(&params[..len], &grads[..len], &mut got) };
            a == b && want == got
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(nitro_x86_simd)]
    #[test]
    fn avx512_fast_pass_passes_its_self_check_where_the_cpu_has_it() {
        if !Isa::Avx512Vnni.detected() {
            std::eprintln!("SKIPPED: AVX-512 SGD update kernel not tested: this CPU lacks AVX-512");
            return;
        }
        // SAFETY: detected.
        assert!(unsafe { fast_kernel_self_check() });
        assert!(fast_kernel_usable());
    }

    #[cfg(nitro_x86_simd)]
    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(500))]

        /// The kernel's values and flags are the portable pass's for every input (narrow,
        /// wide, any divisor), and the staged update's verdict is the same.
        #[test]
        fn avx512_fast_pass_is_the_portable_pass(
            rates in (1i64..=(1 << 20), 1i64..=(1 << 12), proptest::prop_oneof![proptest::strategy::Just(0i64), 1i64..=(1 << 34)]),
            pg in proptest::collection::vec(
                (
                    proptest::prop_oneof![4 => -50_000i32..=50_000, 1 => proptest::num::i32::ANY],
                    proptest::prop_oneof![
                        4 => -(1i64 << 31)..(1i64 << 31),
                        1 => proptest::num::i64::ANY,
                        1 => proptest::strategy::Just(i64::MIN),
                    ],
                ),
                0..90,
            ),
        ) {
            if !Isa::Avx512Vnni.detected() {
                return Ok(());
            }
            let plan = Plan::new(Rates { lr_inv: rates.0, amp: rates.1, decay_inv: rates.2 }).unwrap();
            let (p, g): (alloc::vec::Vec<i32>, alloc::vec::Vec<i64>) = pg.into_iter().unzip();
            let (mut want, mut got) = (alloc::vec![0i32; p.len()], alloc::vec![1i32; p.len()]);
            let a = plan.fast_pass(&p, &g, &mut want);
            // SAFETY: detected; equal lengths.
            let b = unsafe { plan.fast_pass_avx512(&p, &g, &mut got) };
            proptest::prop_assert_eq!(a, b);
            proptest::prop_assert_eq!(&want, &got);
            let mut generic = alloc::vec![0i32; p.len()];
            let fits = plan.updated_generic(&p, &g, &mut generic);
            // SAFETY: detected.
            proptest::prop_assert_eq!(fits, unsafe { plan.updated_avx512(&p, &g, &mut got) });
            if fits {
                proptest::prop_assert_eq!(&generic, &got);
            }
        }
    }
}
