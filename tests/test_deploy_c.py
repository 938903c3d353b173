"""C export (nitrod_rs.deploy.c_export): the generated C99 compiles warning-free with
``-Wall -Wextra -Werror -Wconversion`` and its scores are bit-identical to the engine's
``predict_logits`` on 1,000+ images; it also builds for a Cortex-M0+ without float symbols."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deploy_helpers import (
    FMNIST_DIR,
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
from nitrod_rs.deploy import _program, c_export

CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-pedantic", "-O2"]

# Reads raw images (INPUT_SIZE bytes each) from argv[1]; writes per image the CLASSES int32
# scores and the returned class (int32) to argv[2].
DRIVER = r"""
#include <stdio.h>
#include "PREFIX_model.h"

static unsigned char scratch[UP_SCRATCH_BYTES];

int main(int argc, char **argv)
{
    FILE *in, *out;
    uint8_t image[UP_INPUT_SIZE];
    int32_t scores[UP_CLASSES];
    long n = 0;
    if (argc != 3) return 2;
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) return 2;
    while (fread(image, 1, sizeof image, in) == sizeof image) {
        int32_t cls = PREFIX_predict(image, scores, scratch);
        if (fwrite(scores, sizeof scores[0], UP_CLASSES, out) != UP_CLASSES) return 3;
        if (fwrite(&cls, sizeof cls, 1, out) != 1) return 3;
        ++n;
    }
    fclose(in);
    fclose(out);
    return n > 0 ? 0 : 4;
}
"""


def cc() -> str:
    path = shutil.which("cc") or shutil.which("gcc")
    if path is None:
        need("a C compiler (cc)", "apt-get install gcc")
    assert path is not None
    return path


def build(model: Any, tmp: Path, prefix: str = "nitrod") -> tuple[Path, dict[str, str]]:
    files = c_export.generate(model, name=f"{prefix}_model", prefix=prefix)
    for name, text in files.items():
        (tmp / name).write_text(text)
    driver = DRIVER.replace("PREFIX", prefix).replace("UP", prefix.upper())
    (tmp / "driver.c").write_text(driver)
    exe = tmp / "predict"
    r = subprocess.run([cc(), *CFLAGS, "-o", str(exe), str(tmp / "driver.c"),
                        str(tmp / f"{prefix}_model.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return exe, files


def run_c(exe: Path, images: np.ndarray, classes: int, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    src, dst = tmp / "images.bin", tmp / "scores.bin"
    np.ascontiguousarray(images, dtype=np.uint8).tofile(src)
    subprocess.run([str(exe), str(src), str(dst)], check=True, timeout=600)
    out = np.fromfile(dst, dtype=np.int32).reshape(len(images), classes + 1)
    return out[:, :classes], out[:, classes]


def assert_c_bit_identical(model: Any, images: np.ndarray, tmp: Path, prefix: str = "nitrod",
                           min_distinct: int = 20) -> dict[str, str]:
    exe, files = build(model, tmp, prefix)
    scores, cls = run_c(exe, images, model.classes, tmp)
    want = model.predict_logits(images)
    np.testing.assert_array_equal(scores, want.astype(np.int32))
    np.testing.assert_array_equal(cls, model.predict(images))
    assert len(np.unique(want)) >= min_distinct, np.unique(want)
    # Every layer's weights in the narrowest type that holds them.
    source = files[f"{prefix}_model.c"]
    declared = {n: t for t, n in re.findall(r"static const (\w+) (W\d+)\[", source)}
    layers = [s for s in _program.build(model).steps if not isinstance(s, _program.Flatten)]
    for i, s in enumerate(layers):
        if not isinstance(s, _program.Pool):
            assert declared[f"W{i}"] == _program.narrowest_int(s.weight) + "_t", i
    return files


@pytest.fixture(scope="module")
def fmnist_or_none() -> Any:
    """Fashion-MNIST if installed, else ``None`` (the tests then use generated images)."""
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        return None
    return nitrod_rs.datasets.load("fashion-mnist", FMNIST_DIR, download=False)


def images_1000(ds: Any, shape: tuple[int, ...]) -> np.ndarray:
    if ds is None:
        return random_images(shape, 1000, 21)
    return np.ascontiguousarray(ds.x_test[:1000].reshape(1000, *shape))


def test_mlp_c_bit_identical_on_1000_images(tmp_path: Path, fmnist_or_none: Any) -> None:
    model = real_models(fmnist_or_none)["mlp"] if fmnist_or_none is not None else mlp2()
    assert_c_bit_identical(model, images_1000(fmnist_or_none, (784,)), tmp_path)


def test_small_cnn_c_bit_identical_on_1000_images(tmp_path: Path, fmnist_or_none: Any) -> None:
    if fmnist_or_none is not None:
        model = real_models(fmnist_or_none)["cnn"]
    else:
        model = nitrod_rs.CNN([8, "M", 16, "M"], [32], input_shape=(1, 28, 28),
                              decoder_dim=784)
        model.fit_normalization(random_images((1, 28, 28), 64, 0))
        moderate_weights(model, 3)
    assert_c_bit_identical(model, images_1000(fmnist_or_none, (1, 28, 28)), tmp_path)


def test_small_cnn_preset_random_weights(tmp_path: Path) -> None:
    assert_c_bit_identical(small_cnn(seed=2), random_images((1, 28, 28), 100, 3), tmp_path)


@pytest.mark.parametrize("activation", ["pocket_tanh", "bipolar_pocket_relu"])
def test_every_cnn_feature_bias_and_activations(tmp_path: Path, activation: str) -> None:
    model = vgg_shaped(activation=activation)
    moderate_weights(model, 4)
    assert_c_bit_identical(model, random_images((1, 28, 28), 60, 5), tmp_path, prefix="vgg",
                           min_distinct=10)


def test_three_channel_input_per_channel_normalisation(tmp_path: Path) -> None:
    # CIFAR-like 3 x 8 x 8 images with different statistics per channel.
    x = random_images((3, 8, 8), 300, 8)
    x[:, 1] //= 3
    x[:, 2] = x[:, 2] // 2 + 100
    model = nitrod_rs.CNN([6, "A", ("conv", 8, 3, 1, 0)], [16], input_shape=(3, 8, 8),
                          decoder_dim=96, bias=True)
    model.fit_normalization(x)
    assert len(set(model.normalization[0])) == 3
    moderate_weights(model, 9)
    files = assert_c_bit_identical(model, x, tmp_path, min_distinct=10)
    assert "NORMALIZE[(k / 64) * 256 + image[k]]" in files["nitrod_model.c"]


def test_near_int16_limits_and_int64_accumulators(tmp_path: Path) -> None:
    model = vgg_shaped(seed=1)
    near_int16_limits(model, 6)
    exe, files = build(model, tmp_path)
    x = random_images((1, 28, 28), 40, 7)
    scores, cls = run_c(exe, x, model.classes, tmp_path)
    np.testing.assert_array_equal(scores, model.predict_logits(x).astype(np.int32))
    np.testing.assert_array_equal(cls, model.predict(x))
    src = files["nitrod_model.c"]
    # 128·Σ|w| over 32·3·3 weights near 32767 exceeds 2^31: those layers accumulate in int64.
    assert "int64_t acc" in src and "int32_t acc" in src


def test_weight_types_are_the_narrowest(tmp_path: Path) -> None:
    model = nitrod_rs.MLP([12, 6, 5, 4], bias=True, seed=0)
    model.fit_normalization(random_images((12,), 16, 0))
    rng = np.random.default_rng(0)
    state = model.state_dict()
    state["linear_encoder_00"] = rng.integers(-128, 128, (6, 12)).astype(np.int32)
    state["linear_encoder_01"] = rng.integers(-32768, 32768, (5, 6)).astype(np.int32)
    state["linear_encoder_01"][0, 0] = -32768
    state["linear_02"] = rng.integers(-70000, 70000, (4, 5)).astype(np.int32)
    state["linear_02"][0, 0] = -(2**31)
    model.load_state_dict(state)
    files = assert_c_bit_identical(model, random_images((12,), 200, 1), tmp_path,
                                   min_distinct=2)
    src = files["nitrod_model.c"]
    assert "static const int8_t W0[72]" in src
    assert "static const int16_t W1[30]" in src
    assert "static const int32_t W2[20]" in src and "(-2147483647 - 1)" in src


def test_generated_code_is_self_contained(tmp_path: Path) -> None:
    files = c_export.generate(vgg_shaped(), name="net", prefix="net")
    h, c = files["net.h"], files["net.c"]
    assert re.findall(r"#include\s*(\S+)", h) == ["<stddef.h>", "<stdint.h>"]
    assert re.findall(r"#include\s*(\S+)", c) == ['"net.h"']
    assert "int net_predict(const uint8_t *image, int32_t *scores, void *scratch);" in h
    m = re.search(r"#define NET_SCRATCH_BYTES (\d+)", h)
    assert m and int(m.group(1)) == 2 * 32 * 28 * 28  # two of the largest tensor, 32x28x28
    code = re.sub(r"/\*.*?\*/", "", c, flags=re.S)  # comments may say anything
    for word in ("float", "double", "malloc", "free"):
        assert word not in code, word
    # No mutable state: every static is a const table or a function.
    for line in re.findall(r"^static [^\n]*", code, flags=re.M):
        assert line.startswith("static const ") or "(" in line, line
    assert re.search(r"\b\d+\.\d*", code) is None  # no float literal
    with pytest.raises(ValueError, match="C identifier"):
        c_export.generate(vgg_shaped(), prefix="bad-prefix")


def test_cli_export_c(tmp_path: Path) -> None:
    model = mlp2(seed=4)
    src = tmp_path / "mlp2.safetensors"
    model.save(src)
    out = tmp_path / "c"
    assert main(["export", str(src), "--format", "c", "--out", str(out)]) == 0
    direct = model.to_c(tmp_path / "direct")
    assert [p.name for p in direct] == ["nitrod_model.h", "nitrod_model.c"]
    for p in direct:
        assert (out / p.name).read_text() == p.read_text()


ARM_FLOAT_SYMBOL = re.compile(
    r"__aeabi_(f|d)\w*|__aeabi_\w*2(f|d)\w*|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|"
    r"unord|extend|trunc|fix|float)\w*(sf|df)\w*")


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_cortex_m0plus_build_has_no_float(tmp_path: Path, kind: str) -> None:
    gcc = shutil.which("arm-none-eabi-gcc")
    nm = shutil.which("arm-none-eabi-nm")
    if gcc is None or nm is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
    if kind == "mlp":
        model = mlp2()
    else:  # int64 accumulators too: 64-bit division must not pull in float helpers
        model = vgg_shaped()
        near_int16_limits(model, 2)
    model.to_c(tmp_path)
    obj, elf = tmp_path / "m.o", tmp_path / "m.elf"
    arm = ["-mcpu=cortex-m0plus", "-mthumb", *CFLAGS]
    r = subprocess.run([gcc, *arm, "-c", "-o", str(obj), str(tmp_path / "nitrod_model.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    # Link with libgcc alone (no libc, no start files): everything it needs must resolve.
    r = subprocess.run([gcc, "-mcpu=cortex-m0plus", "-mthumb", "-nostdlib",
                        "-Wl,-e,nitrod_predict", "-o", str(elf), str(obj), "-lgcc"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    syms = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=True).stdout
    names = [line.split()[-1] for line in syms.splitlines() if line.split()]
    assert "nitrod_predict" in names
    floats = [n for n in names if ARM_FLOAT_SYMBOL.fullmatch(n)]
    assert not floats, floats
    undefined = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True,
                               check=True).stdout.split()
    # Only libgcc's integer helpers: 32-bit division, 64-bit multiply and division.
    assert set(undefined) - {"U"} <= {"__aeabi_idiv", "__aeabi_lmul", "__aeabi_ldivmod"}, \
        undefined


def test_readme_c_example_builds_and_runs(repo_root: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The "Deploy: C" section as written: its Python block exports, its main.c and cc line
    # build, and the program prints the engine's scores.
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    section = text.split("## Deploy: C", 1)[1].split("\n## ", 1)[0]
    py = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    c_src = re.findall(r"```c\n(.*?)```", section, flags=re.S)
    sh = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(py) == len(c_src) == len(sh) == 1
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(py[0], "README.md", "exec"), ns)
    (tmp_path / "main.c").write_text(c_src[0])
    lines = [ln for ln in sh[0].splitlines() if ln and not ln.startswith("#")]
    build_cmd = next(ln for ln in lines if ln.startswith("cc "))
    subprocess.run(build_cmd.replace("cc ", cc() + " ", 1), shell=True, check=True)
    out = subprocess.run(["./predict"], capture_output=True, text=True, check=True).stdout
    want = ns["mlp"].predict_logits(ns["x"][:1])[0]
    cls = int(ns["mlp"].predict(ns["x"][:1])[0])
    assert out.split() == [str(int(v)) for v in want] + ["->", "class", str(cls)]
    arm = next(ln for ln in lines if ln.startswith("arm-none-eabi-gcc "))
    if shutil.which("arm-none-eabi-gcc"):
        subprocess.run(arm, shell=True, check=True)
        assert (tmp_path / "nitrod_model.o").is_file()
