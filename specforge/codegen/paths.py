"""Where compiled output goes and where the templates live (no heavy imports: `check` needs these
before it knows whether anything must be rendered)."""

from __future__ import annotations

from pathlib import Path

GENERATED_DIR = "generated"


def templates_dir() -> Path:
    """templates/ in a source checkout; specforge/templates inside an installed wheel."""
    packaged = Path(__file__).resolve().parent.parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "templates"
