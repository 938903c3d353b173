"""From Python to the device — the compact blob, reloaded through the Rust
``no_std`` loader (``nitro_core::export::from_blob``), predicts and trains like Python."""

from __future__ import annotations

import numpy as np
import pytest

import nitrod_rs
from nitrod_rs import MLP
from nitrod_rs.cli import main


def trained_mlp():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(512, 28, 28), dtype=np.uint8)
    y = (x[:, :14].mean(axis=(1, 2)) > x[:, 14:].mean(axis=(1, 2))).astype(np.int64)
    model = MLP([784, 64, 32, 10], dropout=0, seed=2)
    model.fit(x, y, epochs=2, batch_size=32, progress=False, fwd_decay_inv=10000,
              subnet_decay_inv=8000)
    return model, x, y


def test_blob_reloaded_by_the_rust_loader_predicts_and_trains_identically():  # type: ignore[no-untyped-def]
    model, x, y = trained_mlp()
    blob = model.to_blob()
    assert blob[:4] == b"NTRD"
    device = MLP.from_blob(blob)  # nitro_core::export::from_blob
    assert device.config == model.config
    assert device.normalization == model.normalization and device.hyper == model.hyper
    np.testing.assert_array_equal(device.predict_logits(x), model.predict_logits(x))
    np.testing.assert_array_equal(device.predict(x), model.predict(x))
    # …and it keeps training exactly like the Python model.
    for i in range(3):
        sl = slice(32 * i, 32 * (i + 1))
        assert device.train_batch(x[sl], y[sl]) == model.train_batch(x[sl], y[sl])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(device.state_dict()[k], v)
    # A damaged blob is a FormatError, never a crash.
    bad = bytearray(blob)
    bad[40] ^= 0xFF
    with pytest.raises(nitrod_rs.FormatError):
        MLP.from_blob(bytes(bad))
    with pytest.raises(nitrod_rs.FormatError):
        MLP.from_blob(blob[:-7])


def test_cli_export_bin_and_rust(tmp_path, capsys):  # type: ignore[no-untyped-def]
    model, x, _ = trained_mlp()
    src = tmp_path / "m.safetensors"
    model.save(src)
    out = tmp_path / "m.bin"
    assert main(["export", str(src), "--format", "bin", "--out", str(out)]) == 0
    blob = out.read_bytes()
    assert blob == model.to_blob()
    np.testing.assert_array_equal(MLP.from_blob(blob).predict(x), model.predict(x))
    rs = tmp_path / "m.rs"
    assert main(["export", str(src), "--format", "rust", "--out", str(rs)]) == 0
    text = rs.read_text()
    assert "MODEL_BLOB" in text and "LINEAR_ENCODER_00_WEIGHT" in text.upper()
    # A CNN is refused with a clear one-line error (exit 1).
    cnn = nitrod_rs.CNN([4, "M"], [8], decoder_dim=784)
    cnn.save(tmp_path / "c.safetensors")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "c.safetensors"), "--out",
                 str(tmp_path / "c.bin")]) == 1
    err = capsys.readouterr().err
    assert "CNN" in err and "MLP models only" in err
    assert not (tmp_path / "c.bin").exists()
