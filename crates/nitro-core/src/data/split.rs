//! Holding a validation set out of a training set, reproducibly, and the fingerprint that tells
//! whether a resumed run is given the data it was started with.

use super::dataset::Dataset;
use crate::error::{Error, Result};
use crate::names::VALIDATION_STREAM;
use crate::rng::Pcg32;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{ArrayView2, Axis};

/// A seeded validation split: `permille`/1000 of the rows (rounded down) are held out.
///
/// The rows held out are the first of a PCG32 permutation of `0..n` on the validation stream
/// of `seed`; both parts keep the order the rows had in the full set. The same seed and the
/// same set always give the same split, on any machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Share of the rows held out, in thousandths (1..=999).
    pub permille: u32,
    /// Seed of the permutation that picks them.
    pub seed: u64,
}

impl Split {
    /// The presets' split: a fixed 10 % on seed 0.
    pub const PRESET: Split = Split {
        permille: 100,
        seed: 0,
    };

    /// Check the share.
    pub fn validate(&self) -> Result<()> {
        if self.permille == 0 || self.permille >= 1000 {
            return Err(Error::config(format!(
                "the validation share must be between 1 and 999 thousandths (0.001 to 0.999), \
                 got {}",
                self.permille
            )));
        }
        Ok(())
    }

    /// Indices `(train, validation)` of a set of `n` rows, each ascending.
    pub fn indices(&self, n: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        self.validate()?;
        let held = (n as u64 * u64::from(self.permille) / 1000) as usize;
        if held == 0 || held == n {
            return Err(Error::config(format!(
                "a validation share of {}/1000 of {n} rows leaves an empty part; use more rows \
                 or another share",
                self.permille
            )));
        }
        let mut order: Vec<usize> = (0..n).collect();
        Pcg32::new(self.seed, VALIDATION_STREAM).shuffle(&mut order);
        let mut val = order[..held].to_vec();
        let mut train = order[held..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok((train, val))
    }

    /// The two parts `(train, validation)` of `data`.
    pub fn apply(&self, data: &Dataset) -> Result<(Dataset, Dataset)> {
        let (train, val) = self.indices(data.len())?;
        Ok((data.select(&train), data.select(&val)))
    }
}

impl Dataset {
    /// The rows `idx`, in that order (each index must be in range).
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), idx),
            y: idx.iter().map(|&i| self.y[i]).collect(),
            chw: self.chw,
        }
    }

    /// A 64-bit digest of the geometry, the pixels and the labels, FNV-1a style over 64-bit
    /// little-endian words (the pixels eight at a time, the last word zero-padded): equal sets
    /// give equal fingerprints, and any single changed pixel, label or size always changes it
    /// (each step `h ← (h ⊕ w)·P` with an odd `P` is a bijection of `h ⊕ w`); swapped rows
    /// change it with near certainty.
    pub fn fingerprint(&self) -> u64 {
        Dataset::fingerprint_of(self.x.view(), &self.y, self.chw)
    }

    /// [`Dataset::fingerprint`] of the set `x`, `y`, `chw` would make, without making it: a
    /// caller copying the pixels into a set can compute it from the source meanwhile.
    pub fn fingerprint_of(x: ArrayView2<'_, i8>, y: &[usize], chw: (usize, usize, usize)) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        // Defined modulo 2^64: the wrapping multiply is the algorithm.
        let eat = |h: u64, w: u64| (h ^ w).wrapping_mul(PRIME);
        let word = |c: &[i8]| {
            let mut b = [0u8; 8];
            for (d, &v) in b.iter_mut().zip(c) {
                *d = v as u8;
            }
            u64::from_le_bytes(b)
        };
        let (c, hh, w) = chw;
        let mut h = [y.len(), c, hh, w]
            .iter()
            .fold(OFFSET, |h, &v| eat(h, v as u64));
        let x = x.as_standard_layout();
        let px = x.as_slice().expect("standard layout");
        let mut words = px.chunks_exact(8);
        for c in &mut words {
            h = eat(h, word(c));
        }
        if !words.remainder().is_empty() {
            h = eat(h, word(words.remainder()));
        }
        y.iter().fold(h, |h, &y| eat(h, y as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn data(n: usize) -> Dataset {
        let x = Array2::from_shape_fn((n, 4), |(i, j)| (i * 4 + j) as i8);
        Dataset::new(x, (0..n).map(|i| i % 3).collect(), (1, 2, 2)).unwrap()
    }

    #[test]
    fn split_is_disjoint_complete_and_reproducible() {
        let s = Split {
            permille: 100,
            seed: 5,
        };
        let (t, v) = s.indices(1000).unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(t.len(), 900);
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(s.indices(1000).unwrap(), (t.clone(), v.clone()));
        // Another seed holds out other rows; the held-out rows are spread, not a block.
        let (_, v2) = Split { seed: 6, ..s }.indices(1000).unwrap();
        assert_ne!(v, v2);
        assert!(v[0] < 100 && v[99] > 900);
    }

    #[test]
    fn split_rows_follow_their_indices() {
        let d = data(20);
        let (tr, va) = Split {
            permille: 250,
            seed: 1,
        }
        .apply(&d)
        .unwrap();
        let (ti, vi) = Split {
            permille: 250,
            seed: 1,
        }
        .indices(20)
        .unwrap();
        assert_eq!(va.len(), 5);
        for (row, &i) in vi.iter().enumerate() {
            assert_eq!(va.x.row(row), d.x.row(i));
            assert_eq!(va.y[row], d.y[i]);
        }
        assert_eq!(tr.x.row(0), d.x.row(ti[0]));
    }

    #[test]
    fn bad_shares_are_config_errors() {
        for permille in [0, 1000, 5000] {
            let e = Split { permille, seed: 0 }.indices(100).unwrap_err();
            assert!(e.to_string().contains("validation share"), "{e}");
        }
        // 1/1000 of 10 rows is no row.
        assert!(Split {
            permille: 1,
            seed: 0
        }
        .indices(10)
        .is_err());
    }

    #[test]
    fn fingerprint_sees_pixels_labels_and_order() {
        let d = data(10);
        let f = d.fingerprint();
        assert_eq!(f, data(10).fingerprint());
        let mut e = d.clone();
        e.x[[3, 1]] ^= 1;
        assert_ne!(e.fingerprint(), f);
        let mut e = d.clone();
        e.y[9] = 2;
        assert_ne!(e.fingerprint(), f);
        let swapped = d.select(&[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_ne!(swapped.fingerprint(), f);
        assert_ne!(d.head(9).fingerprint(), f);
    }
}
