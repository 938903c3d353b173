"""C export: the inference path as one C99 ``.h``/``.c`` pair, bit-identical to the engine.

The generated code has no floating point, no ``malloc`` and includes nothing beyond
``<stdint.h>`` and ``<stddef.h>``; it builds with ``cc -std=c99 -Wall -Wextra -Werror
-Wconversion`` and for microcontrollers without an FPU (``-mcpu=cortex-m0plus -mthumb``).
Its interface, with the default prefix ``nitrod``::

    #define NITROD_INPUT_SIZE    /* uint8 values per image, row-major (C x H x W)  */
    #define NITROD_CLASSES       /* number of scores                                 */
    #define NITROD_SCRATCH_BYTES /* size of the caller's scratch buffer (no alignment) */
    int nitrod_predict(const uint8_t *image, int32_t *scores, void *scratch);

``nitrod_predict`` normalises the raw pixels with the model's statistics (docs/algorithm.md §2), runs the
forward layers, writes the ``NITROD_CLASSES`` scores (the engine's ``predict_logits``, in
``[-127, 127]``) and returns the class with the largest score (the first on ties, docs/algorithm.md §4.4).
The scratch buffer holds two activation tensors of ``int8_t``; the function keeps no state,
so it is re-entrant with one scratch buffer per caller.

Exactness: weights are stored ``const`` in the narrowest type that holds every value of the
layer (``int8_t``, ``int16_t`` or ``int32_t``). Each layer's accumulator is ``int32_t`` when
its bound ``128·max_o Σ_i |W[o, i]| + |b[o]|`` (every input has ``|x| ≤ 128``) is at most
``2³¹ − 1`` — then no partial sum can overflow, whatever its order — and ``int64_t``
otherwise; each layer's comment states its bound. C99 integer division truncates toward
zero (C99 §6.5.5), which is docs/algorithm.md §1's ``tdiv``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import PathLike
from . import _program as P

_C_TYPE = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t"}


def _array(ctype: str, name: str, values: Iterable[int], per_line: int = 16) -> str:
    vals = [str(int(v)) for v in values]
    if ctype == "int32_t":
        # -2147483648 is not a C constant (it is -(2147483648), a long): spell it out.
        vals = ["(-2147483647 - 1)" if v == "-2147483648" else v for v in vals]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines) if lines else "0"
    return f"static const {ctype} {name}[{max(len(vals), 1)}] = {{\n    {body}\n}};\n"


class _Writer:
    def __init__(self, p: P.Program) -> None:
        self.p = p
        self.tables: list[str] = []
        self.funcs: list[str] = []
        self.calls: list[str] = []
        self.helpers: set[str] = set()

    def weights(self, name: str, a: np.ndarray) -> tuple[str, str]:
        ctype = _C_TYPE[P.narrowest_int(a)]
        self.tables.append(_array(ctype, name, a.reshape(-1)))
        return name, ctype

    def activation(self, act: P.Activation) -> None:
        if "ACT" in self.helpers:
            return
        self.helpers.add("ACT")
        self.tables.append(f"/* {act.name}: output for scaling output x at [x + 128] "
                           "(docs/algorithm.md §3.4) */\n" + _array("int8_t", "ACT", act.table))
        if act.masked is not None:
            self.tables.append("/* bipolar mask: the positions it negates take -f(-x) */\n"
                               + _array("int8_t", "ACT_MASKED", act.masked))

    def store(self, act: P.Activation | None, mask: str) -> str:
        """The statement storing the scaled value ``q`` of output ``dst``: the activation's
        ``int8_t``, or ``q`` itself in the ``int32_t`` scores (the output layer)."""
        if act is None:
            return "out[dst] = q;"
        if act.masked is None:
            return "out[dst] = ACT[q + 128];"
        return f"out[dst] = ({mask}) ? ACT_MASKED[q + 128] : ACT[q + 128];"

    def accumulator(self, s: P.Dense | P.Conv) -> tuple[str, str]:
        bound = P.layer_bound(s.weight, s.bias)
        wide = bound > P.INT32_MAX
        acc = "int64_t" if wide else "int32_t"
        self.helpers.add("SCALE64" if wide else "SCALE32")
        why = (f"max |z| <= 128 * max_o sum_i |W[o,i]| + |b[o]| = {bound} "
               + ("> 2^31 - 1: int64_t accumulator" if wide
                  else "<= 2^31 - 1: int32_t accumulator"))
        return acc, why

    def dense(self, i: int, s: P.Dense, last: bool) -> None:
        out_n, in_n = s.weight.shape
        w, wt = self.weights(f"W{i}", s.weight)
        acc, why = self.accumulator(s)
        init = "0"
        if s.bias is not None:
            b, _ = self.weights(f"B{i}", s.bias)
            init = f"{b}[o]"
        if s.act is not None:
            self.activation(s.act)
        scale = "scale64" if acc == "int64_t" else "scale32"
        out_t = "int32_t" if last else "int8_t"
        store = self.store(s.act, "o & 1")
        self.funcs.append(
            f"/* {s.name}: {in_n} -> {out_n}, weights {wt}, SF = {s.factor};\n"
            f"   {why} */\n"
            f"static void layer{i}(const int8_t *in, {out_t} *out)\n{{\n"
            f"    int32_t o, k;\n"
            f"    for (o = 0; o < {out_n}; ++o) {{\n"
            f"        const {wt} *w = {w} + o * {in_n};\n"
            f"        const int32_t dst = o;\n"
            f"        {acc} acc = {init};\n"
            f"        int32_t q;\n"
            f"        for (k = 0; k < {in_n}; ++k) {{\n"
            f"            acc += ({acc})w[k] * ({acc})in[k];\n"
            f"        }}\n"
            f"        q = {scale}(acc, {s.factor});\n"
            f"        {store}\n"
            f"    }}\n}}\n")

    def conv(self, i: int, s: P.Conv) -> None:
        f, c, k, _ = s.weight.shape
        _, h, wd = s.in_shape
        _, ho, wo = s.out_shape
        pad = s.padding
        w, wt = self.weights(f"W{i}", s.weight)
        acc, why = self.accumulator(s)
        init = "0"
        if s.bias is not None:
            b, _ = self.weights(f"B{i}", s.bias)
            init = f"{b}[f]"
        self.activation(s.act)
        scale = "scale64" if acc == "int64_t" else "scale32"
        store = self.store(s.act, "(i + j) & 1")
        self.funcs.append(
            f"/* {s.name}: {c}x{h}x{wd} -> {f}x{ho}x{wo}, kernel {k}x{k}, padding {pad}, "
            f"weights {wt}, SF = {s.factor};\n"
            f"   {why} */\n"
            f"static void layer{i}(const int8_t *in, int8_t *out)\n{{\n"
            f"    int32_t f, i, j, c, u, v;\n"
            f"    for (f = 0; f < {f}; ++f) {{\n"
            f"        for (i = 0; i < {ho}; ++i) {{\n"
            f"            for (j = 0; j < {wo}; ++j) {{\n"
            f"                const int32_t dst = (f * {ho} + i) * {wo} + j;\n"
            f"                {acc} acc = {init};\n"
            f"                int32_t q;\n"
            f"                for (c = 0; c < {c}; ++c) {{\n"
            f"                    for (u = 0; u < {k}; ++u) {{\n"
            f"                        const int32_t y = i + u - {pad};\n"
            f"                        if (y < 0 || y >= {h}) continue;\n"
            f"                        for (v = 0; v < {k}; ++v) {{\n"
            f"                            const int32_t x = j + v - {pad};\n"
            f"                            if (x < 0 || x >= {wd}) continue;\n"
            f"                            acc += ({acc}){w}[((f * {c} + c) * {k} + u) * {k} + v]"
            f"\n                                   * ({acc})in[(c * {h} + y) * {wd} + x];\n"
            f"                        }}\n"
            f"                    }}\n"
            f"                }}\n"
            f"                q = {scale}(acc, {s.factor});\n"
            f"                {store}\n"
            f"            }}\n"
            f"        }}\n"
            f"    }}\n}}\n")

    def pool(self, i: int, s: P.Pool) -> None:
        c, h, wd = s.in_shape
        _, ho, wo = s.out_shape
        k = s.k
        first = f"in[(ch * {h} + i * {k}) * {wd} + j * {k}]"
        cell = f"in[(ch * {h} + i * {k} + u) * {wd} + j * {k} + v]"
        if s.kind == "max":
            init, body, res = (f"int8_t m = {first};", f"if ({cell} > m) m = {cell};", "m")
            what = "max"
        else:
            # |sum| <= k*k*128 fits int32_t; C division truncates toward zero (tdiv).
            init, body = "int32_t m = 0;", f"m += {cell};"
            res, what = f"(int8_t)(m / {k * k})", "average (truncating)"
        self.funcs.append(
            f"/* {what} pooling {k}x{k}, stride {k}: {c}x{h}x{wd} -> {c}x{ho}x{wo} */\n"
            f"static void layer{i}(const int8_t *in, int8_t *out)\n{{\n"
            f"    int32_t ch, i, j, u, v;\n"
            f"    for (ch = 0; ch < {c}; ++ch) {{\n"
            f"        for (i = 0; i < {ho}; ++i) {{\n"
            f"            for (j = 0; j < {wo}; ++j) {{\n"
            f"                {init}\n"
            f"                for (u = 0; u < {k}; ++u) {{\n"
            f"                    for (v = 0; v < {k}; ++v) {{\n"
            f"                        {body}\n"
            f"                    }}\n"
            f"                }}\n"
            f"                out[(ch * {ho} + i) * {wo} + j] = {res};\n"
            f"            }}\n"
            f"        }}\n"
            f"    }}\n}}\n")

    def helper_source(self) -> str:
        out = []
        if "SCALE32" in self.helpers:
            out.append(
                "/* NITRO Scaling (docs/algorithm.md §3.3): clip8(tdiv(z, sf)); C99 '/' truncates toward "
                "zero. */\n"
                "static int32_t scale32(int32_t z, int32_t sf)\n{\n"
                "    const int32_t q = z / sf;\n"
                "    return q < -127 ? -127 : (q > 127 ? 127 : q);\n}\n")
        if "SCALE64" in self.helpers:
            out.append(
                "static int32_t scale64(int64_t z, int64_t sf)\n{\n"
                "    const int64_t q = z / sf;\n"
                "    return (int32_t)(q < -127 ? -127 : (q > 127 ? 127 : q));\n}\n")
        return "\n".join(out)


def _check_identifier(s: str, what: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s):
        raise ValueError(f"{what} must be a C identifier (letters, digits, '_'), got {s!r}")
    return s


def generate(model: Any, *, name: str = "nitrod_model", prefix: str = "nitrod") -> dict[str, str]:
    """The C header and source of ``model``: ``{"<name>.h": ..., "<name>.c": ...}``."""
    from .. import __version__

    _check_identifier(name, "name")
    prefix = _check_identifier(prefix, "prefix")
    up = prefix.upper()
    p = P.build(model)
    wr = _Writer(p)
    n_in = int(np.prod(p.input_shape))
    max_elems = max(p.activation_sizes())
    norm = p.normalize
    wr.tables.append("/* normalisation (docs/algorithm.md §2): int8 value of pixel p of channel c at "
                     "[c * 256 + p] */\n" + _array("int8_t", "NORMALIZE", norm.table.reshape(-1)))
    layers = [s for s in p.steps if not isinstance(s, P.Flatten)]
    for i, s in enumerate(layers):
        if isinstance(s, P.Dense):
            wr.dense(i, s, i == len(layers) - 1)
        elif isinstance(s, P.Conv):
            wr.conv(i, s)
        else:
            wr.pool(i, s)
    calls = []
    src, dst = "a", "b"
    for i in range(len(layers) - 1):
        calls.append(f"    layer{i}({src}, {dst});")
        src, dst = dst, src
    calls.append(f"    layer{len(layers) - 1}({src}, scores);")
    guard = f"{name.upper()}_H"
    shape = "x".join(str(v) for v in p.input_shape)
    header = (
        f"/* {name}.h: a nitrod-rs {p.kind.upper()} ({p.description}), generated by nitrod-rs "
        f"{__version__}.\n"
        f"   Integer-only C99 inference, bit-identical to the engine's predict_logits. */\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        "#include <stddef.h>\n#include <stdint.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        f"/* uint8 pixel values per image, row-major {shape} */\n"
        f"#define {up}_INPUT_SIZE {n_in}\n"
        f"/* number of scores */\n#define {up}_CLASSES {p.classes}\n"
        f"/* bytes of the caller's scratch buffer (two int8_t tensors; no alignment needed) */\n"
        f"#define {up}_SCRATCH_BYTES {2 * max_elems}\n\n"
        f"/* Normalise image ({up}_INPUT_SIZE raw pixels), run the model, write its\n"
        f"   {up}_CLASSES scores (in [-127, 127]) and return the class of the largest\n"
        f"   (the first on ties). scratch: {up}_SCRATCH_BYTES bytes, overwritten. */\n"
        f"int {prefix}_predict(const uint8_t *image, int32_t *scores, void *scratch);\n\n"
        "#ifdef __cplusplus\n}\n#endif\n\n"
        f"#endif /* {guard} */\n")
    if norm.table.shape[0] == 1:
        norm_stmt = "a[k] = NORMALIZE[image[k]];"
    else:
        norm_stmt = f"a[k] = NORMALIZE[(k / {norm.plane}) * 256 + image[k]];"
    source = (
        f"/* {name}.c: generated by nitrod-rs {__version__}; see {name}.h. No floating point,\n"
        "   no allocation, no library calls. */\n"
        f"#include \"{name}.h\"\n\n"
        + "\n".join(wr.tables) + "\n" + wr.helper_source() + "\n" + "\n".join(wr.funcs)
        + f"\nint {prefix}_predict(const uint8_t *image, int32_t *scores, void *scratch)\n{{\n"
        f"    int8_t *a = (int8_t *)scratch;\n"
        f"    int8_t *b = a + {max_elems};\n"
        f"    int32_t k, best = 0;\n"
        f"    for (k = 0; k < {n_in}; ++k) {{\n"
        f"        {norm_stmt}\n"
        f"    }}\n"
        + "\n".join(calls) + "\n"
        f"    for (k = 1; k < {p.classes}; ++k) {{\n"
        f"        if (scores[k] > scores[best]) best = k;\n"
        f"    }}\n"
        f"    return (int)best;\n}}\n")
    return {f"{name}.h": header, f"{name}.c": source}


def to_c(model: Any, out_dir: PathLike, *, name: str = "nitrod_model",
         prefix: str = "nitrod") -> list[Path]:
    """Write ``<out_dir>/<name>.h`` and ``<out_dir>/<name>.c`` (the directory is created if
    needed); returns their paths. See the module docstring for the interface."""
    files = generate(model, name=name, prefix=prefix)
    d = Path(os.fspath(out_dir))
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname, text in files.items():
        path = d / fname
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        paths.append(path)
    return paths
