"""The README's Rust example is the body of ``crates/nitro-core/examples/quickstart.rs``, which
``make test`` compiles (clippy over all targets): the README cannot drift from code that builds."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_rust_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```rust\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "expected exactly one Rust block in README.md"
    return blocks[0]


def _example_body() -> tuple[list[str], str]:
    src = (ROOT / "crates/nitro-core/examples/quickstart.rs").read_text(encoding="utf-8")
    uses = [ln for ln in src.splitlines() if ln.startswith("use ")]
    body = src.split("// README: begin\n")[1].split("    // README: end")[0]
    lines = [ln[4:] if ln.startswith("    ") else ln for ln in body.splitlines()]
    return uses, "\n".join(lines).rstrip("\n")


def test_readme_rust_block_is_the_compiled_example() -> None:
    block = _readme_rust_block()
    uses, body = _example_body()
    head = "\n".join(uses) + "\n\n"
    assert block.startswith(head), "README's imports differ from examples/quickstart.rs"
    assert block[len(head):].rstrip("\n") == body, (
        "README's Rust example differs from examples/quickstart.rs: copy the lines between "
        "'README: begin' and 'README: end' (dedented) into README.md")
