"""The text of :meth:`MLP.summary` / :meth:`CNN.summary`: one row per layer, from the engine's
own description of the model (parameter names and shapes, a CNN's feature shapes and learning
heads), never a second derivation of them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np


def _position(name: str) -> int:
    """The block position a parameter name ends with (``conv_encoder_02`` -> 2; the engine names
    every layer by its position: ``nitro_core::names``)."""
    return int(name.split(".")[0].rsplit("_", 1)[1])


def _bits(w: np.ndarray) -> int:
    """Bits a signed integer type needs to hold every value of ``w`` (sign included)."""
    return int(np.abs(w.astype(np.int64)).max(initial=0)).bit_length() + 1


def _shape(s: Any) -> str:
    return " x ".join(str(int(v)) for v in s)


class _Table:
    def __init__(self, model: Any) -> None:
        self.shapes = dict(model._m.parameter_shapes())
        self.state = model._m.state_dict()
        self.by_position: dict[int, list[str]] = defaultdict(list)
        for name in self.shapes:
            self.by_position[_position(name)].append(name)
        self.rows: list[tuple[str, str, str, str, str]] = []

    def layer(self, name: str, role: str, output: str) -> None:
        """A row for the layer ``name`` with its weight (and bias) counted together."""
        names = [n for n in self.shapes if n == name or n.startswith(name + ".")]
        params = sum(int(np.prod(self.shapes[n])) for n in names)
        bits = max(_bits(self.state[n]) for n in names)
        self.rows.append((name, role, output, f"{params:,}", f"int32, {bits} bits used"))

    def plain(self, name: str, role: str, output: str) -> None:
        self.rows.append((name, role, output, "0", ""))

    def names_at(self, position: int, prefix: str) -> list[str]:
        return [n for n in self.by_position[position] if n.startswith(prefix) and "." not in n]

    def linear_blocks(self, first: int, hidden: list[int], classes: int, act: str,
                      dropout: int) -> None:
        """The local-loss linear blocks from position ``first`` and the output layer."""
        drop = f", dropout {dropout}% (training)" if dropout else ""
        for j, width in enumerate(hidden):
            pos = first + j
            for n in self.names_at(pos, "linear_encoder"):
                self.layer(n, f"block {pos}: linear, scaling, {act}{drop}", f"{width} int8")
            for n in self.names_at(pos, "linear_pred"):
                self.layer(n, f"block {pos} learning head: linear, scaling", f"{classes} int8")
        out = first + len(hidden)
        for n in self.names_at(out, "linear"):
            self.layer(n, "output: linear, scaling", f"{classes} int8 scores")

    def text(self, title: str, notes: list[str]) -> str:
        head = ("layer", "role", "output", "parameters", "weights")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(len(head))]
        line = "  ".join("{:<%d}" % w for w in widths)
        out = [title, line.format(*head).rstrip(), "  ".join("-" * w for w in widths)]
        out += [line.format(*r).rstrip() for r in self.rows]
        total = sum(int(np.prod(s)) for s in self.shapes.values())
        return "\n".join([*out, f"total parameters: {total:,}", *notes])


def summary(model: Any) -> str:
    """The summary table of ``model`` (an ``MLP`` or a ``CNN``)."""
    m = model._m
    c = m.config
    t = _Table(model)
    act = str(c["activation"])
    if c["kind"] == "cnn":
        ci, h, w = c["input"]
        t.plain("input", "normalised image", f"{_shape((ci, h, w))} int8")
        heads = {g[0]: g for g in m.head_geometries()}
        n = 0
        for n, (spec, _, (ch, d)) in enumerate(m.feature_shapes(), start=1):
            kind, nums = spec
            pos = n - 1
            out = f"{_shape((ch, d, d))} int8"
            if kind == "conv":
                for name in t.names_at(pos, "conv_encoder"):
                    f, k, _, p = nums
                    t.layer(name, f"block {pos}: conv {k}x{k} pad {p}, scaling, {act}", out)
                    _, kernel, _, dims, feats = heads[name]
                    pool = (f"{c['head_pool']}-pool {_shape(kernel)}, "
                            if tuple(kernel) != (1, 1) else "")
                    for hn in t.names_at(pos, "linear_pred"):
                        t.layer(hn, f"block {pos} learning head: {pool}flatten {feats}, "
                                    f"linear, scaling", f"{c['classes']} int8")
            elif kind == "dropout":
                t.plain(f"dropout_{pos:02d}", f"dropout {nums[0]}% (training; int16 there)",
                        out)
            else:
                t.plain(f"{kind}_{pos:02d}", f"{kind[:3]}-pool {nums[0]}", out)
        fc, fd, _ = model.feature_shape
        t.plain("flatten", "features to the classifier", f"{fc * fd * fd} int8")
        t.linear_blocks(n, list(c["classifier"]), int(c["classes"]), act, int(c["dropout_pct"]))
        title = f"CNN {m.describe()}"
    else:
        t.plain("input", "normalised values", f"{c['inputs']} int8")
        t.linear_blocks(0, list(c["hidden"]), int(c["classes"]), act, int(c["dropout_pct"]))
        title = f"MLP {m.describe()}"
    stats = m.normalization
    notes = [
        "normalisation: " + ("none yet (fit() or fit_normalization() on pixels sets it)"
                             if stats is None else
                             f"per channel mean {stats[0]}, mean absolute deviation {stats[1]}"),
        "predict: the class of the largest int8 score (the lowest index on ties)",
    ]
    if m.hyper is not None:
        notes.append("last trained with: " + ", ".join(f"{k}={v}" for k, v in m.hyper.items()))
    return t.text(title, notes)
