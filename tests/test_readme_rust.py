"""The Rust examples of the READMEs are code that is compiled and run:

* README.md's Rust block is the body of ``crates/nitro-core/examples/quickstart.rs``, which
  ``make test`` compiles (clippy over all targets);
* ``crates/nitro-core/README.md`` (the crate's page) shows the crate documentation's example,
  which ``cargo test`` runs as a doc-test.

So neither README can drift from code that builds."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "crates" / "nitro-core"


def _rust_blocks(readme: Path) -> list[str]:
    return re.findall(r"```rust\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.S)


def _example_body() -> tuple[list[str], str]:
    src = (CORE / "examples" / "quickstart.rs").read_text(encoding="utf-8")
    uses = [ln for ln in src.splitlines() if ln.startswith("use ")]
    body = src.split("// README: begin\n")[1].split("    // README: end")[0]
    lines = [ln[4:] if ln.startswith("    ") else ln for ln in body.splitlines()]
    return uses, "\n".join(lines).rstrip("\n")


def _crate_doc_example() -> str:
    """The first example of the crate documentation (``//!`` lines of lib.rs), without ``//!``."""
    src = (CORE / "src" / "lib.rs").read_text(encoding="utf-8")
    doc = [ln[4:] if ln.startswith("//! ") else ln[3:] for ln in src.splitlines()
           if ln.startswith("//!")]
    fences = [i for i, ln in enumerate(doc) if ln.startswith("```")]
    assert len(fences) >= 2, "lib.rs has no example"
    return "\n".join(doc[fences[0] + 1:fences[1]])


def test_readme_rust_block_is_the_compiled_example() -> None:
    blocks = _rust_blocks(ROOT / "README.md")
    assert len(blocks) == 1, "expected exactly one Rust block in README.md"
    block = blocks[0]
    uses, body = _example_body()
    head = "\n".join(uses) + "\n\n"
    assert block.startswith(head), "README's imports differ from examples/quickstart.rs"
    assert block[len(head):].rstrip("\n") == body, (
        "README's Rust example differs from examples/quickstart.rs: copy the lines between "
        "'README: begin' and 'README: end' (dedented) into README.md")


def test_crate_readme_shows_the_doc_tested_example() -> None:
    blocks = _rust_blocks(CORE / "README.md")
    assert len(blocks) == 1, "expected exactly one Rust block in crates/nitro-core/README.md"
    assert blocks[0].rstrip("\n") == _crate_doc_example().rstrip("\n"), (
        "crates/nitro-core/README.md's example differs from the one in src/lib.rs's crate "
        "documentation (a doc-test): copy it over")


def test_crate_manifest_uses_the_crate_readme() -> None:
    manifest = (CORE / "Cargo.toml").read_text(encoding="utf-8")
    assert re.search(r'^readme = "README.md"$', manifest, flags=re.M), manifest
