"""ONNX export (nitrod_rs.deploy.onnx_export): integer-only graphs whose scores are
bit-identical to the engine's ``predict_logits`` on uint8 images, run by onnxruntime."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from deploy_helpers import (
    mlp2,
    moderate_weights,
    near_int16_limits,
    need,
    random_images,
    real_models,
    small_cnn,
    vgg_shaped,
)

import nitrod_rs
from nitrod_rs.cli import main
from nitrod_rs.deploy import onnx_export

try:
    import onnx
    import onnxruntime as ort
except ImportError:  # pragma: no cover - the Makefile installs both
    onnx = ort = None


@pytest.fixture(autouse=True)
def _need_onnx() -> None:
    if onnx is None or ort is None:
        need("onnx and onnxruntime", "pip install 'nitrod-rs[onnx]'")


_INT_TYPES = {"INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64",
              "BOOL"}


def assert_integer_only(m: Any) -> None:
    """No float tensor anywhere: initializers, graph inputs/outputs, every intermediate value
    (as strict shape inference types it), every tensor-valued attribute and every Cast."""
    T = onnx.TensorProto
    ints = {getattr(T, n) for n in _INT_TYPES}
    for init in m.graph.initializer:
        assert init.data_type in ints, (init.name, T.DataType.Name(init.data_type))
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    values = [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]
    produced = {o for n in m.graph.node for o in n.output}
    typed = {v.name for v in values}
    assert produced <= typed, f"untyped values: {sorted(produced - typed)[:5]}"
    for v in values:
        t = v.type.tensor_type.elem_type
        assert t in ints, (v.name, T.DataType.Name(t))
    for n in m.graph.node:
        for a in n.attribute:
            assert a.type not in (onnx.AttributeProto.FLOAT, onnx.AttributeProto.FLOATS), \
                (n.op_type, a.name)
            if a.type == onnx.AttributeProto.TENSOR:
                assert a.t.data_type in ints, (n.op_type, a.name)
            if n.op_type == "Cast" and a.name == "to":
                assert a.i in ints, n.name


def session(model: Any) -> tuple[Any, Any]:
    m = onnx_export.build_model(model)
    onnx.checker.check_model(m, full_check=True)
    assert_integer_only(m)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]), m


def assert_bit_identical(model: Any, images: np.ndarray, min_distinct: int = 20) -> Any:
    s, m = session(model)
    scores, cls = s.run(None, {"image": images})
    want = model.predict_logits(images)
    assert scores.dtype == np.int8 and cls.dtype == np.int64
    np.testing.assert_array_equal(scores, want)
    np.testing.assert_array_equal(cls, model.predict(images))
    # The comparison means something only if the scores are not all saturated.
    assert len(np.unique(want)) >= min_distinct, np.unique(want)
    return m


def ops(m: Any) -> list[str]:
    return [n.op_type for n in m.graph.node]


# -- integer division ---------------------------------------------------------------------

EDGE = np.array([-(2**31 - 1), -200705, -200704, -200703, -7, -2, -1, 0, 1, 2, 7, 200703,
                 200704, 200705, 2**31 - 1], dtype=np.int64)


def _run_graph(nodes: list[Any], inputs: dict[str, np.ndarray], out_type: Any, inits: list[Any]
               ) -> np.ndarray:
    h = onnx.helper
    T = onnx.TensorProto
    dtypes = {np.dtype(np.int32): T.INT32, np.dtype(np.int64): T.INT64}
    g = h.make_graph(nodes, "t",
                     [h.make_tensor_value_info(k, dtypes[v.dtype], list(v.shape))
                      for k, v in inputs.items()],
                     [h.make_tensor_value_info("out", out_type, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", onnx_export.OPSET)])
    m.ir_version = onnx_export.IR_VERSION
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, inputs)[0]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("divisor", [2, 3, 256 * 784, 2304])
def test_tdiv_subgraph_truncates_toward_zero(dtype: Any, divisor: int) -> None:
    # What the exporter builds: Sign(z) * (Abs(z) / d): Div sees only |z| >= 0.
    g = onnx_export._Graph(onnx)
    q = g.tdiv_positive("z", divisor, dtype)
    g.nodes.append(onnx.helper.make_node("Identity", [q], ["out"]))
    T = onnx.TensorProto
    z = EDGE.astype(dtype)
    got = _run_graph(g.nodes, {"z": z}, T.INT32 if dtype == np.int32 else T.INT64, g.inits)
    np.testing.assert_array_equal(got, nitrod_rs.ops.tdiv(z.astype(np.int64), divisor))
    assert got[EDGE == -7][0] == -(7 // divisor if divisor < 7 else 0)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_onnxruntime_integer_div_truncates_negatives(dtype: Any) -> None:
    # onnxruntime's own Div truncates too (C++ '/'): -7/2 = -3, not Python's -4. The exported
    # graphs do not rely on it (the ONNX specification does not define the rounding).
    T = onnx.TensorProto
    a = np.array([-7, 7, -1, -8, -200705], dtype=dtype)
    b = np.array([2, 2, 2, 3, 200704], dtype=dtype)
    got = _run_graph([onnx.helper.make_node("Div", ["a", "b"], ["out"])], {"a": a, "b": b},
                     T.INT32 if dtype == np.int32 else T.INT64, [])
    np.testing.assert_array_equal(got, [-3, 3, 0, -2, -1])


# -- MLPs -----------------------------------------------------------------------------------


def test_mlp2_random_weights_bit_identical() -> None:
    model = mlp2()
    m = assert_bit_identical(model, random_images((784,), 512, 3).reshape(512, 784))
    # Weights beyond int8 are split into two 8-bit digits: two MatMulIntegers per layer.
    assert ops(m).count("MatMulInteger") == 2 * 4
    assert "MatMul" not in ops(m) and "Gemm" not in ops(m)


@pytest.mark.parametrize("activation", nitrod_rs.models.ACTIVATIONS)
def test_mlp_every_activation_with_bias_and_dropout(activation: str) -> None:
    model = nitrod_rs.MLP([96, 40, 24, 7], activation=activation, bias=True, dropout=20,
                          slope=5, seed=1)
    model.fit_normalization(random_images((96,), 64, 0))
    moderate_weights(model, 4)
    assert_bit_identical(model, random_images((96,), 300, 5), min_distinct=10)


def int8_weights(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.load_state_dict({k: rng.integers(-128, 128, size=v.shape).astype(np.int32)
                           for k, v in model.state_dict().items()})


def test_int8_weights_one_digit_and_three_channel_normalisation() -> None:
    # A CIFAR-like input (3 channels of 4x4, per-channel statistics) and weights that fit
    # int8: one MatMulInteger / ConvInteger per layer. (With |w| <= 128 and SF = 2^8·fan_in
    # the scores stay small.)
    x = random_images((3, 4, 4), 200, 6)
    x[:, 1] //= 3  # channels with different statistics
    x[:, 2] = x[:, 2] // 2 + 100
    cnn = nitrod_rs.CNN([4], [6], input_shape=(3, 4, 4), decoder_dim=64, seed=0)
    cnn.fit_normalization(x)
    assert len(set(cnn.normalization[0])) == 3
    int8_weights(cnn, 1)
    m = assert_bit_identical(cnn, x, min_distinct=3)
    assert ops(m).count("ConvInteger") == 1 and ops(m).count("MatMulInteger") == 2
    # An MLP on 3-channel images (per-channel statistics, as for CIFAR-10's MLP4): the graph
    # takes the N x C·H·W rows.
    mlp = nitrod_rs.MLP([48, 16, 5], seed=3)
    mlp.fit_normalization(x)
    assert len(set(mlp.normalization[0])) == 3
    int8_weights(mlp, 2)
    s, m = session(mlp)
    scores, cls = s.run(None, {"image": x.reshape(200, 48)})
    np.testing.assert_array_equal(scores, mlp.predict_logits(x))
    np.testing.assert_array_equal(cls, mlp.predict(x))
    assert ops(m).count("MatMulInteger") == 2


def test_wide_weights_take_int64_accumulation() -> None:
    # |w| near 2^24: four digits, and the bound 128·Σ|w| exceeds int32, so the recombination
    # runs in int64 (Cast to INT64 before the radix products).
    model = nitrod_rs.MLP([64, 32, 6], seed=2)
    model.fit_normalization(random_images((64,), 64, 0))
    rng = np.random.default_rng(8)
    state = {k: rng.integers(-(2**24), 2**24, size=v.shape).astype(np.int32)
             for k, v in model.state_dict().items()}
    state["linear_01"] = rng.integers(-3000, 3000, size=state["linear_01"].shape
                                      ).astype(np.int32)
    model.load_state_dict(state)
    m = assert_bit_identical(model, random_images((64,), 400, 9), min_distinct=5)
    casts = [n for n in m.graph.node if n.op_type == "Cast"
             and n.attribute[0].i == onnx.TensorProto.INT64]
    assert casts, "expected int64 recombination"
    assert ops(m).count("MatMulInteger") == 4 + 2


def test_long_reductions_are_chunked() -> None:
    # 20000 inputs > CHUNK: the reduction is split in two MatMulIntegers per digit.
    model = nitrod_rs.MLP([20000, 4, 3], seed=0)
    model.fit_normalization(random_images((20000,), 8, 0))
    moderate_weights(model, 1)
    m = assert_bit_identical(model, random_images((20000,), 40, 2), min_distinct=5)
    assert ops(m).count("Slice") == 2


# -- CNNs -----------------------------------------------------------------------------------


def test_small_cnn_random_weights_bit_identical() -> None:
    assert_bit_identical(small_cnn(), random_images((1, 28, 28), 128, 7))


@pytest.mark.parametrize("activation", ["nitro_relu", "bipolar_pocket_leaky_relu"])
def test_vgg_shaped_every_feature_moderate_weights(activation: str) -> None:
    model = vgg_shaped(activation=activation)
    moderate_weights(model, 11)
    m = assert_bit_identical(model, random_images((1, 28, 28), 64, 12), min_distinct=10)
    kinds = ops(m)
    assert kinds.count("ConvInteger") == 2 * 6 and "ReduceSum" in kinds
    assert kinds.count("MaxPool") == 2 and "Pad" in kinds


def test_vgg_shaped_weights_near_int16_limits() -> None:
    model = vgg_shaped(seed=3)
    near_int16_limits(model, 13)
    x = random_images((1, 28, 28), 48, 14)
    s, m = session(model)
    scores, cls = s.run(None, {"image": x})
    np.testing.assert_array_equal(scores, model.predict_logits(x))
    np.testing.assert_array_equal(cls, model.predict(x))
    # The 5x5 conv's bound exceeds int32: its partial products are recombined in int64.
    to64 = [n for n in m.graph.node
            if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.INT64]
    assert len(to64) == 2  # its two digits


def test_real_fashion_mnist(fmnist: Any) -> None:
    models = real_models(fmnist)
    x = np.ascontiguousarray(fmnist.x_test[:2000])
    y = fmnist.y_test[:2000]
    for name, images, floor in (("mlp", x.reshape(2000, 784), 0.6),
                                ("cnn", x[:, None], 0.3)):
        model = models[name]
        assert_bit_identical(model, images)
        s, _ = session(model)
        acc = float((s.run(["class"], {"image": images})[0] == y).mean())
        assert acc > floor, (name, acc)  # trained models, not noise


# -- files and the command line -------------------------------------------------------------


def test_to_onnx_file_and_cli(tmp_path: Any) -> None:
    model = small_cnn(seed=5)
    src = tmp_path / "cnn.safetensors"
    model.save(src)
    path = tmp_path / "m.onnx"
    size = model.to_onnx(path)
    assert size == path.stat().st_size
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert_integer_only(loaded)
    assert [i.name for i in loaded.graph.input] == ["image"]
    assert [o.name for o in loaded.graph.output] == ["scores", "class"]
    out = tmp_path / "cli.onnx"
    assert main(["export", str(src), "--format", "onnx", "--out", str(out)]) == 0
    assert out.read_bytes() == path.read_bytes()
    x = random_images((1, 28, 28), 32, 1)
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(s.run(["scores"], {"image": x})[0], model.predict_logits(x))


def test_export_needs_normalisation_statistics(tmp_path: Any) -> None:
    model = nitrod_rs.MLP([16, 4, 3])
    with pytest.raises(ValueError, match="normalisation statistics"):
        model.to_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
