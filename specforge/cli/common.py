"""What several verbs share: the spec-loading preamble, the Exit signal, and the arguments that
recur (spec lists, --set, --allow-remote-code).

Nothing here imports pydantic or the ML stack at import time: every verb module imports this one,
and `specforge --help` builds every verb's parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specforge.core.console import print_diagnostics
from specforge.core.errors import Diagnostic, SpecError, UsageError

if TYPE_CHECKING:
    from specforge.validate.load import LoadedSpec

SPECS_DIR = Path("specs")

Verb = Callable[[argparse.Namespace], int]


class Exit(Exception):
    """Leave the verb with this exit code (its diagnostics are already printed)."""

    def __init__(self, code: int):
        self.code = code


def load_spec(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    allow_remote_code: bool = False,
    check_files: bool = True,
) -> LoadedSpec:
    """specforge.validate.load.load_spec, imported on first use: pydantic's model building is most of
    validate's time, and `check` answers from its verdict cache without it."""
    from specforge.validate.load import load_spec as load

    return load(path, overrides, allow_remote_code=allow_remote_code, check_files=check_files)


def load_one(path: Path, load: Callable[[Path], Any] | None = None, **kwargs: Any) -> Any:
    """The preamble of the verbs that take one spec: a missing file is a usage error (2), a
    spec's diagnostics are printed and exit 1, its warnings are printed. Returns what `load`
    (default load_spec(path, **kwargs)) returned: anything with `warnings`."""
    if not path.is_file():
        raise UsageError(f"{path}: no such spec file")
    try:
        loaded = load(path) if load is not None else load_spec(path, **kwargs)
    except SpecError as err:
        print_diagnostics(err.diagnostics)
        raise Exit(1) from None
    print_diagnostics(loaded.warnings)
    return loaded


def default_specs() -> list[Path]:
    return sorted(p for p in SPECS_DIR.glob("*.yaml") if not p.name.startswith("_"))


def resolve_spec_paths(specs: list[Path] | None) -> list[Path]:
    paths = list(specs) if specs else default_specs()
    if not paths:
        raise UsageError("no specs given and none found in specs/")
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such spec file")
    return paths


def load_all(
    paths: list[Path], overrides: list[str] | None, allow_remote_code: bool
) -> tuple[list[LoadedSpec], list[Diagnostic]]:
    """Load every spec, collecting all diagnostics (errors and warnings) across them."""
    loaded: list[LoadedSpec] = []
    diagnostics: list[Diagnostic] = []
    for path in paths:
        try:
            item = load_spec(path, overrides, allow_remote_code=allow_remote_code)
        except SpecError as err:
            diagnostics.extend(err.diagnostics)
            continue
        loaded.append(item)
        diagnostics.extend(item.warnings)
    return loaded, diagnostics


# -- arguments ----------------------------------------------------------------------------------


def add_verb(subparsers: Any, name: str, func: Verb, help_text: str) -> argparse.ArgumentParser:
    """A verb's parser: its one-line help doubles as the description of `specforge VERB --help`."""
    sub: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=help_text
    )
    sub.set_defaults(func=func)
    return sub


def add_spec_list(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "specs",
        nargs="*",
        type=Path,
        metavar="SPEC",
        help="spec files (default: specs/*.yaml, except _partials)",
    )


def add_spec(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("spec", type=Path, metavar="SPEC")


def add_remote_code(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--allow-remote-code", action="store_true", help="permit model.trust_remote_code: true"
    )


def add_overrides(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="override a value, e.g. --set lora.r=8 (repeatable)",
    )
