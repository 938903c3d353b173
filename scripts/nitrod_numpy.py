"""A plain-NumPy transcription of one NITRO-D MLP training step (docs/algorithm.md §3–§5),
independent of the Rust engine.

It exists for two reasons: ``scripts/bench_compare.py`` times it against ``nitrod_rs`` (what
does the Rust engine buy over straightforward vectorised NumPy?), and
``tests/test_numpy_oracle.py`` checks that it produces the same weights bit for bit — an
oracle written from the spec, not from the engine's code.

Everything is ``int64`` (exact for any weight that fits ``int32``, so no overflow reasoning is
needed); the products are NumPy integer matmuls (no BLAS). Only the paper's configuration is
covered: no bias, no dropout, NITRO-ReLU, ``compat="exact"``.

Weights use the engine's names (``linear_encoder_00`` …, ``linear_pred_00`` …, ``linear_03``),
shape ``out × in``; the forward product is ``x · Wᵀ``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: algorithm.md §3.4: mean correction μ_a of NITRO-ReLU by inverse negative slope a.
NITRO_RELU_MU = {3: 31, 4: 36, 5: 38, 7: 40, 8: 42, 10: 43, 15: 44, 16: 44, 20: 45}

I64 = np.int64


def tdiv(a: np.ndarray, b: int) -> np.ndarray:
    """Division truncating toward zero (algorithm.md §1) by a positive integer ``b``."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def scaling(z: np.ndarray, fan_in: int) -> np.ndarray:
    """algorithm.md §3.3: ``clip8(tdiv(z, 2⁸·fan_in))``."""
    return np.clip(tdiv(z, 256 * fan_in), -127, 127)


def nitro_relu(x: np.ndarray, a: int) -> np.ndarray:
    """algorithm.md §3.4 forward on the scaling output ``x ∈ [−127, 127]``."""
    return np.clip(x, 0, 127) + tdiv(np.clip(x, -127, 0), a) - NITRO_RELU_MU[a]


def nitro_relu_backward(x: np.ndarray, delta: np.ndarray, a: int) -> np.ndarray:
    """``tdiv(δ, s(x))``: ``s = 1`` on ``[0, 127)``, ``a`` on ``[−127, 0)``, ∞ (→ 0) elsewhere."""
    pos = (x >= 0) & (x < 127)
    neg = (x >= -127) & (x < 0)
    return np.where(pos, delta, np.where(neg, tdiv(delta, a), 0))


def sgd(p: np.ndarray, g: np.ndarray, lr_inv: int, amp: int, decay_inv: int,
        name: str) -> np.ndarray:
    """algorithm.md §5: ``P − (tdiv(G, lr_inv·amp) + tdiv(P, decay_inv))``; an error if it
    leaves int32."""
    d = tdiv(g, lr_inv * amp)
    if decay_inv > 0:
        d = d + tdiv(p, decay_inv)
    new = p - d
    if new.size and (new.min() < -(2**31) or new.max() > 2**31 - 1):
        raise OverflowError(f"{name}: an updated weight leaves int32")
    return new


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """algorithm.md §2: the true class is 32, the others 0."""
    t = np.zeros((len(labels), classes), I64)
    t[np.arange(len(labels)), labels] = 32
    return t


class NumpyMLP:
    """A NITRO-D local-loss MLP (algorithm.md §4.2) held as ``int64`` NumPy arrays."""

    def __init__(self, state: dict[str, np.ndarray], hidden: int, *, slope: int = 4) -> None:
        self.hidden = hidden
        self.slope = slope
        self.w = {k: np.asarray(v, I64).copy() for k, v in state.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.astype(np.int32) for k, v in self.w.items()}

    def train_step(self, x: np.ndarray, labels: np.ndarray, *, lr_inv: int = 512,
                   lr_amp_factor: int = 640, fwd_decay_inv: int = 0,
                   subnet_decay_inv: int = 0) -> dict[str, Any]:
        """One algorithm.md §4.3 step; returns the output ``loss``/``correct`` and the blocks'."""
        w, a = self.w, self.slope
        # 1. Forward (training mode): remember each block's input, activation input and output.
        saved = []
        h = np.asarray(x, I64)
        for i in range(self.hidden):
            wf = w[f"linear_encoder_{i:02d}"]
            s = scaling(h @ wf.T, wf.shape[1])
            out = nitro_relu(s, a)
            saved.append((h, s, out))
            h = out
        wo = w[f"linear_{self.hidden:02d}"]
        pred = scaling(h @ wo.T, wo.shape[1])
        target = one_hot(labels, wo.shape[0])
        # 2. Output layer: δ = ŷ − y, G = δᵀ·x, update (amp 1, subnet decay).
        delta = pred - target
        stats: dict[str, Any] = {
            "loss": int((delta * delta).sum()),
            "correct": int((pred.argmax(axis=1) == labels).sum()),
            "block_loss": [], "block_correct": [],
        }
        name = f"linear_{self.hidden:02d}"
        w[name] = sgd(wo, delta.T @ h, lr_inv, 1, subnet_decay_inv, name)
        # 3. Every block: head on its saved output, local error, head update (δ·W with the
        # weights before it), activation backward, forward-layer update.
        for i, (xin, s, out) in enumerate(saved):
            hn, fn = f"linear_pred_{i:02d}", f"linear_encoder_{i:02d}"
            wh = w[hn]
            ph = scaling(out @ wh.T, wh.shape[1])
            dh = ph - target
            stats["block_loss"].append(int((dh * dh).sum()))
            stats["block_correct"].append(int((ph.argmax(axis=1) == labels).sum()))
            back = dh @ wh
            w[hn] = sgd(wh, dh.T @ out, lr_inv, 1, subnet_decay_inv, hn)
            d_act = nitro_relu_backward(s, back, a)
            w[fn] = sgd(w[fn], d_act.T @ xin, lr_inv, lr_amp_factor, fwd_decay_inv, fn)
        return stats
