"""Printing diagnostics: rich on a terminal, plain text when piped, JSON for tools."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape

from specforge.spec.errors import Diagnostic

_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    for diag in diagnostics:
        if not _console.is_terminal:
            print(diag.render(), file=sys.stderr)
            continue
        colour = "red" if diag.severity == "error" else "yellow"
        head = f"[bold]{escape(str(diag.location))}[/]: [bold {colour}]{diag.severity}[/]: "
        if diag.key:
            head += f"[cyan]{escape(diag.key)}[/]: "
        head += escape(diag.message) + (f" [dim]\\[{diag.rule}][/]" if diag.rule else "")
        _console.print(head)
        for hint in diag.hints:
            _console.print(f"  [green]hint:[/] {escape(hint)}")


def print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def say(message: str) -> None:
    """A status line for people (stderr, so stdout stays clean for data)."""
    if _console.is_terminal:
        _console.print(message)
    else:
        print(Console(markup=True).render_str(message).plain, file=sys.stderr)
