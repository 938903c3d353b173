"""The Python example in README.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def test_readme_python_example(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "tiny.safetensors").is_file()
