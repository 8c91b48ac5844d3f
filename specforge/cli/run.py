"""`specforge run`: compile-check, then run train.py and infer.py; record the run (locally, or
submitted to slurm; --resume continues an unfinished one)."""

from __future__ import annotations

import argparse
from typing import Any

from specforge.cli.common import add_overrides, add_remote_code, add_spec, add_verb, load_one
from specforge.cli.report import report_after_run
from specforge.core.console import say
from specforge.core.errors import UsageError


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers, "run", run, "Compile-check, then run train.py and infer.py; record the run."
    )
    add_spec(sub)
    add_overrides(sub)
    add_remote_code(sub)
    sub.add_argument("--compile", action="store_true", help="recompile generated/<name> if stale")
    sub.add_argument("--dry-run", action="store_true", help="print what would run")
    sub.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="slurm: submit generated/<name>/submit.sbatch with sbatch",
    )
    sub.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="RUN_ID",
        help="continue an unfinished run in its folder, from its last checkpoint "
        "(default: the spec's latest run that did not succeed)",
    )


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: the runner loads jinja2 and the spec's pydantic models
    from specforge.runs.lineage import ParentError
    from specforge.runs.runner import CannotResume, StaleScripts, describe, execute, resume
    from specforge.runs.slurm import submit

    if args.dry_run and args.resume is not None:
        raise UsageError("--dry-run describes a new run; it does not combine with --resume")
    loaded = load_one(args.spec, overrides=args.set, allow_remote_code=args.allow_remote_code)
    try:
        if args.dry_run:
            describe(loaded, compile_first=args.compile)
            return 0
        if args.launcher == "slurm":
            return submit(loaded, compile_first=args.compile)
        if args.resume is not None:
            code = resume(loaded, args.resume or None, compile_first=args.compile)
        else:
            code = execute(loaded, compile_first=args.compile)
        return report_after_run(code, loaded.spec.name)  # the page, also for a failed run
    except (StaleScripts, CannotResume, ParentError) as err:
        say(f"[red]error[/]: {err}")
        return 1
