#!/usr/bin/env python3
"""Fail when the modules of a Rust crate import each other in a circle.

Reads every `crate::a::b` and `super::a` path in `src/` (use lines and inline paths, tests excluded) and builds
a graph between modules at each level of nesting: `src/model/cnn.rs` using
`crate::kernels::par` is an edge model -> kernels at the top level, and `kernels/gemm/pack.rs`
using `crate::kernels::par` an edge gemm -> par inside `kernels`. A circle at any level is
printed and the exit status is 1. Usage: check_module_cycles.py CRATE_DIR...
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b((?:crate|super)(?:::super)*)::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")


def module_of(src: Path, f: Path) -> list[str]:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def code_without_tests(text: str) -> str:
    # Unit tests may use anything; they are not part of the module graph.
    cut = text.find("#[cfg(test)]")
    text = text if cut < 0 else text[:cut]
    # Comments (docs link modules freely) are not imports.
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def edges(src: Path) -> set[tuple[tuple[str, ...], str, str]]:
    """(parent module, child a, child b): inside `parent`, child a uses child b."""
    modules = {tuple(module_of(src, f)) for f in src.rglob("*.rs")}
    out = set()
    for f in src.rglob("*.rs"):
        me = module_of(src, f)
        for m in PATH.finditer(code_without_tests(f.read_text())):
            if m.group(1) == "crate":
                target = m.group(2).split("::")
            else:
                ups = m.group(1).count("super")
                target = me[: len(me) - ups] + m.group(2).split("::")
            # Keep the longest prefix that is a module of the crate.
            while target and tuple(target) not in modules:
                target.pop()
            common = 0
            while common < min(len(me), len(target)) and me[common] == target[common]:
                common += 1
            if common < len(me) and common < len(target):
                out.add((tuple(me[:common]), me[common], target[common]))
    return out


def cycles(es: set[tuple[tuple[str, ...], str, str]]) -> list[list[str]]:
    found = []
    by_parent: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for parent, a, b in es:
        by_parent.setdefault(parent, {}).setdefault(a, set()).add(b)
    for parent, graph in sorted(by_parent.items()):
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(n: str) -> None:
            state[n] = 1
            stack.append(n)
            for m in sorted(graph.get(n, ())):
                if state.get(m) == 1:
                    found.append(["::".join(parent) or "crate", *stack[stack.index(m):], m])
                elif m not in state:
                    visit(m)
            stack.pop()
            state[n] = 2

        for n in sorted(graph):
            if n not in state:
                visit(n)
    return found


def main() -> int:
    bad = 0
    for crate in sys.argv[1:]:
        for c in cycles(edges(Path(crate) / "src")):
            print(f"{crate}: import circle in {c[0]}: {' -> '.join(c[1:])}")
            bad = 1
    if not bad:
        print("no import circles in", " ".join(sys.argv[1:]))
    return bad


if __name__ == "__main__":
    sys.exit(main())
