"""`specforge sweep`: one experiment per point of a grid, grouped under a sweep id; run here one
after another, submitted as one slurm array job, or (--dry-run) only described."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from specforge.cli.common import add_overrides, add_remote_code, add_spec, add_verb, load_one
from specforge.cli.report import report_after_sweep


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "sweep",
        run,
        "Run one experiment per point of a grid (--grid or the spec's sweep:), grouped under a "
        "sweep id; the same command again runs only the points not yet succeeded.",
    )
    add_spec(sub)
    sub.add_argument(
        "--grid",
        action="append",
        default=None,
        metavar="KEY=V1,V2",
        help="a swept key and its values, e.g. --grid lora.r=8,16 (repeatable; replaces the "
        "spec's sweep.grid)",
    )
    add_overrides(sub)
    add_remote_code(sub)
    sub.add_argument("--dry-run", action="store_true", help="print the sweep id and its points")
    sub.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="local: the points one after another here; slurm: one array job, a task per point",
    )


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: sweeps load jinja2 and the spec's pydantic models
    from specforge.experiments.sweep import Sweep, describe, load_sweep, run_sweep
    from specforge.experiments.sweep_slurm import submit_array

    def load(path: Path) -> Sweep:
        return load_sweep(path, args.set, args.grid, args.allow_remote_code)

    sweep = load_one(args.spec, load)
    if args.dry_run:
        describe(sweep)
        return 0
    if args.launcher == "slurm":
        return submit_array(sweep)
    return report_after_sweep(run_sweep(sweep), sweep.base.spec.name, sweep.id)
