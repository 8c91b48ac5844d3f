"""Diagnostics: located, compiler-style messages collected and reported all at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


class UsageError(Exception):
    """Bad command-line input (exit 2), as opposed to a bad spec (exit 1)."""


@dataclass(frozen=True)
class Location:
    """A place in a source: a spec file, or a `--set` override (file is then its label)."""

    file: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        # line 0: the source has no lines (a --set override)
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


@dataclass(frozen=True)
class Diagnostic:
    location: Location
    message: str
    severity: Severity = "error"
    key: str = ""
    hints: tuple[str, ...] = ()
    rule: str = ""

    def render(self) -> str:
        """`file:line:col: error: key: message [rule]` then one `hint:` line per hint."""
        head = f"{self.location}: {self.severity}: "
        if self.key:
            head += f"{self.key}: "
        head += self.message
        if self.rule:
            head += f" [{self.rule}]"
        return "\n".join([head, *(f"  hint: {h}" for h in self.hints)])

    def to_json(self) -> dict:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "col": self.location.col,
            "severity": self.severity,
            "key": self.key,
            "message": self.message,
            "hints": list(self.hints),
            "rule": self.rule,
        }


@dataclass
class SpecError(Exception):
    """Raised with every diagnostic found; nothing is compiled or run."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


def dotted(path: tuple) -> str:
    """('lora', 'r') -> 'lora.r'; list indices as [i]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
