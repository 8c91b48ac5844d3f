"""`specforge validate`: schema and cross-field rules for a list of specs, every problem located.

It runs as a pre-commit hook: nothing here may import torch (common.load_spec loads pydantic's
models on first use)."""

from __future__ import annotations

import argparse
from typing import Any

from specforge.cli.common import (
    add_overrides,
    add_remote_code,
    add_spec_list,
    add_verb,
    load_all,
    resolve_spec_paths,
)
from specforge.core.console import print_diagnostics, print_json, say


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "validate",
        run,
        "Check specs: schema and cross-field rules, every problem located.",
    )
    add_spec_list(sub)
    add_overrides(sub)
    add_remote_code(sub)
    sub.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    paths = resolve_spec_paths(args.specs)
    loaded, diagnostics = load_all(paths, args.set, args.allow_remote_code)
    failed = any(d.severity == "error" for d in diagnostics)
    if args.format == "json":
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
    return 1 if failed else 0
