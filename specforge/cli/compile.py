"""`specforge compile`: write generated/<name>/ for each spec (atomically, all or nothing).

compile_one/compile_all are shared with `check` and `diff`, which compile in memory and compare."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specforge.cli.common import (
    Exit,
    add_overrides,
    add_remote_code,
    add_spec_list,
    add_verb,
    load_all,
    resolve_spec_paths,
)
from specforge.codegen.cache import compile_key, remember
from specforge.codegen.paths import GENERATED_DIR
from specforge.core.console import print_diagnostics, say
from specforge.core.errors import UsageError
from specforge.core.files import EscapeError, write_all

if TYPE_CHECKING:
    from specforge.validate.load import LoadedSpec


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers, "compile", run, "Write generated/<name>/ (atomically, all or nothing)."
    )
    add_spec_list(sub)
    add_overrides(sub)
    add_remote_code(sub)
    sub.add_argument(
        "--out", type=Path, help="output root instead of generated/ (needed with --set)"
    )


def run(args: argparse.Namespace) -> int:
    if args.set and args.out is None:
        raise UsageError(
            "compile --set needs --out DIR: generated/ must match the checked-in specs "
            "(`specforge run --set ...` compiles an overridden run into its run folder)"
        )
    outputs = compile_all(args.specs, args.set, args.allow_remote_code, args.out)
    try:
        written = write_all(outputs)
    except EscapeError as err:
        say(f"[red]error[/]: {err}")
        return 1
    for out_dir, _ in outputs:
        say(f"[green]compiled[/] {out_dir}")
    say(f"{len(written)} file(s) changed")
    return 0


def load_for_compile(
    specs: list[Path] | None, overrides: list[str] | None, allow_remote_code: bool
) -> list[LoadedSpec]:
    """Load every spec; on any invalid spec (or two specs sharing a name) print all and exit 1."""
    loaded, diagnostics = load_all(resolve_spec_paths(specs), overrides, allow_remote_code)
    print_diagnostics(diagnostics)
    if any(d.severity == "error" for d in diagnostics):
        raise Exit(1)
    owners: dict[str, str] = {}
    for item in loaded:
        if item.spec.name in owners:
            say(
                f"[red]error[/]: {item.label} and {owners[item.spec.name]} share the name "
                f"{item.spec.name!r}"
            )
            raise Exit(1)
        owners[item.spec.name] = item.label
    return loaded


def compile_one(item: LoadedSpec, out_dir: Path) -> dict[str, str]:
    """Compile in memory and remember the output hashes (so a later `check` can skip rendering)."""
    # imported here for start-up time: the compiler loads jinja2 and the spec's pydantic models
    from specforge.codegen.compiler import compile_files

    files = compile_files(item, out_dir.as_posix())
    remember(compile_key(item, out_dir.as_posix()), files)
    return files


def compile_all(
    specs: list[Path] | None,
    overrides: list[str] | None,
    allow_remote_code: bool,
    out_root: Path | None = None,
) -> list[tuple[Path, dict[str, str]]]:
    """Load and compile every spec in memory: [(output folder, {file: text})]."""
    root = out_root or Path(GENERATED_DIR)
    loaded = load_for_compile(specs, overrides, allow_remote_code)
    return [(root / item.spec.name, compile_one(item, root / item.spec.name)) for item in loaded]
