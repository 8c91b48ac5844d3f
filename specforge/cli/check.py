"""`specforge check`: fail with a diff when generated/ is stale or edited by hand.

A spec whose stored verdict still holds (codegen.check_cache) is answered without loading or
compiling it; any other spec goes through the full check (load, compile in memory, compare)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specforge.cli.common import (
    add_overrides,
    add_remote_code,
    add_spec_list,
    add_verb,
    resolve_spec_paths,
)
from specforge.cli.compile import compile_one, load_for_compile
from specforge.codegen import check_cache
from specforge.codegen.cache import compile_key, outputs_on_disk, remembered
from specforge.codegen.paths import GENERATED_DIR
from specforge.core.console import say
from specforge.core.files import changes, strays, unified_diff

if TYPE_CHECKING:
    from specforge.validate.load import LoadedSpec


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers, "check", run, "Fail with a diff when generated/ is stale or edited by hand."
    )
    add_spec_list(sub)
    add_overrides(sub)
    add_remote_code(sub)


def run(args: argparse.Namespace) -> int:
    paths = resolve_spec_paths(args.specs)
    overrides = args.set or []
    if check_cache.disabled():
        return full_check(args)
    found = [check_cache.known_good(p, overrides, args.allow_remote_code) for p in paths]
    names = [name for name in found if name is not None]
    if len(names) != len(found) or len(set(names)) != len(names):
        return full_check(args)
    problems = orphans(set(names)) if not args.specs and not args.set else 0
    return verdict(problems, len(names))


def verdict(problems: int, checked: int) -> int:
    if problems:
        say("run `specforge compile` and commit the result")
        return 1
    say(f"[green]ok[/] {checked} spec(s) match generated/")
    return 0


def orphans(owned: set[str]) -> int:
    """Report folders of generated/ that no spec owns (when every spec was checked)."""
    found = 0
    root = Path(GENERATED_DIR)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.name not in owned:
            found += 1
            say(f"[red]orphan[/] {folder}: no spec in specs/ is named {folder.name!r}")
    return found


def full_check(args: argparse.Namespace) -> int:
    """Load, compile in memory and compare; stores a verdict for each spec that passes cleanly."""
    loaded = load_for_compile(args.specs, args.set, args.allow_remote_code)
    problems = sum(check_one(item, args.allow_remote_code) for item in loaded)
    if not args.specs and not args.set:  # every spec was compiled: unowned folders are leftovers
        problems += orphans({item.spec.name for item in loaded})
    return verdict(problems, len(loaded))


def check_one(item: LoadedSpec, allow_remote_code: bool) -> int:
    """The problems of one spec's generated folder (printed); 0 stores its verdict."""
    out_dir = Path(GENERATED_DIR) / item.spec.name
    on_disk = outputs_on_disk(out_dir)
    if on_disk and remembered(compile_key(item, out_dir.as_posix())) == on_disk:
        check_cache.record(item, out_dir, allow_remote_code, on_disk)
        return 0  # same inputs as a compile whose output is byte-identical on disk
    files = compile_one(item, out_dir)
    problems = 0
    for path, old, new in changes(out_dir, files):
        problems += 1
        if old is None:  # a diff from /dev/null would print the whole file
            say(f"[red]missing[/]: {path} (run specforge compile)")
            continue
        sys.stdout.write(unified_diff(path, old, new))
        say(f"[red]stale[/] {path}: differs from a fresh compile (stale or edited by hand)")
    for path in strays(out_dir, files):
        problems += 1
        say(f"[red]stray[/] {path}: not produced by the spec")
    if not problems:  # the disk holds exactly this compile's files
        check_cache.record(item, out_dir, allow_remote_code, on_disk)
    return problems
