//! Per-channel integer normalisation of algorithm.md §2: statistics fitted on the training images
//! and applied to every image, `clamp(tdiv((x − mean)·51, MAD), −128, 127)`.

use crate::arith::tdiv;
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// Per-channel statistics of the centred training pixels (`x = pixel − 128`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalization {
    /// `tdiv(Σ x, count)` per channel.
    pub mean: Vec<i64>,
    /// `tdiv(Σ |x − mean|, count)` per channel (mean absolute deviation).
    pub mad: Vec<i64>,
}

impl Normalization {
    /// Fit on `u8` images stored as `N × (C·H·W)` rows with `channels` planes per row.
    pub fn fit(images: ArrayView2<'_, u8>, channels: usize) -> Result<Self> {
        let plane = plane_len(images.ncols(), channels)?;
        if images.nrows() == 0 {
            return Err(Error::shape("cannot fit normalisation on zero images"));
        }
        let count = (images.nrows() * plane) as i64;
        let mut sum = vec![0i64; channels];
        for row in images.rows() {
            for (c, s) in sum.iter_mut().enumerate() {
                for i in c * plane..(c + 1) * plane {
                    *s += i64::from(row[i]) - 128;
                }
            }
        }
        let mean: Vec<i64> = sum.iter().map(|&s| tdiv(s, count)).collect();
        let mut dev = vec![0i64; channels];
        for row in images.rows() {
            for (c, d) in dev.iter_mut().enumerate() {
                for i in c * plane..(c + 1) * plane {
                    *d += (i64::from(row[i]) - 128 - mean[c]).abs();
                }
            }
        }
        let mad: Vec<i64> = dev.iter().map(|&s| tdiv(s, count)).collect();
        let n = Normalization { mean, mad };
        n.validate()?;
        Ok(n)
    }

    /// Check that the statistics are usable (one entry per channel, MAD > 0, values in range).
    pub fn validate(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.mad.len() {
            return Err(Error::config(format!(
                "normalisation needs one mean and one MAD per channel (got {} and {})",
                self.mean.len(),
                self.mad.len()
            )));
        }
        for (c, (&m, &d)) in self.mean.iter().zip(&self.mad).enumerate() {
            if !(-128..=127).contains(&m) || !(1..=255).contains(&d) {
                return Err(Error::config(format!(
                    "channel {c}: mean {m} must be in [-128, 127] and MAD {d} in [1, 255] \
                     (constant images have MAD 0 and cannot be normalised)"
                )));
            }
        }
        Ok(())
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// `clamp(tdiv((x − mean_c)·51, mad_c), −128, 127)` for every pixel.
    pub fn apply(&self, images: ArrayView2<'_, u8>) -> Result<Array2<i8>> {
        let plane = plane_len(images.ncols(), self.channels())?;
        // 256 possible pixel values per channel: one table per channel.
        let tables: Vec<[i8; 256]> = (0..self.channels())
            .map(|c| core::array::from_fn(|p| self.normalize_pixel(c, p as u8)))
            .collect();
        let mut out = Array2::<i8>::zeros(images.raw_dim());
        for (orow, irow) in out.rows_mut().into_iter().zip(images.rows()) {
            for (i, (o, &p)) in orow.into_iter().zip(irow.iter()).enumerate() {
                *o = tables[i / plane][usize::from(p)];
            }
        }
        Ok(out)
    }

    /// The normalised value of one pixel of channel `c` (algorithm.md §2).
    pub fn normalize_pixel(&self, c: usize, p: u8) -> i8 {
        let x = i64::from(p) - 128;
        tdiv((x - self.mean[c]) * 51, self.mad[c]).clamp(-128, 127) as i8
    }
}

fn plane_len(cols: usize, channels: usize) -> Result<usize> {
    if channels == 0 || cols == 0 || cols % channels != 0 {
        return Err(Error::shape(format!(
            "{cols} values per image cannot be split into {channels} channel planes"
        )));
    }
    Ok(cols / channels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn normalisation_by_hand() {
        // One channel, pixels 128±: x = [-8, 0, 8, 16] → mean tdiv(16, 4) = 4,
        // |x−4| = [12, 4, 4, 12] → MAD 8; x_norm = tdiv((x−4)·51, 8) = [-76, -25, 25, 76].
        let img = array![[120u8, 128, 136, 144]];
        let n = Normalization::fit(img.view(), 1).unwrap();
        assert_eq!(n.mean, vec![4]);
        assert_eq!(n.mad, vec![8]);
        assert_eq!(n.apply(img.view()).unwrap(), array![[-76i8, -25, 25, 76]]);
        // Truncation toward zero of negatives and clamping at -128 / 127.
        let n2 = Normalization {
            mean: vec![0],
            mad: vec![1],
        };
        assert_eq!(
            n2.apply(array![[0u8, 255, 127]].view()).unwrap(),
            array![[-128i8, 127, -51]]
        );
        assert!(Normalization::fit(array![[7u8, 7]].view(), 1).is_err());
    }
}
