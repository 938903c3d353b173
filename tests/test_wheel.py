"""The distributions a user installs: the wheel ``make wheel`` builds (manylinux, linked by zig
for glibc 2.17) and the sdist. Each is installed into a fresh virtualenv, and a short training
run there must give the same bits as the development build this test runs under.

Opt-in: these tests need a package index (numpy for the fresh environments, maturin to build
the sdist) and minutes of compiling, so they run only when ``NITROD_WHEEL`` names the folder
holding the wheel and the sdist — ``make wheel`` builds both into ``dist/`` and runs this file
with ``NITROD_WHEEL=dist``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = os.environ.get("NITROD_WHEEL")

pytestmark = pytest.mark.skipif(
    not DIST, reason="set NITROD_WHEEL=<folder with the wheel and sdist> (make wheel does)")

#: Trains a small MLP and prints what the test compares: where nitrod_rs was imported from, the
#: weights after training and the predictions. Runs both in the fresh environments and here.
SMOKE = r"""
import hashlib, json, sys
import numpy as np
import nitrod_rs

rng = np.random.default_rng(0)
x = rng.integers(0, 256, size=(384, 8, 8), dtype=np.uint8)
y = (x[:, :4].astype(np.int64).sum(axis=(1, 2)) > x[:, 4:].astype(np.int64).sum(axis=(1, 2)))
model = nitrod_rs.MLP([64, 16, 2], seed=3)
model.fit(x, y.astype(np.int64), epochs=2, batch_size=32, progress=False)
weights = {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
           for k, v in sorted(model.state_dict().items())}
json.dump({"file": nitrod_rs.__file__, "weights": weights,
           "predictions": model.predict(x).tolist()}, sys.stdout)
"""


def _dist_file(pattern: str) -> Path:
    found = sorted(Path(DIST or ".").glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST}, found {[p.name for p in found]}"
    return found[0]


def _fresh_env(path: Path, requirement: str) -> Path:
    """A new virtualenv at ``path`` with ``requirement`` installed by pip; its interpreter."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    python = path / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    requirement], check=True)
    return python


def _smoke(python: str, cwd: Path) -> dict:  # type: ignore[type-arg]
    # Run outside the repository, so that `import nitrod_rs` cannot find the source tree.
    out = subprocess.run([python, "-c", SMOKE], cwd=cwd, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """The smoke run on the development build (the interpreter running the tests)."""
    return _smoke(sys.executable, tmp_path_factory.mktemp("dev"))


def _check_installed(python: Path, env: Path, reference: dict,  # type: ignore[type-arg]
                     cwd: Path) -> None:
    got = _smoke(str(python), cwd)
    assert Path(got["file"]).resolve().is_relative_to(env.resolve()), got["file"]
    assert got["weights"] == reference["weights"], "the installed build trains different bits"
    assert got["predictions"] == reference["predictions"]
    package = Path(got["file"]).parent
    for typed in ("py.typed", "_core/__init__.pyi", "_core/ops.pyi"):
        assert (package / typed).is_file(), f"{typed} is not installed"
    # The console script works (its own --help: nothing else is needed).
    subprocess.run([str(env / "bin" / "nitrod"), "--help"], check=True, capture_output=True)


def test_wheel_is_manylinux_2_17_abi3() -> None:
    wheel = _dist_file("nitrod_rs-*.whl")
    assert "-cp310-abi3-" in wheel.name, wheel.name  # one wheel for every CPython >= 3.10
    assert "manylinux_2_17_x86_64" in wheel.name, wheel.name
    auditwheel = shutil.which("auditwheel") or str(Path(sys.executable).parent / "auditwheel")
    if not Path(auditwheel).is_file():
        pytest.skip("auditwheel is not installed (pip install auditwheel; make wheel does)")
    shown = subprocess.run([auditwheel, "show", str(wheel)], check=True, capture_output=True,
                           text=True).stdout
    words = " ".join(shown.split())
    assert 'consistent with the following platform tag: "manylinux_2_17_x86_64"' in words, shown
    # Only glibc itself: no other shared library has to be on the user's machine.
    needed = set(re.findall(r"(\S+\.so\.\d+) with versions", words))
    assert needed <= {"libc.so.6", "libpthread.so.0", "libdl.so.2", "libm.so.6",
                      "librt.so.1", "libgcc_s.so.1"}, needed


def test_wheel_installs_into_a_fresh_venv_and_trains_the_same_bits(
        tmp_path: Path, reference: dict) -> None:  # type: ignore[type-arg]
    wheel = _dist_file("nitrod_rs-*.whl")
    env = tmp_path / "env"
    # With an extra, as the README installs it: the wheel's metadata must declare it.
    python = _fresh_env(env, f"{wheel.resolve()}[progress]")
    _check_installed(python, env, reference, tmp_path)
    subprocess.run([str(python), "-c", "import tqdm"], check=True)


def test_sdist_builds_a_wheel_that_trains_the_same_bits(
        tmp_path: Path, reference: dict) -> None:  # type: ignore[type-arg]
    sdist = _dist_file("nitrod_rs-*.tar.gz")
    built = tmp_path / "built"
    # The build compiles the extension from the sdist's sources alone (Rust toolchain needed);
    # its own target folder keeps the development build's artifacts untouched. No pip cache:
    # pip would otherwise reuse a wheel it built from an earlier sdist of the same name.
    env_vars = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target" / "sdist-check"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir",
                    "--disable-pip-version-check", "--wheel-dir", str(built), str(sdist)],
                   check=True, env=env_vars)
    (wheel,) = built.glob("nitrod_rs-*.whl")
    env = tmp_path / "env"
    python = _fresh_env(env, str(wheel))
    _check_installed(python, env, reference, tmp_path)
