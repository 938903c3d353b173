//! The classifier's targets and error signal (algorithm.md §2, §4.1, §4.4): one-hot targets, the
//! output error `ŷ − y`, the loss `Σ (y − ŷ)²` with the number of correct rows, and arg-max
//! prediction. Every output layer and every learning head uses these.

use crate::error::{Error, Result};
use crate::optim::Compat;
use alloc::format;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};

/// Value of the true class in a one-hot target (algorithm.md §2).
pub const ONE_HOT: i8 = 32;

/// One-hot targets: [`ONE_HOT`] at the label, 0 elsewhere. Labels must be `< classes`.
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

/// The error `ŷ − y` of a classifier output (algorithm.md §4.1), exact or wrapped to `i8`
/// (algorithm.md §12).
pub fn output_error(pred: &Array2<i8>, target: &Array2<i8>, compat: Compat) -> Array2<i32> {
    let mut d = Array2::<i32>::zeros(pred.raw_dim());
    ndarray::Zip::from(&mut d)
        .and(pred)
        .and(target)
        .for_each(|d, &p, &t| {
            let e = i32::from(p) - i32::from(t);
            *d = match compat {
                Compat::Exact => e,
                // The original stored the difference in an int8 (two's-complement wrap).
                Compat::Reference => i32::from(e as i8),
            };
        });
    d
}

/// Loss `Σ (y − ŷ)²` and the number of rows whose arg-max (first on ties) is the label.
pub fn loss_and_correct(pred: &Array2<i8>, target: &Array2<i8>, labels: &[usize]) -> (i64, u64) {
    let loss = pred
        .iter()
        .zip(target.iter())
        .map(|(&p, &t)| {
            let d = i64::from(p) - i64::from(t);
            d * d
        })
        .sum();
    (loss, count_equal(&argmax_rows(pred), labels))
}

/// Index of the largest value in each row, first on ties (algorithm.md §4.4).
pub fn argmax_rows<T: Copy + Ord>(a: &Array2<T>) -> Vec<usize> {
    a.rows()
        .into_iter()
        .map(|r| {
            let mut best = 0;
            for (i, v) in r.iter().enumerate() {
                if *v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// The number of rows of `x` whose prediction equals the label, predicting `chunk` rows at a
/// time (bounded memory for large evaluation sets).
pub fn count_correct_chunked<'a>(
    x: ArrayView2<'a, i8>,
    labels: &[usize],
    chunk: usize,
    predict: impl Fn(ArrayView2<'a, i8>) -> Result<Vec<usize>>,
) -> Result<u64> {
    if labels.len() != x.nrows() {
        return Err(Error::shape(format!(
            "{} samples but {} labels",
            x.nrows(),
            labels.len()
        )));
    }
    let chunk = chunk.max(1);
    let mut correct = 0u64;
    for start in (0..x.nrows()).step_by(chunk) {
        let end = (start + chunk).min(x.nrows());
        let p = predict(x.slice_move(ndarray::s![start..end, ..]))?;
        correct += count_equal(&p, &labels[start..end]);
    }
    Ok(correct)
}

/// Positions where the prediction is the label.
fn count_equal(predicted: &[usize], labels: &[usize]) -> u64 {
    predicted.iter().zip(labels).filter(|(a, b)| a == b).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn one_hot_and_bad_labels() {
        assert_eq!(
            one_hot(&[2, 0], 3).unwrap(),
            array![[0i8, 0, 32], [32, 0, 0]]
        );
        assert!(one_hot(&[3], 3).is_err());
    }
}
