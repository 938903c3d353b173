//! What the training examples (`train.rs`, `train_cnn.rs`) print alike.

use nitro_core::Fraction;

/// A fraction as a percentage with two decimals, e.g. `97.31%`.
pub fn pct(f: Fraction) -> String {
    let bp = f.basis_points();
    format!("{}.{:02}%", bp / 100, bp % 100)
}

/// The closing lines of a run: the last and the best test accuracy.
pub fn print_accuracy(last: Fraction, best: Fraction) {
    println!(
        "test_accuracy={}/{} ({})",
        last.correct,
        last.total,
        pct(last)
    );
    println!(
        "best_test_accuracy={}/{} ({})",
        best.correct,
        best.total,
        pct(best)
    );
}
