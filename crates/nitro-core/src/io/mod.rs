//! Persistence (algorithm.md §8): one `.safetensors` file with every parameter as an exact `i32`
//! tensor and JSON metadata (architecture, hyper-parameters, normalisation, versions).
//!
//! Parsing works on byte slices; the `*_file` functions add atomic file I/O.

mod checkpoint;
mod cnn;
mod container;
mod file;
mod meta;
mod mlp;
mod model;
mod settings;

pub use checkpoint::{metrics_json, Checkpoint, Checkpointable, CHECKPOINT_KEY, ORDER_TENSOR};
pub use cnn::{cnn_from_bytes, cnn_to_bytes};
pub use container::read_metadata;
pub use file::{temp_path, write_atomic};
pub use meta::{hyper_json, parse_hyper, FORMAT, FORMAT_VERSION};
pub use mlp::{from_bytes, load_file, save_file, to_bytes};
pub use model::Model;
