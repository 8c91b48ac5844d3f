"""Printing diagnostics: rich on a terminal, plain text when piped, JSON for tools.

rich is imported only when stderr is a terminal: pre-commit and CI pipe, and pay nothing for it.
"""

from __future__ import annotations

import json
import re
import sys
from functools import lru_cache

from specforge.core.errors import Diagnostic

_MARKUP = re.compile(r"\[/?(?:bold|dim|red|green|yellow|cyan|bold red|bold yellow|bold green)?\]")


def _terminal() -> bool:
    return sys.stderr.isatty()


@lru_cache(maxsize=1)
def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    for diag in diagnostics:
        if not _terminal():
            print(diag.render(), file=sys.stderr)
            continue
        from rich.markup import escape

        colour = "red" if diag.severity == "error" else "yellow"
        head = f"[bold]{escape(str(diag.location))}[/]: [bold {colour}]{diag.severity}[/]: "
        if diag.key:
            head += f"[cyan]{escape(diag.key)}[/]: "
        head += escape(diag.message) + (f" [dim]\\[{diag.rule}][/]" if diag.rule else "")
        _console().print(head)
        for hint in diag.hints:
            _console().print(f"  [green]hint:[/] {escape(hint)}")


def print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def say(message: str) -> None:
    """A status line for people (stderr, so stdout stays clean for data)."""
    if _terminal():
        _console().print(message)
    else:
        print(_MARKUP.sub("", message), file=sys.stderr, flush=True)
