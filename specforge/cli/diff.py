"""`specforge diff`: what compile would change (with --set: what an override would change in the
code), without writing."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from specforge.cli.common import add_overrides, add_remote_code, add_spec, add_verb
from specforge.cli.compile import compile_all
from specforge.core.console import say
from specforge.core.files import changes, unified_diff


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "diff",
        run,
        "Show what compile would change, without writing "
        "(with --set: what an override would change in the code).",
    )
    add_spec(sub)
    add_overrides(sub)
    add_remote_code(sub)


def run(args: argparse.Namespace) -> int:
    outputs = compile_all([args.spec], args.set, args.allow_remote_code)
    found = [c for out_dir, files in outputs for c in changes(out_dir, files)]
    for path, old, new in found:
        sys.stdout.write(unified_diff(path, old, new))
    if not found:
        say("no changes")
    return 1 if found else 0
