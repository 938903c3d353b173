"""ONNX export: the inference path as an integer-only ONNX graph, bit-identical to the engine.

Needs the optional extra ``nitrod-rs[onnx]`` (``pip install onnx onnxruntime``).

The graph takes ``image``, ``uint8`` of shape ``N x C x H x W`` (CNN) or ``N x features``
(MLP), applies the model's normalisation (docs/algorithm.md §2) and returns ``scores`` (``int8``,
``N x classes``, equal to ``predict_logits``) and ``class`` (``int64``, the first maximum).
Every tensor is an integer tensor and every op an integer op:

* **Values between layers** are carried as ``uint8`` holding ``x + 128`` (``x`` in
  ``[-128, 127]``), i.e. 8-bit tensors with zero point 128: the form that
  ``MatMulInteger`` / ``ConvInteger`` take (onnxruntime has no integer ``Gemm``/``Conv``).
* **Weights** are split exactly into base-256 digits ``w = Σ_k 256^k (u_k − z_k)``
  (:func:`._program.digits`; ``int16`` weights are ``w = hi·256 + lo``), one
  ``MatMulInteger``/``ConvInteger`` per digit, recombined by ``Mul``/``Add``.
* **Scaling** ``clip8(tdiv(z, SF))`` is ``Clip(Sign(z) · (Abs(z) / SF))``: ``Div`` only ever
  sees a non-negative dividend and a positive divisor, where truncation and floor agree, so
  the result does not depend on how a runtime rounds negative integer quotients (the ONNX
  specification does not say).
* **Normalisation and activations** are ``Gather`` lookups in tables computed by the engine.
* **Pooling**: ``MaxPool`` on the ``uint8`` form (``x + 128`` is monotone); average pooling
  is ``Slice`` → ``Reshape`` → ``ReduceSum`` → the same truncating division.

Exactness of the integer products (checked per layer at export time):

* A ``MatMulInteger``/``ConvInteger`` reduces over at most :data:`CHUNK` = 16384 products
  (longer reductions are split into chunks along the input features or channels). Each
  product of two ``uint8`` values is at most ``255² = 65025``, so even a sum of two such
  partial sums — ``2·16384·65025 = 2,130,739,200`` — stays below ``2³¹ − 1 =
  2,147,483,647``: however the kernel applies the zero points, its ``int32`` accumulator
  cannot overflow, and its result is the exact ``Σ x·d``.
* The recombination ``z = Σ_k 256^k P_k (+ b)`` runs in ``int32`` only when the layer's bound
  ``B = Σ_k 256^k · max_o 128·Σ_i |d_k[o, i]| + max_o |b[o]|`` (``|x| ≤ 128`` for every
  input, ``d_k`` the signed digit values) is at most ``2³¹ − 1``; ``B`` bounds every partial
  product, every scaled term and every partial sum. Otherwise each ``P_k`` is cast to
  ``int64`` first (``int32`` partials are exact by the first point, and the total is at most
  ``128·Σ|w| + |b|``, checked to fit ``int64``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._paths import PathLike
from . import _program as P

#: Longest reduction of one ``MatMulInteger``/``ConvInteger`` (see the module docstring).
CHUNK = 16384
#: The ONNX opset the graph uses (integer ``Clip`` needs 12, ``ReduceSum`` with an ``axes``
#: input 13) and the IR version of that opset (7), so that older runtimes read the file too.
OPSET = 13
IR_VERSION = 7


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs the 'onnx' package: pip install 'nitrod-rs[onnx]' "
                          "(or pip install onnx onnxruntime)") from exc
    return onnx


class _Graph:
    """Nodes and integer initializers with unique names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.h = onnx.helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, value: Any, dtype: Any, stem: str = "c") -> str:
        a = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (a.dtype.str, a.tobytes(), a.shape)
        if key not in self._consts:
            n = self.name(stem)
            self.inits.append(self.onnx.numpy_helper.from_array(a, n))
            self._consts[key] = n
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], stem: str | None = None,
           **attrs: Any) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(self.h.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    # -- integer building blocks -----------------------------------------------------

    def cast(self, x: str, to: Any) -> str:
        return self.op("Cast", [x], to=to)

    def tdiv_positive(self, z: str, divisor: int, dtype: Any) -> str:
        """``tdiv(z, divisor)`` for ``divisor > 0``: ``Sign(z) · (|z| / divisor)``. The
        division sees ``|z| ≥ 0`` only (callers guarantee ``z`` is not the type's minimum)."""
        q = self.op("Div", [self.op("Abs", [z]), self.const(divisor, dtype, "divisor")])
        return self.op("Mul", [q, self.op("Sign", [z])])


def _scaled_product(g: _Graph, x: str, s: P.Dense | P.Conv) -> str:
    """``clip8(tdiv(z, SF))`` of the layer's product ``z`` on the ``uint8`` input ``x``, as
    ``int32``."""
    T = g.onnx.TensorProto
    w = s.weight
    ds = P.digits(w)
    fan = int(np.prod(w.shape[1:]))
    # Chunks of the reduction: feature ranges (Dense) or channel ranges (Conv).
    if isinstance(s, P.Dense):
        step = CHUNK
        ranges = [(a, min(a + step, fan)) for a in range(0, fan, step)]
    else:
        kk = w.shape[2] * w.shape[3]
        if kk > CHUNK:
            raise ValueError(f"{s.name}: kernel {w.shape[2]}x{w.shape[3]} is too large")
        step = CHUNK // kk
        c = w.shape[1]
        ranges = [(a, min(a + step, c)) for a in range(0, c, step)]
        if s.padding:
            pads = [0, 0, s.padding, s.padding, 0, 0, s.padding, s.padding]
            x = g.op("Pad", [x, g.const(pads, np.int64, "pads"), g.const(128, np.uint8, "zp")],
                     mode="constant")
    # The bound of every term, partial sum and the total (module docstring, second point).
    bound = 0
    for k, (u, zp) in enumerate(ds):
        signed = u.astype(np.int64) - zp
        bound += (256 ** k) * P.layer_bound(signed, None)
    if s.bias is not None:
        bound += int(np.abs(s.bias).max()) if s.bias.size else 0
    wide = bound > P.INT32_MAX
    if bound > P.INT64_MAX:
        raise ValueError(f"{s.name}: products could exceed int64")
    acc_t, acc_np = (T.INT64, np.int64) if wide else (T.INT32, np.int32)
    xzp = g.const(128, np.uint8, "x_zero_point")
    parts: list[str] = []
    for a, b in ranges:
        if len(ranges) == 1:
            xa = x
        else:
            axis = 1
            xa = g.op("Slice", [x, g.const([a], np.int64), g.const([b], np.int64),
                                g.const([axis], np.int64)])
        for k, (u, zp) in enumerate(ds):
            if isinstance(s, P.Dense):
                wk = g.const(np.ascontiguousarray(u[:, a:b].T), np.uint8, f"{s.name}_d{k}")
                p = g.op("MatMulInteger", [xa, wk, xzp, g.const(zp, np.uint8, "w_zero_point")])
            else:
                wk = g.const(u[:, a:b], np.uint8, f"{s.name}_d{k}")
                p = g.op("ConvInteger", [xa, wk, xzp, g.const(zp, np.uint8, "w_zero_point")])
            if wide:
                p = g.cast(p, T.INT64)
            if k:
                p = g.op("Mul", [p, g.const(256 ** k, acc_np, "radix")])
            parts.append(p)
    z = parts[0]
    for p in parts[1:]:
        z = g.op("Add", [z, p])
    if s.bias is not None:
        bias = s.bias if isinstance(s, P.Dense) else s.bias[:, None, None]
        z = g.op("Add", [z, g.const(bias, acc_np, f"{s.name}_bias")])
    q = g.tdiv_positive(z, s.factor, acc_np)
    q = g.op("Clip", [q, g.const(-127, acc_np, "lo"), g.const(127, acc_np, "hi")])
    return g.cast(q, T.INT32) if wide else q


def _activation(g: _Graph, q: str, act: P.Activation, shape: tuple[int, ...]) -> str:
    """The activation of the ``int32`` scaling output ``q`` as ``uint8`` ``y + 128``."""
    table = act.table.astype(np.int64) + 128
    idx = g.op("Add", [q, g.const(128, np.int32, "offset")])
    if act.masked is not None:
        table = np.concatenate([table, act.masked.astype(np.int64) + 128])
        if act.mask == "features":
            neg = (np.arange(shape[-1]) % 2) * 256
        else:
            hh, ww = shape[-2:]
            neg = (np.add.outer(np.arange(hh), np.arange(ww)) % 2) * 256
        idx = g.op("Add", [idx, g.const(neg, np.int32, "bipolar")])
    return g.op("Gather", [g.const(table, np.uint8, f"{act.name}_table"), idx])


def build_model(model: Any, *, name: str | None = None) -> Any:
    """The ``onnx.ModelProto`` of ``model`` (an MLP or a CNN with normalisation statistics)."""
    onnx = _onnx()
    T = onnx.TensorProto
    h = onnx.helper
    p = P.build(model)
    g = _Graph(onnx)
    # Normalisation: one table of all channels, indexed channel·256 + pixel.
    pix = g.cast("image", T.INT32)
    offs: np.ndarray
    if p.kind == "cnn":
        c = p.input_shape[0]
        offs = (np.arange(c) * 256).reshape(c, 1, 1)
    else:
        offs = (np.arange(p.input_shape[0]) // p.normalize.plane) * 256
    idx = g.op("Add", [pix, g.const(offs, np.int32, "channel_offset")])
    table = (p.normalize.table.astype(np.int64) + 128).reshape(-1)
    x = g.op("Gather", [g.const(table, np.uint8, "normalize_table"), idx], stem="normalized")
    scores = ""
    for s in p.steps:
        if isinstance(s, P.Flatten):
            x = g.op("Flatten", [x], axis=1)
        elif isinstance(s, P.Pool):
            k = s.k
            if s.kind == "max":
                x = g.op("MaxPool", [x], kernel_shape=[k, k], strides=[k, k])
            else:
                c, d2, _ = s.out_shape
                v = g.op("Sub", [g.cast(x, T.INT32), g.const(128, np.int32, "offset")])
                if d2 * k != s.in_shape[1]:
                    v = g.op("Slice", [v, g.const([0, 0], np.int64),
                                       g.const([d2 * k, d2 * k], np.int64),
                                       g.const([2, 3], np.int64)])
                v = g.op("Reshape", [v, g.const([0, c, d2, k, d2, k], np.int64)])
                v = g.op("ReduceSum", [v, g.const([3, 5], np.int64)], keepdims=0)
                v = g.tdiv_positive(v, k * k, np.int32)
                x = g.cast(g.op("Add", [v, g.const(128, np.int32, "offset")]), T.UINT8)
        else:
            q = _scaled_product(g, x, s)
            if s.act is None:
                scores = q
            else:
                shape = (s.weight.shape[0],) if isinstance(s, P.Dense) else s.out_shape
                x = _activation(g, q, s.act, shape)
    g.nodes.append(h.make_node("Cast", [scores], ["scores"], name="scores", to=T.INT8))
    g.nodes.append(h.make_node("ArgMax", ["scores"], ["class"], name="class", axis=1,
                               keepdims=0, select_last_index=0))
    in_shape: list[Any] = ["N", *p.input_shape]
    graph = h.make_graph(
        g.nodes, name or "nitrod",
        [h.make_tensor_value_info("image", T.UINT8, in_shape)],
        [h.make_tensor_value_info("scores", T.INT8, ["N", p.classes]),
         h.make_tensor_value_info("class", T.INT64, ["N"])],
        initializer=g.inits,
        doc_string=(f"nitrod-rs {p.kind.upper()} {p.description}: uint8 image -> int8 scores "
                    "(engine's predict_logits) and int64 class; integer ops only"))
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                     producer_name="nitrod-rs")
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def to_onnx(model: Any, path: PathLike, *, name: str | None = None) -> int:
    """Write ``model`` as an ONNX file; returns its size in bytes. See the module docstring
    for the graph's inputs, outputs and exactness argument."""
    data = build_model(model, name=name).SerializeToString()
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.fspath(path))
    return len(data)
