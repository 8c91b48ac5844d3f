"""`make lint`: no function in specforge/ is longer than 80 lines (ARCHITECTURE.md: a function does
one job and fits on a screen). Prints each one over the limit and exits 1."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIMIT = 80


def long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    found.append(f"{path}:{node.lineno}: {node.name} is {lines} lines (> {LIMIT})")
    return found


if __name__ == "__main__":
    over = long_functions(Path(sys.argv[1] if len(sys.argv) > 1 else "specforge"))
    print("\n".join(over) or f"no function over {LIMIT} lines")
    sys.exit(1 if over else 0)
