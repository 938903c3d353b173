//! Integer dropout (algorithm.md §3.6): rates as integer percentages, rescale factors ×1000 from
//! the table.

use super::saved::no_forward;
use crate::arith::tdiv;
use crate::data::Share;
use crate::error::{Error, Result};
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array, Dimension};

/// `floor(1000 / (1 − rate))` for rate = 5 %, 10 %, …, 95 %.
const FACTORS: [i64; 19] = [
    1052, 1111, 1176, 1250, 1333, 1428, 1538, 1666, 1818, 2000, 2222, 2500, 2857, 3333, 4000, 5000,
    6666, 10000, 20000,
];

/// Dropout with a rate given as an integer percentage.
#[derive(Clone, Debug)]
pub struct Dropout {
    /// Rate in percent (5..=95, step 5).
    pub rate_pct: u32,
    factor: i64,
    rng: Pcg32,
    mask: Option<Vec<bool>>,
}

impl Dropout {
    /// Dropout at `rate_pct` percent with its own seeded stream.
    pub fn new(rate_pct: u32, seed: u64, stream: u64) -> Result<Self> {
        if rate_pct == 0 || rate_pct > 95 || rate_pct % 5 != 0 {
            return Err(Error::config(format!(
                "dropout rate must be a multiple of 5 between 5 and 95 percent, got {rate_pct}"
            )));
        }
        Ok(Dropout {
            rate_pct,
            factor: FACTORS[(rate_pct / 5 - 1) as usize],
            rng: Pcg32::new(seed, stream),
            mask: None,
        })
    }

    /// The mask generator (its state is part of a resumable run).
    pub fn rng(&self) -> &Pcg32 {
        &self.rng
    }

    /// Replace the mask generator (resuming a run).
    pub fn set_rng(&mut self, rng: Pcg32) {
        self.rng = rng;
    }

    /// The rescale factor ×1000.
    pub fn factor(&self) -> i64 {
        self.factor
    }

    /// Training: keep each element when a uniform draw in `[0,100)` is `≥ rate`, rescale by
    /// `factor/1000` (truncating). Evaluation: identity. Output as `i16`.
    pub fn forward<D: Dimension>(&mut self, x: &Array<i8, D>, train: bool) -> Array<i16, D> {
        let rows = x.shape().first().copied().unwrap_or(0);
        self.forward_share(x, train, Share::whole(rows))
    }

    /// [`Dropout::forward`] of the rows `share` of a batch (the first axis is the batch): the
    /// masks of the *whole* batch are drawn, in the same order as for the whole batch, and only
    /// this share's are used. So every sample gets the mask it gets when the batch is not
    /// split, whoever handles it, and the generator ends where it ends for the whole batch —
    /// the same on every worker. Drawing the other rows' masks costs one generator step per
    /// element, next to the layer's multiply-adds nothing.
    ///
    /// `share` must describe `x`'s rows (`share.rows == x.shape()[0]`); the models check it.
    pub fn forward_share<D: Dimension>(
        &mut self,
        x: &Array<i8, D>,
        train: bool,
        share: Share,
    ) -> Array<i16, D> {
        if !train {
            self.mask = None;
            return x.mapv(i16::from);
        }
        let per_row = match x.shape().first() {
            Some(&n) if n > 0 => x.len() / n,
            _ => 0,
        };
        let skip = |rng: &mut Pcg32, rows: usize| {
            for _ in 0..rows * per_row {
                rng.below(100);
            }
        };
        skip(&mut self.rng, share.start);
        let mut mask = Vec::with_capacity(x.len());
        let mut y = Array::<i16, D>::zeros(x.raw_dim());
        for (o, &v) in y.iter_mut().zip(x.iter()) {
            let keep = self.rng.below(100) >= self.rate_pct;
            mask.push(keep);
            // |v| ≤ 128 and factor ≤ 20000: |v·factor/1000| ≤ 2560 fits i16.
            *o = if keep {
                tdiv(i64::from(v) * self.factor, 1000) as i16
            } else {
                0
            };
        }
        skip(&mut self.rng, share.after());
        self.mask = Some(mask);
        y
    }

    /// Backward with the same mask and factor; errors leave `i32` → [`Error::Overflow`].
    pub fn backward<D: Dimension>(&mut self, delta: Array<i32, D>) -> Result<Array<i32, D>> {
        let mask = self.mask.take().ok_or_else(|| no_forward("dropout"))?;
        let mut out = delta;
        for (d, &k) in out.iter_mut().zip(mask.iter()) {
            let v = if k {
                tdiv(i64::from(*d) * self.factor, 1000)
            } else {
                0
            };
            *d = i32::try_from(v)
                .map_err(|_| Error::overflow("dropout", "backward", format!("{v} exceeds i32")))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn factors_match_spec_table() {
        for (i, f) in FACTORS.iter().enumerate() {
            let rate = (i as i64 + 1) * 5;
            // floor(1000 / (1 - rate/100)) = floor(100000 / (100 - rate))
            assert_eq!(*f, 100_000 / (100 - rate), "rate {rate}");
        }
        assert!(Dropout::new(0, 0, 0).is_err());
        assert!(Dropout::new(12, 0, 0).is_err());
        assert!(Dropout::new(100, 0, 0).is_err());
    }

    #[test]
    fn forward_backward_share_mask() {
        let mut d = Dropout::new(50, 1, 2).unwrap();
        let x = Array2::from_elem((4, 50), 100i8);
        let y = d.forward(&x, true);
        let kept = y.iter().filter(|&&v| v == 200).count();
        let dropped = y.iter().filter(|&&v| v == 0).count();
        assert_eq!(kept + dropped, 200);
        assert!(kept > 60 && kept < 140, "{kept}");
        let back = d.backward(Array2::from_elem((4, 50), -3i32)).unwrap();
        for (b, yv) in back.iter().zip(y.iter()) {
            assert_eq!(*b, if *yv == 0 { 0 } else { -6 });
        }
        assert_eq!(d.forward(&x, false), x.mapv(i16::from));
    }
}
