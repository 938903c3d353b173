//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ndarray::{Array2, ArrayD};
use ndarray_npy::NpzReader;
use std::path::PathBuf;

/// `../shared/fixtures` next to the repository root.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// Open a fixture; a missing fixture fails the test (the spec requires these tests).
pub fn open_npz(name: &str) -> NpzReader<std::fs::File> {
    let p = fixtures_dir().join(name);
    let f =
        std::fs::File::open(&p).unwrap_or_else(|e| panic!("fixture {} missing: {e}", p.display()));
    NpzReader::new(f).expect("valid npz")
}

pub fn i32_2d(npz: &mut NpzReader<std::fs::File>, key: &str) -> Array2<i32> {
    npz.by_name(key).unwrap_or_else(|e| panic!("{key}: {e}"))
}

pub fn i32_nd(npz: &mut NpzReader<std::fs::File>, key: &str) -> ArrayD<i32> {
    npz.by_name(key).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Fashion-MNIST from the Debian package (or `$NITROD_FMNIST_DIR`); under `CI=true` its absence
/// is a failure, otherwise the caller skips.
pub fn fmnist_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("NITROD_FMNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    if dir.join("train-images-idx3-ubyte.gz").is_file()
        || dir.join("train-images-idx3-ubyte").is_file()
    {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "Fashion-MNIST not found in {} (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
    }
    eprintln!("skipping: Fashion-MNIST not found in {}", dir.display());
    None
}
