//! A labelled set of normalised images and its batches (algorithm.md §2).

use super::augment::Augment;
use crate::error::{Error, Result};
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec::Vec;
use ndarray::Array2;

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
        let d = Dataset { x, y, chw };
        d.validate()?;
        Ok(d)
    }

    /// The checks of [`Dataset::new`], for a set whose (public) fields were set directly: one
    /// label per image, and `C·H·W` values per image.
    pub fn validate(&self) -> Result<()> {
        if self.x.nrows() != self.y.len() {
            return Err(Error::shape(format!(
                "{} images but {} labels",
                self.x.nrows(),
                self.y.len()
            )));
        }
        let (c, h, w) = self.chw;
        if c.checked_mul(h).and_then(|v| v.checked_mul(w)) != Some(self.x.ncols()) {
            return Err(Error::shape(format!(
                "image geometry {:?} does not match {} values per image",
                self.chw,
                self.x.ncols()
            )));
        }
        Ok(())
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
