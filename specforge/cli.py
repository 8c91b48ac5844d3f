"""The `specforge` command: verbs and exit codes only.

Exit codes: 0 ok, 1 invalid spec / stale output / failed run, 2 usage error.
validate, compile, check, diff and schema never import torch, transformers, peft, trl or datasets.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from specforge import __version__
from specforge.diagnostics_out import print_diagnostics, print_json, say
from specforge.spec.errors import SpecError
from specforge.spec.load import LoadedSpec, UsageError, load_spec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compile a YAML experiment spec into reviewable train.py / infer.py, and run it.",
)

SPECS_DIR = Path("specs")


class Format(str, Enum):
    text = "text"
    json = "json"


SpecArgs = Annotated[
    Optional[list[Path]],
    typer.Argument(help="Spec files (default: specs/*.yaml, except _partials).", show_default=False),
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a value: --set lora.r=8 (repeatable).", show_default=False),
]
RemoteOpt = Annotated[
    bool, typer.Option("--allow-remote-code", help="Permit model.trust_remote_code: true.")
]


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
) -> tuple[list[LoadedSpec], list]:
    """Load every spec, collecting all diagnostics (errors and warnings) across them."""
    loaded, diagnostics = [], []
    for path in paths:
        try:
            item = load_spec(path, overrides, allow_remote_code=allow_remote_code)
        except SpecError as err:
            diagnostics.extend(err.diagnostics)
            continue
        loaded.append(item)
        diagnostics.extend(item.warnings)
    return loaded, diagnostics


def _fail_usage(message: str) -> typer.Exit:
    print(f"specforge: error: {message}", file=sys.stderr)
    return typer.Exit(2)


@app.command()
def validate(
    specs: SpecArgs = None,
    set_: SetOpt = None,
    fmt: Annotated[Format, typer.Option("--format", help="text or json")] = Format.text,
    allow_remote_code: RemoteOpt = False,
) -> None:
    """Check specs against the schema and the cross-field rules; report every problem with its location."""
    try:
        paths = resolve_spec_paths(specs)
        loaded, diagnostics = load_all(paths, set_, allow_remote_code)
    except UsageError as err:
        raise _fail_usage(str(err)) from None
    failed = any(d.severity == "error" for d in diagnostics)
    if fmt is Format.json:
        print_json(
            {
                "valid": not failed,
                "specs": [p.as_posix() for p in paths],
                "diagnostics": [d.to_json() for d in diagnostics],
            }
        )
    else:
        print_diagnostics(diagnostics)
        for item in loaded:
            say(f"[green]ok[/] {item.label} ({item.spec.name})")
    raise typer.Exit(1 if failed else 0)


@app.command()
def schema(
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write to a file instead of stdout.")
    ] = None,
) -> None:
    """Print the spec's JSON Schema (checked in as schema/specforge.schema.json)."""
    from specforge.spec.schema import schema_text

    text = schema_text()
    if output is None:
        sys.stdout.write(text)
    else:
        from specforge.artifacts import write_atomic

        write_atomic(output, text.encode())


def _compile_or_exit(specs, set_, allow_remote_code):
    """Load and compile every spec in memory; on any invalid spec print all and exit 1."""
    from specforge.codegen.compiler import GENERATED_DIR, compile_files

    try:
        paths = resolve_spec_paths(specs)
        loaded, diagnostics = load_all(paths, set_, allow_remote_code)
    except UsageError as err:
        raise _fail_usage(str(err)) from None
    print_diagnostics(diagnostics)
    if any(d.severity == "error" for d in diagnostics):
        raise typer.Exit(1)
    names: dict[str, str] = {}
    for item in loaded:
        if item.spec.name in names:
            say(f"[red]error[/]: {item.label} and {names[item.spec.name]} share name {item.spec.name!r}")
            raise typer.Exit(1)
        names[item.spec.name] = item.label
    return [(Path(GENERATED_DIR) / item.spec.name, compile_files(item)) for item in loaded]


@app.command("compile")
def compile_(
    specs: SpecArgs = None,
    set_: SetOpt = None,
    allow_remote_code: RemoteOpt = False,
) -> None:
    """Write generated/<name>/train.py, infer.py and spec.resolved.yaml (atomically, all or nothing)."""
    from specforge.artifacts import write_all

    if set_:
        raise _fail_usage("compile writes generated/, which must match the checked-in specs; "
                          "use `specforge run --set ...` for an overridden run")
    outputs = _compile_or_exit(specs, set_, allow_remote_code)
    written = write_all(outputs)
    for out_dir, _ in outputs:
        say(f"[green]compiled[/] {out_dir}")
    say(f"{len(written)} file(s) changed")


@app.command()
def check(
    specs: SpecArgs = None,
    allow_remote_code: RemoteOpt = False,
) -> None:
    """Fail with a diff when generated/ is stale or edited by hand, or holds folders no spec owns."""
    from specforge.artifacts import changes, strays, unified_diff
    from specforge.codegen.compiler import GENERATED_DIR

    outputs = _compile_or_exit(specs, None, allow_remote_code)
    problems = 0
    for out_dir, files in outputs:
        for path, old, new in changes(out_dir, files):
            problems += 1
            sys.stdout.write(unified_diff(path, old, new))
            say(f"[red]stale[/] {path}: differs from a fresh compile (stale or edited by hand)")
        for path in strays(out_dir, files):
            problems += 1
            say(f"[red]stray[/] {path}: not produced by the spec")
    if not specs:  # every spec was compiled: folders nobody owns are leftovers
        owned = {out_dir.name for out_dir, _ in outputs}
        root = Path(GENERATED_DIR)
        for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            if folder.name not in owned:
                problems += 1
                say(f"[red]orphan[/] {folder}: no spec in specs/ is named {folder.name!r}")
    if problems:
        say("run `specforge compile` and commit the result")
        raise typer.Exit(1)
    say(f"[green]ok[/] {len(outputs)} spec(s) match generated/")


@app.command()
def diff(
    spec: Annotated[Path, typer.Argument(help="Spec file.")],
    allow_remote_code: RemoteOpt = False,
) -> None:
    """Show what `compile` would change, without writing (exit 1 when something would)."""
    from specforge.artifacts import changes, unified_diff

    outputs = _compile_or_exit([spec], None, allow_remote_code)
    found = [c for out_dir, files in outputs for c in changes(out_dir, files)]
    for path, old, new in found:
        sys.stdout.write(unified_diff(path, old, new))
    if not found:
        say("no changes")
    raise typer.Exit(1 if found else 0)


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Spec file.")],
    set_: SetOpt = None,
    compile_first: Annotated[
        bool, typer.Option("--compile", help="Recompile generated/<name> first if it is stale.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run.")] = False,
    allow_remote_code: RemoteOpt = False,
) -> None:
    """Compile, then run train.py and infer.py, recording everything under runs/<name>/<run-id>/."""
    from specforge.runner import StaleScripts, describe, execute

    try:
        if not spec.is_file():
            raise UsageError(f"{spec}: no such spec file")
        loaded = load_spec(spec, set_, allow_remote_code=allow_remote_code)
    except UsageError as err:
        raise _fail_usage(str(err)) from None
    except SpecError as err:
        print_diagnostics(err.diagnostics)
        raise typer.Exit(1) from None
    print_diagnostics(loaded.warnings)
    try:
        if dry_run:
            describe(loaded, compile_first=compile_first)
            raise typer.Exit(0)
        code = execute(loaded, compile_first=compile_first)
    except StaleScripts as err:
        say(f"[red]error[/]: {err}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        print(f"specforge {__version__}")
        raise typer.Exit(0)


def main() -> None:
    app()
