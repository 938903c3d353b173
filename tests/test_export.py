"""From Python to the device — the compact blob of an MLP or a CNN, reloaded through the
Rust ``no_std`` loader (``nitro_core::export::from_blob``), predicts and trains like Python;
without its learning heads it predicts the same and refuses training."""

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
    # A CNN's Rust source is refused with a clear one-line error (exit 1).
    cnn = nitrod_rs.CNN([4, "M"], [8], decoder_dim=784)
    cnn.save(tmp_path / "c.safetensors")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "c.safetensors"), "--format", "rust", "--out",
                 str(tmp_path / "c.rs")]) == 1
    err = capsys.readouterr().err
    assert "CNN" in err and "MLP models only" in err
    assert not (tmp_path / "c.rs").exists()


def trained_cnn():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, size=(96, 12, 12), dtype=np.uint8)
    y = (x[:, :6].mean(axis=(1, 2)) > x[:, 6:].mean(axis=(1, 2))).astype(np.int64)
    model = nitrod_rs.CNN([4, "M", 6, "A"], [16], input_shape=(1, 12, 12), classes=2,
                          decoder_dim=64, bias=True, seed=3)
    model.fit(x, y, epochs=1, batch_size=16, progress=False, lr_inv=64)
    return model, x, y


@pytest.mark.parametrize("make", [trained_mlp, trained_cnn])
def test_blob_without_heads_predicts_the_same_and_cannot_train(make, tmp_path):  # type: ignore[no-untyped-def]
    model, x, y = make()
    cls = type(model)
    full, small = model.to_blob(), model.to_blob(heads=False)
    assert len(small) < len(full)
    device = cls.from_blob(small)
    assert not device.has_heads and model.has_heads and cls.from_blob(full).has_heads
    np.testing.assert_array_equal(device.predict_logits(x), model.predict_logits(x))
    assert device.to_blob(heads=False) == small
    with pytest.raises(nitrod_rs.ConfigError, match="without its learning heads"):
        device.train_batch(x[:8], y[:8])
    with pytest.raises(nitrod_rs.ConfigError, match="learning heads"):
        device.save(tmp_path / "m.safetensors")
    # The CLI's flag writes the same bytes.
    src, out = tmp_path / "src.safetensors", tmp_path / "small.bin"
    model.save(src)
    assert main(["export", str(src), "--format", "bin", "--no-heads", "--out", str(out)]) == 0
    assert out.read_bytes() == small
    assert main(["export", str(src), "--format", "onnx", "--no-heads",
                 "--out", str(tmp_path / "m.onnx")]) == 2


def test_cnn_blob_reloads_and_trains_identically():  # type: ignore[no-untyped-def]
    model, x, y = trained_cnn()
    blob = model.to_blob()
    device = nitrod_rs.CNN.from_blob(blob)  # nitro_core::export::from_blob
    assert device.config == model.config
    assert device.normalization == model.normalization and device.hyper == model.hyper
    np.testing.assert_array_equal(device.predict_logits(x), model.predict_logits(x))
    # A blob, like a model file, restarts the dropout generators: this one has none, so the
    # reloaded model trains on exactly like the original.
    for i in range(3):
        sl = slice(16 * i, 16 * (i + 1))
        assert device.train_batch(x[sl], y[sl]) == model.train_batch(x[sl], y[sl])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(device.state_dict()[k], v)
    with pytest.raises(nitrod_rs.FormatError):
        nitrod_rs.CNN.from_blob(blob[:-3])
    with pytest.raises(nitrod_rs.FormatError, match="holds a CNN"):
        MLP.from_blob(blob)
