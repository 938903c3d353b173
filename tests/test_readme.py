"""Every code block of README.md is checked here (the Rust one in ``test_readme_rust.py``):

* the Python blocks run as written, in order, in a scratch folder — and the main example must
  show learning (> 90 % test accuracy);
* the C program is compiled with the README's own command line and must print the scores the
  Python block computed;
* the shell commands name make targets, ``nitrod`` subcommands and options, cargo examples and
  their flags, and pip extras that exist.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import _missing

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


PYTHON = _blocks("python")
SHELL = _blocks("sh")


def _commands() -> list[str]:
    """The shell blocks' commands: continuation lines joined, comments and prompts removed."""
    out = []
    for block in SHELL:
        for cmd in re.sub(r"\\\n\s*", " ", block).splitlines():
            cmd = cmd.split(" #")[0].strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
    return out


def _block_with(lang: str, needle: str) -> str:
    found = [b for b in _blocks(lang) if needle in b]
    assert len(found) == 1, f"expected one {lang} block containing {needle!r} in README.md"
    return found[0]


class _NoDownloads(OSError):
    pass


def _no_download(*_: Any, **__: Any) -> Any:
    raise _NoDownloads("downloads are off in the test suite")


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every Python block in order in one scratch folder, each in its own namespace.

    Returns the folder and, per block, its namespace or the exception it raised. Data sets
    come from local copies only (a download would make the test depend on the network)."""
    from nitrod_rs.datasets import _download

    work = tmp_path_factory.mktemp("readme")
    results: list[Any] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setattr(_download, "download", _no_download)
        for i, code in enumerate(PYTHON):
            ns: dict[str, Any] = {"__name__": f"__readme_{i}__"}
            try:
                exec(compile(code, f"README.md python block {i + 1}", "exec"), ns)
            except Exception as e:  # reported by test_python_block_runs
                results.append(e)
            else:
                results.append(ns)
    return {"dir": work, "blocks": results}


@pytest.mark.parametrize("index", range(len(PYTHON)), ids=lambda i: f"block{i + 1}")
def test_python_block_runs(readme_run: dict[str, Any], index: int) -> None:
    result = readme_run["blocks"][index]
    if isinstance(result, FileNotFoundError) and "could not find the" in str(result):
        _missing(f"the data set of README python block {index + 1} ({result})")
    if isinstance(result, ModuleNotFoundError) and result.name in ("onnx", "onnxruntime"):
        _missing(f"{result.name} (pip install 'nitrod-rs[onnx]'; make venv installs it)")
    if isinstance(result, BaseException):
        raise result


def _namespace(readme_run: dict[str, Any], needle: str) -> dict[str, Any]:
    index = next(i for i, code in enumerate(PYTHON) if needle in code)
    result = readme_run["blocks"][index]
    if isinstance(result, BaseException):
        pytest.skip(f"README python block {index + 1} failed (see test_python_block_runs)")
    return result  # type: ignore[no-any-return]


def test_main_example_learns(readme_run: dict[str, Any]) -> None:
    """The first example trains on real data and must get well above chance (10 %)."""
    ns = _namespace(readme_run, "nitrod_rs.MLP([784, 100, 50, 10], seed=0)")
    history = ns["history"]
    assert history["test_accuracy"][-1] > 0.90, history["test_accuracy"]
    assert history["val_accuracy"][-1] > 0.90, history["val_accuracy"]
    assert (readme_run["dir"] / "mlp1.safetensors").is_file()
    assert (readme_run["dir"] / "best.safetensors").is_file()


def test_c_program_prints_the_python_scores(readme_run: dict[str, Any]) -> None:
    """main.c, compiled with the README's command line, prints ``predict_logits`` of image 0."""
    cc_line = next(c for c in _commands() if c.startswith("cc "))
    if shutil.which("cc") is None:
        _missing("a C compiler (cc)")
    ns = _namespace(readme_run, "to_c(")
    work: Path = readme_run["dir"]
    (work / "main.c").write_text(_block_with("c", "nitrod_predict"), encoding="utf-8")
    subprocess.run(shlex.split(cc_line), cwd=work, check=True)
    out = subprocess.run(["./predict"], cwd=work, check=True, capture_output=True,
                         text=True).stdout
    scores, cls = out.split("-> class")
    want = ns["mlp"].predict_logits(ns["x"][:1])[0]
    assert [int(s) for s in scores.split()] == want.tolist(), out
    assert int(cls) == int(ns["mlp"].predict(ns["x"][:1])[0]), out
    arm_line = next(c for c in _commands() if c.startswith("arm-none-eabi-gcc "))
    if shutil.which("arm-none-eabi-gcc"):
        subprocess.run(shlex.split(arm_line), cwd=work, check=True)
        assert (work / "nitrod_model.o").is_file()


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, flags=re.M))


def test_make_targets_exist() -> None:
    named = {m for c in _commands() for m in re.findall(r"\bmake (\w[\w-]*)", c)}
    named |= set(re.findall(r"`make (\w[\w-]*)`", README))
    assert {"demo", "test", "wheel"} <= named
    assert named <= _make_targets(), named - _make_targets()


def test_nitrod_commands_name_existing_options(capsys: pytest.CaptureFixture[str]) -> None:
    from nitrod_rs.cli import main

    commands = [shlex.split(c) for c in _commands() if c.startswith("nitrod ")]
    assert len(commands) >= 5
    helps: dict[str, str] = {}
    for argv in commands:
        # `nitrod --version`: an option of the program itself, in its own --help.
        sub = "" if argv[1].startswith("--") else argv[1]
        if sub not in helps:
            try:  # a subcommand's --help exits; the program's returns its status
                code = main([sub, "--help"] if sub else ["--help"])
            except SystemExit as done:
                code = done.code
            assert code == 0, f"nitrod {sub} --help failed"
            helps[sub] = capsys.readouterr().out
        options = {a.split("=")[0] for a in argv[1 if not sub else 2:] if a.startswith("--")}
        missing = {o for o in options if not re.search(rf"{re.escape(o)}\b", helps[sub])}
        assert not missing, f"`{' '.join(argv)}`: nitrod {sub} has no {sorted(missing)}"
        if "--format" in argv:
            fmt = argv[argv.index("--format") + 1]
            assert re.search(rf"[{{,]{fmt}[,}}]", helps[sub]), f"no export format {fmt}"


def test_cargo_examples_and_flags_exist() -> None:
    commands = [shlex.split(c.replace("[", " ").replace("]", " ")) for c in _commands()
                if c.startswith("cargo run")]
    assert commands
    for argv in commands:
        example = argv[argv.index("--example") + 1]
        src = ROOT / "crates" / "nitro-core" / "examples" / f"{example}.rs"
        assert src.is_file(), f"no example {example}"
        text = src.read_text(encoding="utf-8")
        flags = argv[argv.index("--") + 1:] if "--" in argv else []
        for flag in (a for a in flags if a.startswith("--")):
            assert f'"{flag}"' in text, f"example {example} has no option {flag}"


def test_pip_extras_exist() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    named = {e.strip() for group in re.findall(r"\[([a-z,]+)\]['\"]", README)
             for e in group.split(",")}
    assert {"progress", "plot", "onnx"} <= named, named
    assert named <= set(extras), named - set(extras)
    wants = {"progress": "tqdm", "plot": "matplotlib", "onnx": "onnxruntime"}
    for extra, package in wants.items():
        assert any(r.startswith(package) for r in extras[extra]), (extra, extras[extra])


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("page", ["README.md", "docs/algorithm.md", "docs/ARCHITECTURE.md",
                                  "tests/data/README.md", "crates/nitro-core/README.md"])
def test_relative_links_resolve(page: str) -> None:
    """Links between the repository's documents point at files (and headings) that exist."""
    src = ROOT / page
    for target in re.findall(r"\]\(([^)\s]+)\)", src.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (src.parent / path).resolve() if path else src
        assert dest.exists(), f"{page}: link to missing {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{page}: no heading #{anchor}"
