#!/usr/bin/env python3
"""PyTorch fp32 timings for ``scripts/bench_compare.py``, in whatever interpreter has torch.

PyTorch is a multi-GB install that lives in its own virtualenv, never in the project's (see
BENCHMARKS.md); ``bench_compare.py`` runs this file there as a subprocess
(``--torch-python PATH``), or imports it when ``torch`` happens to be importable next to
``nitrod_rs``. It needs only the standard library, numpy and torch: the networks' shapes come in
as arguments (``bench_compare.py`` reads them from the nitrod-rs presets, so both sides time the
same networks), and the result is one JSON line on stdout, timings in seconds (medians after
warm-up). Inputs are random int8 values scaled to fp32 (``x / 64``), labels random classes;
fp32 arithmetic costs the same whatever the values.

Timed work:
  mlp2_step     one end-to-end backprop step (cross-entropy, SGD) of the MLP, one batch;
  mlp2_epoch    ``--epoch-steps`` such steps over a shuffled random training set (one epoch);
  vgg8b_backprop  one end-to-end backprop step (cross-entropy, SGD) of the CNN;
  vgg8b_local   one local-loss step of the same CNN: every block (conv or linear) learns from
                its own head on a detached input, like NITRO-D (algorithm.md §4.1): conv heads
                are the pooling given by ``--head-pools`` → flatten → linear to the classes; linear
                heads a linear to the classes; squared-error loss against one-hot labels, as
                NITRO-D's "pred" loss; all heads' losses go into one backward (their graphs are
                disjoint, so no gradient crosses a block) and one SGD step.

Standalone: ``python scripts/bench_torch.py --threads 2`` (defaults are MLP2 and VGG8B).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from statistics import median
from typing import Any


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--repeats", type=int, default=30, help="timed MLP steps")
    p.add_argument("--epoch-repeats", type=int, default=3, help="timed MLP epochs (0: none)")
    p.add_argument("--vgg-repeats", type=int, default=2, help="timed CNN steps (0: no CNN)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epoch-steps", type=int, default=937, help="batches in one MLP epoch")
    p.add_argument("--mlp", type=_ints, default=[784, 200, 100, 50, 10],
                   help="MLP widths, inputs first, classes last (default MLP2)")
    p.add_argument("--cnn-input", type=_ints, default=[1, 28, 28], help="C,H,W")
    p.add_argument("--cnn-features", default="128,256,P,256,512,P,512,P,512,P",
                   help="conv widths (3x3, padding 1) and P (2x2 max-pool); default VGG8B")
    p.add_argument("--cnn-classifier", type=_ints, default=[1024], help="hidden linear widths")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--head-pools", type=json.loads, default=None,
                   help="JSON list, one [kh, kw, ph, pw, D] per conv block: its head's pooling "
                        "(kernel = stride, padding; [1, 1, 0, 0, D]: none) and the flattened "
                        "head input D it must give (checked). Without it there is no "
                        "local-loss step")
    p.add_argument("--head-pool-kind", choices=("max", "avg"), default="max")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    times = []
    for i in range(warmup + repeats):
        t = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return median(times)


def measure(a: argparse.Namespace) -> dict[str, Any]:
    """All timings asked for by ``a`` (see :func:`parse`), as a JSON-ready dict."""
    # Thread pools must be sized before torch starts them.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(a.threads))
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    nn = torch.nn
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                           "python": sys.version.split()[0]}

    def images(*shape: int) -> Any:
        return torch.from_numpy(rng.integers(-127, 128, size=shape, dtype=np.int8)
                                .astype(np.float32) / 64.0)

    def labels(n: int) -> Any:
        return torch.from_numpy(rng.integers(0, a.classes, size=n).astype(np.int64))

    def backprop_step(net: Any, x: Any, y: Any) -> Callable[[], None]:
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        loss_fn = nn.CrossEntropyLoss()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()
        return step

    # -- MLP: one step, one epoch ---------------------------------------------------------
    widths = a.mlp
    layers: list[Any] = []
    for i, o in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(i, o, bias=False), nn.ReLU()]
    mlp = nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1], bias=False))
    x, y = images(a.batch, widths[0]), labels(a.batch)
    out["mlp_step"] = median_time(backprop_step(mlp, x, y), a.repeats, warmup=3)
    if a.epoch_repeats > 0:
        n = a.epoch_steps * a.batch
        xs, ys = images(n, widths[0]), labels(n)
        opt = torch.optim.SGD(mlp.parameters(), lr=0.01)
        loss_fn = nn.CrossEntropyLoss()

        def epoch() -> None:
            perm = torch.randperm(n)
            xe, ye = xs[perm], ys[perm]
            for s in range(0, n, a.batch):
                opt.zero_grad(set_to_none=True)
                loss_fn(mlp(xe[s:s + a.batch]), ye[s:s + a.batch]).backward()
                opt.step()
        out["mlp_epoch"] = median_time(epoch, a.epoch_repeats, warmup=1)
        out["epoch_images"] = n

    if a.vgg_repeats <= 0:
        return out
    # -- CNN: end-to-end backprop, and local losses -----------------------------------------
    c, h, w = a.cnn_input
    feats: list[Any] = []
    ch, dh, dw = c, h, w
    for item in a.cnn_features.split(","):
        if item == "P":
            feats.append(nn.MaxPool2d(2))
            dh, dw = dh // 2, dw // 2
        else:
            feats += [nn.Conv2d(ch, int(item), 3, padding=1, bias=False), nn.ReLU()]
            ch = int(item)
    cls: list[Any] = []
    prev = ch * dh * dw
    for width in a.cnn_classifier:
        cls += [nn.Linear(prev, width, bias=False), nn.ReLU()]
        prev = width
    vgg = nn.Sequential(*feats, nn.Flatten(), *cls, nn.Linear(prev, a.classes, bias=False))
    xv, yv = images(a.batch, c, h, w), labels(a.batch)
    out["cnn_backprop_step"] = median_time(backprop_step(vgg, xv, yv), a.vgg_repeats, warmup=1)
    if a.head_pools is not None:
        out["cnn_local_step"] = median_time(local_step(a, torch, xv, yv), a.vgg_repeats,
                                            warmup=1)
    return out


def local_step(a: argparse.Namespace, torch: Any, x: Any, y: Any) -> Callable[[], None]:
    """One NITRO-D-shaped local-learning step of the CNN (see the module docstring)."""
    nn = torch.nn
    c, h, w = a.cnn_input
    pool_cls = nn.MaxPool2d if a.head_pool_kind == "max" else nn.AvgPool2d
    pools = iter(a.head_pools)
    # stages: (forward module, head module or None); None heads are pass-through pooling.
    stages: list[tuple[Any, Any]] = []
    ch, dh, dw = c, h, w
    for item in a.cnn_features.split(","):
        if item == "P":
            stages.append((nn.MaxPool2d(2), None))
            dh, dw = dh // 2, dw // 2
            continue
        conv = nn.Conv2d(ch, int(item), 3, padding=1, bias=False)
        ch = int(item)
        kh, kw, ph, pw, want = next(pools)
        head: list[Any] = []
        hh, hw = dh, dw
        if (kh, kw) != (1, 1):
            head.append(pool_cls((kh, kw), stride=(kh, kw), padding=(ph, pw)))
            hh, hw = (dh + 2 * ph - kh) // kh + 1, (dw + 2 * pw - kw) // kw + 1
        if ch * hh * hw != want:
            raise SystemExit(f"conv block {len(stages)}: head pooling {kh}x{kw} padding "
                             f"{ph},{pw} gives {ch * hh * hw} features, expected {want}")
        head += [nn.Flatten(), nn.Linear(ch * hh * hw, a.classes, bias=False)]
        stages.append((nn.Sequential(conv, nn.ReLU()), nn.Sequential(*head)))
    stages.append((nn.Flatten(), None))
    prev = ch * dh * dw
    for width in a.cnn_classifier:
        stages.append((nn.Sequential(nn.Linear(prev, width, bias=False), nn.ReLU()),
                       nn.Linear(width, a.classes, bias=False)))
        prev = width
    output = nn.Linear(prev, a.classes, bias=False)
    params = [p for f, hd in stages for m in (f, hd) if m is not None for p in m.parameters()]
    opt = torch.optim.SGD(params + list(output.parameters()), lr=0.01)
    target = torch.nn.functional.one_hot(y, a.classes).float()
    mse = nn.MSELoss(reduction="sum")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        v, losses = x, []
        for fwd, learn in stages:
            if learn is None:
                v = fwd(v)
            else:
                v = fwd(v.detach())
                losses.append(mse(learn(v), target))
        losses.append(mse(output(v.detach()), target))
        sum(losses).backward()
        opt.step()
    return step


def main() -> None:
    print(json.dumps(measure(parse())), flush=True)


if __name__ == "__main__":
    main()
