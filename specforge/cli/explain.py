"""`specforge explain`: a spec's predicted cost (parameters, tokens and FLOPs per step, memory,
time) and its execution plan; loads no weights."""

from __future__ import annotations

import argparse
from typing import Any

from specforge.cli.common import add_overrides, add_remote_code, add_spec, add_verb, load_one
from specforge.core.console import print_json, say


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "explain",
        run,
        "Predict a spec's cost (parameters, tokens and FLOPs per step, memory, time) and show "
        "the execution plan; loads no weights.",
    )
    add_spec(sub)
    add_overrides(sub)
    add_remote_code(sub)
    sub.add_argument(
        "--gpu",
        choices=["H200", "H100", "A100-80GB", "cpu"],
        help="plan for this device (default: training.gpu)",
    )
    sub.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: it loads the spec's pydantic models
    from specforge.explain import Unknown, explain, render_text

    loaded = load_one(args.spec, overrides=args.set, allow_remote_code=args.allow_remote_code)
    try:
        report = explain(loaded.spec, args.gpu)
    except Unknown as err:
        say(f"[red]error[/]: {loaded.label}: {err}")
        return 1
    if args.format == "json":
        print_json(report)
    else:
        print(render_text(report))
    return 0
