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
        // One pass counting each channel's 256 pixel values; both sums follow from the counts
        // exactly (Σ x = Σ_v n_v·(v − 128), Σ |x − mean| = Σ_v n_v·|v − 128 − mean|) — the same
        // integers as summing pixel by pixel, twice over the images.
        let hist = histograms(images, channels, plane);
        let centred = |v: usize| v as i64 - 128;
        let mean: Vec<i64> = hist
            .iter()
            .map(|h| {
                let sum: i64 = h.iter().enumerate().map(|(v, &n)| n * centred(v)).sum();
                tdiv(sum, count)
            })
            .collect();
        let dev: Vec<i64> = hist
            .iter()
            .zip(&mean)
            .map(|(h, &m)| {
                h.iter()
                    .enumerate()
                    .map(|(v, &n)| n * (centred(v) - m).abs())
                    .sum()
            })
            .collect();
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
        for (mut orow, irow) in out.rows_mut().into_iter().zip(images.rows()) {
            let orow = orow.as_slice_mut().expect("a row of a fresh array");
            let irow = contiguous(&irow);
            for ((o, i), table) in orow
                .chunks_exact_mut(plane)
                .zip(irow.chunks_exact(plane))
                .zip(&tables)
            {
                for (o, &p) in o.iter_mut().zip(i) {
                    *o = table[usize::from(p)];
                }
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

/// How often each pixel value occurs in each channel's planes. Four partial counts per channel,
/// one per pixel position modulo 4: runs of equal pixels (a dark background) would otherwise
/// make every increment wait for the previous one's store.
fn histograms(images: ArrayView2<'_, u8>, channels: usize, plane: usize) -> Vec<[i64; 256]> {
    let mut parts = vec![[[0u32; 256]; 4]; channels];
    let mut hist = vec![[0i64; 256]; channels];
    // Rows per flush of the `u32` counts into `hist` (2³² / plane values per row at most).
    let flush = (u32::MAX as usize / plane.max(1)).max(1);
    for (r, row) in images.rows().into_iter().enumerate() {
        for (part, pixels) in parts.iter_mut().zip(contiguous(&row).chunks_exact(plane)) {
            let mut quads = pixels.chunks_exact(4);
            for q in &mut quads {
                for (h, &p) in part.iter_mut().zip(q) {
                    h[usize::from(p)] += 1;
                }
            }
            for &p in quads.remainder() {
                part[0][usize::from(p)] += 1;
            }
        }
        if (r + 1) % flush == 0 || r + 1 == images.nrows() {
            for (h, part) in hist.iter_mut().zip(parts.iter_mut()) {
                for (v, total) in h.iter_mut().enumerate() {
                    *total += part.iter().map(|p| i64::from(p[v])).sum::<i64>();
                }
                *part = [[0; 256]; 4];
            }
        }
    }
    hist
}

/// A row's pixels as a slice (copied only if the row is not contiguous).
fn contiguous<'a>(row: &'a ndarray::ArrayView1<'_, u8>) -> alloc::borrow::Cow<'a, [u8]> {
    match row.as_slice() {
        Some(s) => alloc::borrow::Cow::Borrowed(s),
        None => alloc::borrow::Cow::Owned(row.iter().copied().collect()),
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

    /// The statistics and the normalised pixels are those of the definition, summed pixel
    /// by pixel (algorithm.md §2): one and three channels, contiguous and strided views.
    #[test]
    fn histogram_statistics_are_the_pixelwise_sums() {
        let mut r = crate::rng::Pcg32::new(7, 1);
        for (channels, plane, rows) in [(1, 784, 50), (3, 64, 33)] {
            let wide = Array2::from_shape_fn((rows, 2 * channels * plane), |_| r.below(256) as u8);
            let contiguous_half = wide.slice(ndarray::s![.., ..channels * plane]);
            let strided = wide.slice(ndarray::s![.., ..;2]);
            for images in [contiguous_half, strided] {
                let count = (rows * plane) as i64;
                let x = |i: usize, j: usize| i64::from(images[[i, j]]) - 128;
                let mean: Vec<i64> = (0..channels)
                    .map(|c| {
                        let s = (0..rows)
                            .flat_map(|i| (c * plane..(c + 1) * plane).map(move |j| (i, j)))
                            .map(|(i, j)| x(i, j))
                            .sum();
                        tdiv(s, count)
                    })
                    .collect();
                let mad: Vec<i64> = (0..channels)
                    .map(|c| {
                        let s = (0..rows)
                            .flat_map(|i| (c * plane..(c + 1) * plane).map(move |j| (i, j)))
                            .map(|(i, j)| (x(i, j) - mean[c]).abs())
                            .sum();
                        tdiv(s, count)
                    })
                    .collect();
                let n = Normalization::fit(images, channels).unwrap();
                assert_eq!((&n.mean, &n.mad), (&mean, &mad), "{channels} channels");
                let out = n.apply(images).unwrap();
                for ((i, j), &o) in out.indexed_iter() {
                    assert_eq!(
                        o,
                        n.normalize_pixel(j / plane, images[[i, j]]),
                        "({i}, {j})"
                    );
                }
            }
        }
    }
}
