//! The README's Rust example: train MLP2 on Fashion-MNIST with checkpoints, then resume.
//!
//! ```text
//! cargo run --release -p nitro-core --example quickstart
//! ```

use nitro_core::data::idx::load_mnist_like;
use nitro_core::io::Checkpoint;
use nitro_core::train::{fit, fit_from, Control, Sets};
use nitro_core::{Dataset, Mlp, Normalization, Preset, Split, TrainConfig};

fn main() -> Result<(), nitro_core::Error> {
    // README: begin
    let raw = load_mnist_like("/usr/share/datasets/fashion-mnist".as_ref())?;
    let norm = Normalization::fit(raw.train_x.view(), 1)?; // docs/algorithm.md §2
    let train = Dataset::new(norm.apply(raw.train_x.view())?, raw.train_y, (1, 28, 28))?;
    let test = Dataset::new(norm.apply(raw.test_x.view())?, raw.test_y, (1, 28, 28))?;

    let spec = Preset::Mlp2.spec("fashion-mnist"); // the paper's settings (docs/algorithm.md §7)
    let mut model = Mlp::new(spec.config)?;
    model.normalization = Some(norm); // saved with the model
    let cfg = TrainConfig {
        epochs: 2,
        hyper: spec.hyper,
        validation: Some(Split::PRESET), // 10 % held out of the training set, seed 0
        ..TrainConfig::default()
    };
    let sets = Sets::new(&train, Some(&test));
    // A checkpoint after every epoch: the model and everything the run's future depends on.
    let history = fit(
        &mut model,
        &sets,
        &cfg,
        &mut |_| Control::Continue,
        &mut |end| {
            Checkpoint::save_file("mlp2.ckpt".as_ref(), end.model, end.state)?;
            Ok(Control::Continue)
        },
    )?;
    let last = history.epochs.last().expect("two epochs");
    println!("epoch 2: val {:?}, test {:?}", last.val, last.test);

    // Later: continue the same run to 3 epochs — the same bits as 3 epochs in one go.
    let mut ck = Checkpoint::load_file("mlp2.ckpt".as_ref())?;
    let more = TrainConfig { epochs: 3, ..cfg };
    fit_from(
        &mut ck.model,
        &sets,
        &more,
        &mut ck.state,
        &mut |_| Control::Continue,
        &mut |_| Ok(Control::Continue),
    )?;
    ck.model.save_file("mlp2.safetensors".as_ref())?;
    // README: end
    Ok(())
}
