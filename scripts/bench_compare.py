#!/usr/bin/env python3
"""nitrod-rs side by side with what a user would otherwise run, in one table.

  (a) GEMM: the engine's exact integer GEMM (``nitrod_rs._core.ops.gemm_bench``, timed inside
      Rust, and ``nitrod_rs.ops.linear`` timed from Python) against numpy float32 ``@``
      (OpenBLAS sgemm), numpy int32 ``@`` (no BLAS; may wrap) and numpy int64 ``@`` (exact), on
      the MLP2 first-layer forward shape and the im2col shape of VGG8B's second convolution.
  (b) One MLP2 (784-200-100-50-10) NITRO-D training step, batch 64, against a plain NumPy
      int64 transcription of the same step (``scripts/nitrod_numpy.py``); the two must end with
      bit-identical weights, which the script checks and reports.
  (c) PyTorch fp32 on the same networks: one MLP2 backprop step and one MLP2 epoch (937
      batches of 64), and one VGG8B step both by end-to-end backprop and with NITRO-D-shaped
      local heads (``scripts/bench_torch.py``). PyTorch lives in its own virtualenv, never in
      the project's: ``--torch-python PATH`` (or ``$NITROD_TORCH_PYTHON``) runs it there as a
      subprocess; without either, torch is imported here if it can be, else (c) says skipped.

Ratio = competitor time / nitrod-rs time for the same work (for GEMMs: nitrod-rs GMAC/s over
the competitor's), so > 1 means nitrod-rs is faster. Medians over the repeats, after warm-up.
Run from the repository root:
``.venv/bin/python scripts/bench_compare.py [--threads N] [--torch-python PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any


# The environment variable naming the interpreter with torch (see --torch-python).
TORCH_ENV = "NITROD_TORCH_PYTHON"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="threads for nitrod-rs, OpenBLAS and torch (default: usable cores)")
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    p.add_argument("--no-vgg8b", action="store_true",
                   help="skip the VGG8B step comparison (it runs only with torch)")
    p.add_argument("--torch-python", metavar="PATH",
                   default=os.environ.get(TORCH_ENV) or None,
                   help="python of a separate virtualenv with torch; the PyTorch timings run "
                        f"there (scripts/bench_torch.py). Default: ${TORCH_ENV}, else "
                        "torch imported into this interpreter if it can be, else skipped")
    return p.parse_args()


ARGS = _args()
T = max(1, ARGS.threads)
# Thread counts must be fixed before numpy (OpenBLAS), nitrod_rs (rayon) and torch load.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[var] = str(T)

import numpy as np  # noqa: E402

import nitrod_rs  # noqa: E402
import nitrod_rs.presets  # noqa: E402
from nitrod_rs import _core, ops  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nitrod_numpy import NumpyMLP  # noqa: E402

RNG = np.random.default_rng(20240711)
ROWS: list[tuple[str, str, str, str, str]] = []
NOTES: list[str] = []
SHARES: list[float] = []


# -- measuring ---------------------------------------------------------------------------------


def wall(fn: Callable[[], Any]) -> Callable[[], float]:
    """``fn`` made to return its own wall time in seconds."""
    def run() -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    return run


def compare(fns: dict[str, Callable[[], float]], repeats: int,
            warmup: int = 1) -> dict[str, float]:
    """Median seconds of each timer over ``repeats`` rounds after ``warmup`` rounds. The
    candidates take turns within every round, so load from other processes (this may be a
    shared machine) falls on all of them alike instead of on whichever ran during a spike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for k, fn in fns.items():
            t = fn()
            if i >= warmup:
                times[k].append(t)
    return {k: median(v) for k, v in times.items()}


def fmt_time(s: float) -> str:
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_gemm(s: float, macs: int) -> str:
    return f"{fmt_time(s)} {macs / s / 1e9:7.2f} GMAC/s"


def cpu_ticks() -> tuple[int, int, int] | None:
    """(all CPUs' busy ticks incl. hypervisor steal, all ticks, this process's ticks and its
    finished children's)."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = f
    busy = user + nice + system + irq + softirq + steal
    # utime + stime, and cutime + cstime: the waited-for children (the torch subprocess).
    return busy, busy + idle + iowait, sum(int(v) for v in mine[11:15])


def others_share(a: tuple[int, int, int] | None, b: tuple[int, int, int] | None) -> float | None:
    """Fraction of the machine's CPU time that other processes (and the hypervisor) took
    between two :func:`cpu_ticks` samples; what distorts multi-threaded timings most."""
    if a is None or b is None or b[1] <= a[1]:
        return None
    return max(0.0, ((b[0] - a[0]) - (b[2] - a[2])) / (b[1] - a[1]))


_SECTION: list[Any] = []  # [row index, cpu_ticks at its start] of the open section


def close_section() -> None:
    if _SECTION:
        i, start = _SECTION.pop(), _SECTION.pop()
        share = others_share(start, cpu_ticks())
        if share is not None:
            ROWS[i] = (f"{ROWS[i][0]}  [other processes: {share:.0%} of CPU]", *ROWS[i][1:])
            SHARES.append(share)


def section(title: str) -> None:
    close_section()
    ROWS.append((title, "", "", "", ""))
    _SECTION.extend([cpu_ticks(), len(ROWS) - 1])


def row(what: str, nitro: str, competitor: str, comp: str, ratio: float | None) -> None:
    ROWS.append((what, nitro, competitor, comp, "-" if ratio is None else f"{ratio:.2f}x"))


# -- the machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def openblas_info() -> str:
    """OpenBLAS's own config string and thread count, read from the library numpy loaded."""
    import ctypes

    try:
        libs = {ln.split()[-1] for ln in Path("/proc/self/maps").read_text().splitlines()
                if "openblas" in ln.lower() and ln.split()[-1].startswith("/")}
    except OSError:
        libs = set()
    for path in sorted(libs):
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                try:
                    cfg = getattr(lib, f"{prefix}_get_config{suffix}")
                    nth = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                except AttributeError:
                    continue
                cfg.restype = ctypes.c_char_p
                n = nth()
                return f"{cfg().decode().strip()}, {n} thread{'' if n == 1 else 's'}"
    return f"BLAS library not identified (OPENBLAS_NUM_THREADS={T})"


# -- (a) GEMM ----------------------------------------------------------------------------------


def gemm_rows(label: str, m: int, k: int, n: int, wmax: int, repeats: int,
              int_rows: int) -> None:
    """One shape: nitrod (Rust timer, Python call) vs fp32 sgemm, int32 and int64 numpy."""
    macs = m * k * n
    x = RNG.integers(-127, 128, size=(m, k), dtype=np.int8)
    w = RNG.integers(-wmax, wmax + 1, size=(n, k), dtype=np.int32)
    section(f"(a) GEMM {label}: M={m} K={k} N={n}, int8 x int32 (|w| <= {wmax})")
    # Correctness first: the engine's result is exact, compare with int64 numpy on a few rows.
    head = min(m, 256)
    exact = x[:head].astype(np.int64) @ w.T.astype(np.int64)
    if not np.array_equal(ops.linear(x[:head], w), exact):
        raise SystemExit(f"nitrod_rs.ops.linear differs from numpy int64 on {label}")
    # numpy's integer matmul has no BLAS and one thread: time it on the first int_rows rows
    # and compare throughput (time per MAC).
    r = min(m, int_rows)
    sub = "" if r == m else f" [{r} of {m} rows]"
    sub_macs = r * k * n
    xf, wf = x.astype(np.float32), w.astype(np.float32)
    xi32, wi32 = x[:r].astype(np.int32), w.astype(np.int32)
    xi64, wi64 = x[:r].astype(np.int64), w.astype(np.int64)
    # gemm_bench and ops.linear both run in rayon's global pool (RAYON_NUM_THREADS = T).
    t = compare({
        "rust": lambda: _core.ops.gemm_bench(x, w, 1)[0] / 1e9,
        "py": wall(lambda: ops.linear(x, w)),
        "sgemm": wall(lambda: xf @ wf.T),
        "i32": wall(lambda: xi32 @ wi32.T),
        "i64": wall(lambda: xi64 @ wi64.T),
    }, repeats)
    t_rust, t_py, t_sgemm, t_i32, t_i64 = (t[name] for name in ("rust", "py", "sgemm", "i32", "i64"))
    nitro = fmt_gemm(t_rust, macs)
    row("nitrod gemm (timed in Rust)", nitro, "numpy fp32 @ (OpenBLAS sgemm)",
        fmt_gemm(t_sgemm, macs), t_sgemm / t_rust)
    row("nitrod ops.linear (Python call)", fmt_gemm(t_py, macs),
        "numpy fp32 @ (OpenBLAS sgemm)", fmt_gemm(t_sgemm, macs), t_sgemm / t_py)
    wraps = int(np.abs(x).max()) * wmax * k > 2**31 - 1
    row("nitrod gemm (timed in Rust)", nitro,
        f"numpy int32 @{sub}" + (" (can wrap)" if wraps else ""),
        fmt_gemm(t_i32, sub_macs), (t_i32 / sub_macs) / (t_rust / macs))
    row("nitrod gemm (timed in Rust)", nitro, f"numpy int64 @ (exact){sub}",
        fmt_gemm(t_i64, sub_macs), (t_i64 / sub_macs) / (t_rust / macs))


# -- (b) MLP2 step vs NumPy, (c) vs torch ------------------------------------------------------

HYPER: dict[str, Any] = {"lr_inv": 512, "lr_amp_factor": 640, "fwd_decay_inv": 10000, "subnet_decay_inv": 8000}
MLP2 = [784, 200, 100, 50, 10]


def mlp2_rows(repeats: int) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.integers(-127, 128, size=(64, 784), dtype=np.int8)
    y = RNG.integers(0, 10, size=64).astype(np.int64)
    section("(b) MLP2 784-200-100-50-10 training step, batch 64, paper hyper-parameters")
    model = nitrod_rs.MLP(MLP2, seed=0)
    init = model.state_dict()
    one = nitrod_rs.MLP(MLP2, seed=0)
    ref = NumpyMLP(init, hidden=3)
    # threads=None: rayon's global pool (T threads); threads=1 builds a one-thread pool per call.
    t = compare({
        "nitro": wall(lambda: model.train_batch(x, y, **HYPER)),
        "one": wall(lambda: one.train_batch(x, y, threads=1, **HYPER)),
        "numpy": wall(lambda: ref.train_step(x, y, **HYPER)),
    }, repeats, warmup=3)
    t_nitro, t_one, t_np = t["nitro"], t["one"], t["numpy"]
    steps = repeats + 3
    # Every model took the same steps on the same batch: the weights must agree bit for bit.
    sd, sd1, sdr = model.state_dict(), one.state_dict(), ref.state_dict()
    moved = sum(int((sd[k] != init[k]).sum()) for k in sd)
    diff = sum(int((sd[k] != sdr[k]).sum()) + int((sd1[k] != sdr[k]).sum()) for k in sd)
    if diff or not moved:
        raise SystemExit(f"MLP2: nitrod-rs and the NumPy step disagree in {diff} weights "
                         f"after {steps} steps ({moved} weights moved)")
    who = "1 thread" if T == 1 else f"{T} threads and 1 thread"
    NOTES.append(f"MLP2: nitrod-rs ({who}) and the NumPy int64 step end "
                 f"with bit-identical weights after {steps} steps ({moved} of "
                 f"{model.num_parameters} weights changed).")
    row(f"nitrod MLP.train_batch, {T} thr", fmt_time(t_nitro), "NumPy int64 NITRO-D step",
        fmt_time(t_np), t_np / t_nitro)
    if T != 1:
        row("nitrod MLP.train_batch, 1 thr", fmt_time(t_one), "NumPy int64 NITRO-D step",
            fmt_time(t_np), t_np / t_one)
    return x, y


TORCH_HOWTO = (f"pass --torch-python PATH (or set {TORCH_ENV}) to a python with torch, "
               "e.g. a separate venv: python3 -m venv ~/torchenv && ~/torchenv/bin/pip install "
               "torch numpy")


def torch_measure(argv: list[str]) -> tuple[dict[str, Any] | None, str]:
    """PyTorch timings from ``scripts/bench_torch.py`` (its arguments ``argv``) and where they
    were taken: in the interpreter ``--torch-python`` names, else in this one when it can
    import torch. ``None`` and the reason when neither works."""
    exe = ARGS.torch_python
    if not exe:
        try:
            import torch  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            return None, f"torch is not importable here; {TORCH_HOWTO}"
        import bench_torch

        return bench_torch.measure(bench_torch.parse(argv)), "in-process"
    script = Path(__file__).resolve().parent / "bench_torch.py"
    try:
        done = subprocess.run([exe, str(script), *argv], capture_output=True, text=True,
                              check=False)
    except OSError as e:
        return None, f"--torch-python {exe}: {e.strerror or e}"
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{exe} {script.name} failed (exit {done.returncode}): {tail}"
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None, f"{exe} {script.name} printed no JSON: {lines[-1][:80]!r}"
    return result, exe


def cnn_torch_args(cnn: Any) -> list[str] | None:
    """``bench_torch.py`` arguments describing ``cnn`` (its features, classifier and learning
    heads as the engine built them), or ``None`` when it has a layer bench_torch lacks."""
    cfg = cnn.config
    feats: list[str] = []
    for kind, nums in cfg["features"]:
        if kind == "conv" and list(nums[1:]) == [3, 1, 1]:
            feats.append(str(nums[0]))
        elif kind == "maxpool" and list(nums) == [2]:
            feats.append("P")
        else:
            return None
    pools = [[*g["kernel"], *g["padding"], g["features"]] for g in cnn.head_geometries()]
    return ["--cnn-input", ",".join(str(v) for v in cfg["input"]),
            "--cnn-features", ",".join(feats),
            "--cnn-classifier", ",".join(str(v) for v in cfg["classifier"]),
            "--classes", str(cfg["classes"]),
            "--head-pools", json.dumps(pools), "--head-pool-kind", str(cfg["head_pool"])]


def torch_rows(x8: np.ndarray, y: np.ndarray, repeats: int, epoch_repeats: int,
               vgg8b: bool) -> None:
    """(c): nitrod-rs and PyTorch fp32 on the same MLP2 step and epoch and VGG8B step. The
    torch side runs first, all of it (possibly in another interpreter), then nitrod-rs."""
    section("(c) PyTorch fp32 (backprop: cross-entropy, SGD; local: per-block heads, MSE, SGD)")
    batch, steps = 64, 937
    vgg_repeats = 2 if vgg8b else 0
    argv = ["--threads", str(T), "--repeats", str(repeats), "--epoch-repeats",
            str(epoch_repeats), "--vgg-repeats", str(vgg_repeats), "--batch", str(batch),
            "--epoch-steps", str(steps), "--mlp", ",".join(str(v) for v in MLP2)]
    cnn = kw = None
    if vgg8b:
        cnn, hyper = nitrod_rs.presets.vgg8b("fashion-mnist", seed=0)
        kw = {k: hyper[k] for k in HYPER}
        cnn_args = cnn_torch_args(cnn)
        if cnn_args is None:
            NOTES.append("VGG8B: the preset has a layer scripts/bench_torch.py does not build; "
                         "no torch CNN rows.")
            argv[argv.index("--vgg-repeats") + 1] = "0"
        else:
            argv += cnn_args
    res, where = torch_measure(argv)
    if res is None:
        row("torch: skipped (see the note below)", "", "", "", None)
        NOTES.append(f"PyTorch: {where}")
        return
    tv = f"torch {res['torch']}"
    nth = int(res["threads"])
    NOTES.append(f"PyTorch: {tv} ({where}, {nth} thread{'' if nth == 1 else 's'}), fp32, "
                 "random int8 inputs / 64; the same layer widths, no biases.")
    ours = nitrod_rs.MLP(MLP2, seed=0)
    t_step = compare({"nitro": wall(lambda: ours.train_batch(x8, y, **HYPER))}, repeats,
                     warmup=3)["nitro"]
    row(f"nitrod MLP2 step, {T} thr", fmt_time(t_step), f"{tv} MLP2 step (backprop)",
        fmt_time(res["mlp_step"]), res["mlp_step"] / t_step)
    if "mlp_epoch" in res:
        n = int(res["epoch_images"])
        xe = RNG.integers(-127, 128, size=(n, MLP2[0]), dtype=np.int8)
        ye = RNG.integers(0, 10, size=n).astype(np.int64)
        t_epoch = compare({"nitro": wall(lambda: ours.fit(xe, ye, epochs=1, batch_size=batch,
                                                          progress=False, **HYPER))},
                          epoch_repeats)["nitro"]
        row(f"nitrod MLP2 epoch (fit, {n // batch}x{batch})", fmt_time(t_epoch),
            f"{tv} MLP2 epoch ({n // batch} steps)", fmt_time(res["mlp_epoch"]),
            res["mlp_epoch"] / t_epoch)
    if not vgg8b:
        row("VGG8B: skipped (--no-vgg8b)", "", "", "", None)
        return
    if cnn is None or kw is None or "cnn_backprop_step" not in res:
        return
    # VGG8B: C128 C256 P C256 C512 P C512 P C512 P | 1024 (3x3, padding 1), batch 64, 1x28x28.
    # nitrod-rs trains it with local heads; torch both ways: end-to-end backprop, local heads.
    xi = RNG.integers(-127, 128, size=(batch, 1, 28, 28), dtype=np.int8)
    t_cnn = compare({"nitro": wall(lambda: cnn.train_batch(xi, y, **kw))}, 2)["nitro"]
    label = f"nitrod VGG8B step (local heads), {T} thr"
    row(label, fmt_time(t_cnn), "torch VGG8B step (backprop)",
        fmt_time(res["cnn_backprop_step"]), res["cnn_backprop_step"] / t_cnn)
    if "cnn_local_step" in res:
        row(label, fmt_time(t_cnn), "torch VGG8B step (local heads)",
            fmt_time(res["cnn_local_step"]), res["cnn_local_step"] / t_cnn)


# -- main --------------------------------------------------------------------------------------


def print_table() -> None:
    head = ("benchmark", "nitrod-rs median", "competitor", "competitor median", "ratio")
    data = [r for r in ROWS if r[1] or r[2] or r[4] != ""]
    widths = [max(len(r[i]) for r in [head, *data]) for i in range(5)]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]),
                          r[3].rjust(widths[3]), r[4].rjust(widths[4])]).rstrip()

    rule = "-" * len(line(head))
    print(line(head))
    for r in ROWS:
        if not (r[1] or r[2] or r[4]):
            print(rule)
            print(r[0])
        else:
            print(line(r))
    print(rule)


def main() -> None:
    t0 = time.perf_counter()
    cores = os.cpu_count()
    print(f"machine: {cpu_model()}, {cores} logical CPUs "
          f"({len(os.sched_getaffinity(0))} usable)")
    print(f"threads: nitrod-rs {T} (rayon), numpy {openblas_info()}; "
          f"numpy integer @ is single-threaded (no BLAS)")
    print(f"versions: nitrod_rs {nitrod_rs.__version__}, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}")
    print("load average (1/5/15 min) at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("ratio = competitor time / nitrod-rs time for the same work (> 1: nitrod-rs faster);"
          " medians after warm-up")
    q = ARGS.quick
    gemm_rows("MLP2 layer-1 forward", 64, 784, 200, 32767, 10 if q else 60, 64)
    gemm_rows("MLP2 layer-1 forward", 64, 784, 200, 64, 10 if q else 60, 64)
    gemm_rows("VGG8B conv2 im2col", 64 * 28 * 28, 1152, 256, 32767, 2 if q else 5, 1024)
    x, y = mlp2_rows(5 if q else 30)
    torch_rows(x, y, 5 if q else 30, 1 if q else 3, not ARGS.no_vgg8b)
    close_section()
    print()
    print_table()
    for note in NOTES:
        print(note)
    if SHARES and max(SHARES) > 0.10:
        print(f"WARNING: other processes took up to {max(SHARES):.0%} of the CPUs during a "
              "section: its timings are distorted (multi-threaded ones, OpenBLAS's above all); "
              "rerun on a quiet machine" + (", or compare with --threads 1." if T > 1 else "."))
    print("load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg())
          + f"; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
