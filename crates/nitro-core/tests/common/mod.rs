//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ndarray::{Array2, ArrayD};
use ndarray_npy::NpzReader;
use std::path::PathBuf;

/// The golden fixtures, `tests/data/` of the repository (how they were made:
/// `tests/data/README.md`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
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

/// Train an MLP 784-200-100-50-10 (10 % dropout, both decays on, init seed `seed`) for `steps`
/// batches of 64 random images drawn from `data_seed`; every layer's weights afterwards. Run
/// it inside a rayon pool to choose the thread count.
pub fn train_mlp(seed: u64, data_seed: u64, steps: usize) -> Vec<Array2<i32>> {
    use nitro_core::rng::Pcg32;
    use nitro_core::{Hyper, Mlp, MlpConfig};
    let mut cfg = MlpConfig::new(784, &[200, 100, 50], 10);
    cfg.seed = seed;
    cfg.dropout_pct = 10;
    let mut model = Mlp::new(cfg).unwrap();
    let hyper = Hyper {
        fwd_decay_inv: 10_000,
        subnet_decay_inv: 8_000,
        ..Hyper::default()
    };
    let mut r = Pcg32::new(data_seed, 0);
    for _ in 0..steps {
        let x = Array2::from_shape_fn((64, 784), |_| r.symmetric(127) as i8);
        let y: Vec<usize> = (0..64).map(|_| r.below(10) as usize).collect();
        model.train_step(x.view(), &y, &hyper).unwrap();
    }
    model.linears().iter().map(|l| l.weight.clone()).collect()
}

/// The small CNN of several tests: `C8k3 M2 C16k3 <second_pool> | hidden → 10` on 1×size×size.
pub fn small_cnn(
    size: usize,
    second_pool: nitro_core::Feature,
    hidden: usize,
    seed: u64,
) -> nitro_core::CnnConfig {
    use nitro_core::{CnnConfig, Feature};
    let conv = |f| Feature::Conv {
        filters: f,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let mut cfg = CnnConfig::new(
        (1, size, size),
        &[conv(8), Feature::MaxPool(2), conv(16), second_pool],
        &[hidden],
        10,
    );
    cfg.seed = seed;
    cfg
}

/// Every kernel dispatch this machine can run (`i16` packing on/off × each detected instruction
/// set), after printing one visible line per instruction set it lacks. The line goes straight to
/// stderr (not through `eprintln!`, which the test harness captures), so `cargo test` shows it.
pub fn dispatches() -> Vec<nitro_core::kernels::Dispatch> {
    use nitro_core::kernels::{Dispatch, Isa};
    use std::io::Write;
    for isa in Isa::ALL {
        if !isa.detected() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {isa} kernel paths not tested: this CPU lacks {}",
                isa.cpu_flags()
            );
        }
    }
    Dispatch::all_detected()
}

/// A safetensors buffer split into its JSON header and its data.
pub fn split_safetensors(b: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

/// The safetensors buffer of a header and data (the inverse of [`split_safetensors`]).
pub fn join_safetensors(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// The file `b` with the JSON of its metadata value `key` changed by `edit`.
pub fn edit_metadata(b: &[u8], key: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (mut header, data) = split_safetensors(b);
    let meta = &mut header["__metadata__"][key];
    let mut inner: serde_json::Value = serde_json::from_str(meta.as_str().unwrap()).unwrap();
    edit(&mut inner);
    *meta = serde_json::Value::String(inner.to_string());
    join_safetensors(&header, &data)
}

/// The file `b` with an extra `i32` tensor `name` of `n` values.
pub fn with_tensor(b: &[u8], name: &str, n: usize) -> Vec<u8> {
    let (mut header, mut data) = split_safetensors(b);
    let start = data.len();
    data.extend(std::iter::repeat_n(0u8, 4 * n));
    header[name] = serde_json::json!({
        "dtype": "I32",
        "shape": [n],
        "data_offsets": [start, start + 4 * n],
    });
    join_safetensors(&header, &data)
}

/// Every parameter of `m` by name, in the order of saved files.
pub fn params(m: &impl nitro_core::NamedParams) -> Vec<(String, ArrayD<i32>)> {
    m.parameter_shapes()
        .into_iter()
        .map(|(n, _)| {
            let v = m.parameter(&n).unwrap();
            (n, v)
        })
        .collect()
}
