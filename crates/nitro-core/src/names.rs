//! Layer names and seed streams, spelled once. The names are the keys of a saved model's
//! tensors (algorithm.md §8) and follow the original implementation; every layer draws its initial
//! weights (algorithm.md §6) or dropout masks from its own stream of the model's seed, so the
//! streams are part of what makes a seed reproduce a model.
//!
//! A model's layers are numbered by their position `i` in the stack: the feature extractor's
//! entries first (CNN), then the classifier's blocks, then the output layer. Block `i` of a
//! classifier is `linear_encoder_{i:02}` with head `linear_pred_{i:02}`; conv block `i` is
//! `conv_encoder_{i:02}` with head `linear_pred_{i:02}`; the output layer after `n` entries is
//! `linear_{n:02}`. A bias is stored beside its weight as `<name>.bias`.

use alloc::format;
use alloc::string::String;

/// The forward layer of linear block `i`.
pub fn linear_encoder(i: usize) -> String {
    format!("linear_encoder_{i:02}")
}

/// What every learning head's name starts with ([`linear_pred`]).
const LINEAR_PRED: &str = "linear_pred_";

/// The learning head's linear layer of block `i` (linear or conv).
pub fn linear_pred(i: usize) -> String {
    format!("{LINEAR_PRED}{i:02}")
}

/// Whether the layer `name` is a learning head's linear layer (a [`linear_pred`] name).
pub fn is_linear_pred(name: &str) -> bool {
    name.starts_with(LINEAR_PRED)
}

/// The convolution of conv block `i`.
pub fn conv_encoder(i: usize) -> String {
    format!("conv_encoder_{i:02}")
}

/// The output layer after `n` entries (blocks, pools, dropouts).
pub fn output(n: usize) -> String {
    format!("linear_{n:02}")
}

/// What follows a layer's name in the name of its bias.
pub const BIAS_SUFFIX: &str = ".bias";

/// The bias tensor of layer `layer`.
pub fn bias(layer: &str) -> String {
    format!("{layer}{BIAS_SUFFIX}")
}

/// The tensor a checkpoint file adds to the model's tensors: the current order of the training
/// rows (`io::Checkpoint`). A plain model load accepts it beside the architecture's tensors.
pub const CHECKPOINT_ORDER: &str = "checkpoint.order";

/// The initialisation stream of the forward layer (linear or conv) of entry `i`.
pub const fn encoder_stream(i: usize) -> u64 {
    i as u64
}

/// The initialisation stream of the learning head of entry `i`.
pub const fn head_stream(i: usize) -> u64 {
    1000 + i as u64
}

/// The initialisation stream of the output layer.
pub const OUTPUT_STREAM: u64 = 2000;

/// The mask stream of the dropout at entry `i` (after classifier block `i`, or feature `i`).
pub const fn dropout_stream(i: usize) -> u64 {
    3000 + i as u64
}

/// The stream that shuffles the training set each epoch (independent of the model's streams).
pub const SHUFFLE_STREAM: u64 = 0x5_0000;

/// The stream of per-sample augmentation (algorithm.md §2).
pub const AUGMENT_STREAM: u64 = 0x6_0000;

/// The stream that picks the validation rows held out of a training set.
pub const VALIDATION_STREAM: u64 = 0x7_0000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_original() {
        assert_eq!(linear_encoder(4), "linear_encoder_04");
        assert_eq!(linear_pred(0), "linear_pred_00");
        assert_eq!(conv_encoder(12), "conv_encoder_12");
        assert_eq!(output(3), "linear_03");
        assert_eq!(bias("linear_03"), "linear_03.bias");
        assert!(is_linear_pred(&linear_pred(7)));
        assert!(!is_linear_pred(&linear_encoder(7)) && !is_linear_pred(&output(7)));
    }
}
