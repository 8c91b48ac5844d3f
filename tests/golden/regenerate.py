"""Regenerate tests/golden/<name>/ from tests/golden/specs/: `make golden` (then review the diff).

The shipped specs' golden files are generated/ itself (`specforge check` compares it with a fresh
compile); these specs reach the template branches the shipped specs do not.
"""

from __future__ import annotations

import os
from pathlib import Path

from specforge.codegen.compiler import compile_files
from specforge.validate.load import load_spec

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "tests/golden/specs"


def golden_files() -> dict[Path, str]:
    """{path under tests/golden: text} for every golden spec, compiled from the repo root."""
    os.chdir(REPO)  # spec labels and relative paths resolve from the project root
    files = {}
    for spec in sorted(SPECS.glob("*.yaml")):
        loaded = load_spec(spec.relative_to(REPO))
        for name, text in compile_files(loaded, f"tests/golden/{loaded.spec.name}").items():
            files[REPO / "tests/golden" / loaded.spec.name / name] = text
    return files


def main() -> None:
    for path, text in golden_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(REPO))


if __name__ == "__main__":
    main()
