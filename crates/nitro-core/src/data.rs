//! Data preparation of SPEC §2: per-channel integer normalisation, one-hot targets, per-sample
//! augmentation, seeded batching. IDX file readers live in [`idx`] (std only).

use crate::arith::tdiv;
use crate::error::{Error, Result};
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

#[cfg(feature = "std")]
pub mod idx;

/// Value of the true class in a one-hot target (SPEC §2).
pub const ONE_HOT: i8 = 32;

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

    /// The normalised value of one pixel of channel `c` (SPEC §2).
    pub fn normalize_pixel(&self, c: usize, p: u8) -> i8 {
        let x = i64::from(p) - 128;
        tdiv((x - self.mean[c]) * 51, self.mad[c]).clamp(-128, 127) as i8
    }
}

fn plane_len(cols: usize, channels: usize) -> Result<usize> {
    if channels == 0 || cols == 0 || !cols.is_multiple_of(channels) {
        return Err(Error::shape(format!(
            "{cols} values per image cannot be split into {channels} channel planes"
        )));
    }
    Ok(cols / channels)
}

/// One-hot targets: 32 at the label, 0 elsewhere. Labels must be `< classes`.
pub fn one_hot(labels: &[usize], classes: usize) -> Result<Array2<i8>> {
    let mut y = Array2::<i8>::zeros((labels.len(), classes));
    for (i, &l) in labels.iter().enumerate() {
        if l >= classes {
            return Err(Error::shape(format!(
                "label {l} at position {i} is not a class index below {classes}"
            )));
        }
        y[[i, l]] = ONE_HOT;
    }
    Ok(y)
}

/// Per-sample augmentation (SPEC §2): random crop after padding by `pad` (pad value = the
/// image's minimum) and, when `flip` is set, random horizontal flip; each with probability ½.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Padding before the crop (MNIST/Fashion-MNIST 2, CIFAR-10 4).
    pub pad: usize,
    /// Whether horizontal flips are allowed (not for MNIST).
    pub flip: bool,
}

impl Augment {
    /// Augment one image `C×H×W` (flattened, row-major) in place.
    pub fn apply(&self, img: &mut [i8], c: usize, h: usize, w: usize, rng: &mut Pcg32) {
        debug_assert_eq!(img.len(), c * h * w);
        if self.pad > 0 && rng.coin() {
            let p = self.pad;
            let span = (2 * p + 1) as u32;
            let (dy, dx) = (rng.below(span) as usize, rng.below(span) as usize);
            let fill = img.iter().copied().min().unwrap_or(0);
            let src = img.to_vec();
            // Output (i, j) reads padded (i+dy, j+dx) = source (i+dy−p, j+dx−p).
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        let (si, sj) = ((i + dy).wrapping_sub(p), (j + dx).wrapping_sub(p));
                        img[(ch * h + i) * w + j] = if si < h && sj < w {
                            src[(ch * h + si) * w + sj]
                        } else {
                            fill
                        };
                    }
                }
            }
        }
        if self.flip && rng.coin() {
            for row in img.chunks_mut(w) {
                row.reverse();
            }
        }
    }
}

/// A labelled set of normalised images stored as rows `N × (C·H·W)`.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Normalised pixels, one image per row.
    pub x: Array2<i8>,
    /// Class indices.
    pub y: Vec<usize>,
    /// Image geometry `(C, H, W)`.
    pub chw: (usize, usize, usize),
}

impl Dataset {
    /// Validate and build.
    pub fn new(x: Array2<i8>, y: Vec<usize>, chw: (usize, usize, usize)) -> Result<Self> {
        if x.nrows() != y.len() {
            return Err(Error::shape(format!(
                "{} images but {} labels",
                x.nrows(),
                y.len()
            )));
        }
        if chw.0 * chw.1 * chw.2 != x.ncols() {
            return Err(Error::shape(format!(
                "image geometry {chw:?} does not match {} values per image",
                x.ncols()
            )));
        }
        Ok(Dataset { x, y, chw })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The first `n` images (or all).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            x: self.x.slice(ndarray::s![..n, ..]).to_owned(),
            y: self.y[..n].to_vec(),
            chw: self.chw,
        }
    }

    /// Gather rows `idx` into a batch (copy), optionally augmenting each sample.
    pub fn batch(
        &self,
        idx: &[usize],
        augment: Option<&Augment>,
        rng: &mut Pcg32,
    ) -> (Array2<i8>, Vec<usize>) {
        let mut x = Array2::<i8>::zeros((idx.len(), self.x.ncols()));
        let mut y = Vec::with_capacity(idx.len());
        let (c, h, w) = self.chw;
        for (mut row, &i) in x.rows_mut().into_iter().zip(idx) {
            let src = self.x.row(i);
            match (row.as_slice_mut(), src.as_slice()) {
                (Some(d), Some(s)) => d.copy_from_slice(s),
                _ => row.assign(&src),
            }
            if let Some(a) = augment {
                a.apply(
                    row.as_slice_mut().expect("row of owned array"),
                    c,
                    h,
                    w,
                    rng,
                );
            }
            y.push(self.y[i]);
        }
        (x, y)
    }
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

    #[test]
    fn one_hot_and_bad_labels() {
        assert_eq!(
            one_hot(&[2, 0], 3).unwrap(),
            array![[0i8, 0, 32], [32, 0, 0]]
        );
        assert!(one_hot(&[3], 3).is_err());
    }

    #[test]
    fn augmentation_keeps_pixels_and_flips() {
        let aug = Augment { pad: 0, flip: true };
        let mut flipped = false;
        let mut r = Pcg32::new(0, 0);
        for _ in 0..20 {
            let mut img = [1i8, 2, 3, 4, 5, 6];
            aug.apply(&mut img, 1, 2, 3, &mut r);
            assert!(img == [1, 2, 3, 4, 5, 6] || img == [3, 2, 1, 6, 5, 4]);
            flipped |= img[0] == 3;
        }
        assert!(flipped);
        // Crop: every output pixel is either a source pixel at a consistent shift or the min.
        let crop = Augment {
            pad: 1,
            flip: false,
        };
        for _ in 0..20 {
            let mut img = [1i8, 2, 3, 4, 5, 6, 7, 8, 9];
            aug_check(&crop, &mut img, &mut r);
        }
    }

    fn aug_check(a: &Augment, img: &mut [i8; 9], r: &mut Pcg32) {
        let src = *img;
        a.apply(img, 1, 3, 3, r);
        let ok = (-1i32..=1).any(|dy| {
            (-1i32..=1).any(|dx| {
                (0..3).all(|i: i32| {
                    (0..3).all(|j: i32| {
                        let (si, sj) = (i + dy, j + dx);
                        let want = if (0..3).contains(&si) && (0..3).contains(&sj) {
                            src[(si * 3 + sj) as usize]
                        } else {
                            1
                        };
                        img[(i * 3 + j) as usize] == want
                    })
                })
            })
        });
        assert!(ok, "{img:?}");
    }
}
