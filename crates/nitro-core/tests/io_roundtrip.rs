//! algorithm.md §8: safetensors round trip is bit-identical; malformed, truncated or hostile files
//! are errors, never panics.

use ndarray::Array2;
use nitro_core::io::{from_bytes, load_file, save_file, to_bytes};
use nitro_core::rng::Pcg32;
use nitro_core::{Error, Hyper, Mlp, MlpConfig, Normalization};

fn trained_model() -> (Mlp, Array2<i8>) {
    let mut cfg = MlpConfig::new(12, &[6, 5], 3);
    cfg.seed = 3;
    cfg.bias = true;
    let mut m = Mlp::new(cfg).unwrap();
    let mut r = Pcg32::new(1, 1);
    let x = Array2::from_shape_fn((16, 12), |_| r.symmetric(127) as i8);
    let y: Vec<usize> = (0..16).map(|i| i % 3).collect();
    let h = Hyper {
        lr_inv: 8,
        lr_amp_factor: 4,
        fwd_decay_inv: 500,
        subnet_decay_inv: 300,
        ..Hyper::default()
    };
    for _ in 0..5 {
        m.train_step(x.view(), &y, &h).unwrap();
    }
    m.hyper = Some(h);
    m.normalization = Some(Normalization {
        mean: vec![-54],
        mad: vec![82],
    });
    (m, x)
}

#[test]
fn round_trip_is_bit_identical() {
    let (m, x) = trained_model();
    let bytes = to_bytes(&m).unwrap();
    let back = from_bytes(&bytes).unwrap();
    for (a, b) in m.linears().iter().zip(back.linears()) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.weight, b.weight);
        assert_eq!(a.bias, b.bias);
    }
    assert_eq!(back.config, m.config);
    assert_eq!(back.hyper, m.hyper);
    assert_eq!(back.normalization, m.normalization);
    assert_eq!(
        back.predict_logits(x.view()).unwrap(),
        m.predict_logits(x.view()).unwrap()
    );
    // Files are byte-stable: the loaded model writes exactly the same bytes.
    assert_eq!(to_bytes(&back).unwrap(), bytes);
    assert_eq!(to_bytes(&m).unwrap(), bytes);
}

#[test]
fn file_round_trip_and_atomic_write() {
    let (m, x) = trained_model();
    let dir = std::env::temp_dir().join(format!("nitro-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.safetensors");
    save_file(&m, &p).unwrap();
    let back = load_file(&p).unwrap();
    assert_eq!(
        back.predict(x.view()).unwrap(),
        m.predict(x.view()).unwrap()
    );
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // Saving into a missing directory fails cleanly and leaves nothing.
    assert!(matches!(
        save_file(&m, &dir.join("no/such/dir/m.safetensors")),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        load_file(&dir.join("absent.safetensors")),
        Err(Error::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_truncation_is_an_error() {
    let (m, _) = trained_model();
    let bytes = to_bytes(&m).unwrap();
    for n in 0..bytes.len() {
        assert!(
            from_bytes(&bytes[..n]).is_err(),
            "prefix of {n} bytes accepted"
        );
    }
}

#[test]
fn random_corruption_never_panics() {
    let (m, _) = trained_model();
    let bytes = to_bytes(&m).unwrap();
    let mut r = Pcg32::new(5, 5);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + r.below(4) {
            let i = r.below(b.len() as u32) as usize;
            b[i] = r.next_u32() as u8;
        }
        let _ = from_bytes(&b); // Ok (a weight byte changed) or Err — never a panic.
    }
}

fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// Replace every occurrence of `from` by `to` (same length) in a byte buffer.
fn replace(buf: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = buf.to_vec();
    let mut hits = 0;
    for i in 0..=out.len() - from.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            hits += 1;
        }
    }
    assert!(hits > 0, "pattern not found");
    out
}

#[test]
fn hostile_files_are_rejected() {
    // Header length far beyond the file.
    let mut b = u64::MAX.to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    assert!(matches!(from_bytes(&b), Err(Error::Format(_))));
    // Not ours.
    let plain = with_header(
        r#"{"w":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    assert!(matches!(from_bytes(&plain), Err(Error::Format(_))));
    // An architecture that would need terabytes is refused before any allocation.
    let arch = r#"{\"kind\":\"mlp\",\"inputs\":784,\"hidden\":[4000000000000],\"classes\":10,\"activation\":\"nitro_relu\",\"slope\":4,\"dropout_pct\":0,\"bias\":false,\"init\":\"kaiming\",\"seed\":0}"#;
    let h = format!(
        r#"{{"__metadata__":{{"format":"nitrod-rs","format_version":"1","architecture":"{arch}"}},"w":{{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}}}"#
    );
    assert!(from_bytes(&with_header(&h, &[0; 4])).is_err());
    // Right metadata, wrong dtype for a layer.
    let (m, _) = trained_model();
    let good = to_bytes(&m).unwrap();
    assert!(from_bytes(&replace(&good, b"\"I32\"", b"\"I16\"")).is_err());
    // Future format version.
    let bad = replace(
        &good,
        b"\"format_version\":\"1\"",
        b"\"format_version\":\"9\"",
    );
    let e = from_bytes(&bad).unwrap_err();
    assert!(e.to_string().contains("format_version"), "{e}");
}

#[test]
fn overflowing_update_is_an_error_naming_the_layer() {
    use nitro_core::layers::Linear;
    use nitro_core::Sgd;
    let mut l = Linear::new("linear_03", ndarray::arr2(&[[i32::MAX - 2]]), None).unwrap();
    l.forward(ndarray::arr2(&[[-1i8]]).view(), true).unwrap();
    // G = δᵀ·x = 5·(−1) = −5; P − tdiv(−5, 1) = MAX + 3: does not fit i32.
    let e = l
        .backward(
            ndarray::arr2(&[[5]]).view(),
            false,
            &Sgd::new(1, 1, 0).unwrap(),
        )
        .unwrap_err();
    match &e {
        Error::Overflow { layer, op, .. } => {
            assert_eq!(layer, "linear_03");
            assert_eq!(*op, "weight update");
        }
        other => panic!("expected Overflow, got {other:?}"),
    }
    assert_eq!(
        l.weight[[0, 0]],
        i32::MAX - 2,
        "weights untouched after a failed update"
    );
}

/// The names in `dir`, sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_killed_writers_temporary_file_is_reused_not_left_behind() {
    let (m, x) = trained_model();
    let dir = std::env::temp_dir().join(format!("nitro-io-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.safetensors");
    // What a writer killed between its write and its rename leaves: a partial temporary file
    // (one of another process, another time).
    std::fs::write(dir.join(".m.safetensors.tmp"), b"partial garbage").unwrap();
    for _ in 0..3 {
        save_file(&m, &p).unwrap();
        assert_eq!(listing(&dir), ["m.safetensors"]);
    }
    assert_eq!(
        load_file(&p).unwrap().predict(x.view()).unwrap(),
        m.predict(x.view()).unwrap()
    );
    // A failed write (the target is a directory: the rename fails) leaves nothing either.
    let sub = dir.join("sub.safetensors");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("keep"), b"x").unwrap();
    assert!(matches!(save_file(&m, &sub), Err(Error::Io { .. })));
    assert_eq!(listing(&dir), ["m.safetensors", "sub.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_writers_of_one_file_take_turns() {
    let (m, _) = trained_model();
    let mut other = m.clone();
    other.hyper = Some(Hyper::default());
    let (a, b) = (to_bytes(&m).unwrap(), to_bytes(&other).unwrap());
    let dir = std::env::temp_dir().join(format!("nitro-io-race-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.safetensors");
    std::thread::scope(|s| {
        for t in 0..4 {
            let (p, a, b) = (&p, &a, &b);
            s.spawn(move || {
                for _ in 0..20 {
                    nitro_core::io::write_atomic(p, if t % 2 == 0 { a } else { b }).unwrap();
                    // Whatever is there is one complete file.
                    let now = std::fs::read(p).unwrap();
                    assert!(now == *a || now == *b, "a torn file");
                }
            });
        }
    });
    let last = std::fs::read(&p).unwrap();
    assert!(last == a || last == b);
    assert_eq!(listing(&dir), ["m.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
