"""Regenerate tests/golden/ from the shipped specs: `make golden` (then review the diff)."""

from __future__ import annotations

import os
from pathlib import Path

from specforge.codegen.compiler import compile_files
from specforge.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    os.chdir(REPO)  # spec labels and relative paths resolve from the project root
    for spec in sorted(Path("specs").glob("*.yaml")):
        if spec.name.startswith("_"):
            continue
        loaded = load_spec(spec)
        for name, text in compile_files(loaded).items():
            out = REPO / "tests/golden" / loaded.spec.name / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            print(out.relative_to(REPO))


if __name__ == "__main__":
    main()
