"""`specforge report`: one self-contained HTML page for a run, a sweep or several runs
(specforge.report does the work); and the page `specforge run` writes when a run ends."""

from __future__ import annotations

import argparse
import os
import webbrowser
from pathlib import Path
from typing import Any

from specforge.cli.common import add_verb
from specforge.core.console import say


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "report",
        run,
        "Write one self-contained HTML page (no network, no JavaScript) for a run, a sweep, or "
        "several runs side by side: the headline, curves, held-out errors, data and provenance.",
    )
    sub.add_argument(
        "targets",
        nargs="+",
        metavar="RUN_OR_SWEEP",
        help="a run folder or run id (its page), a sweep id, or several runs (a comparison)",
    )
    sub.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="HTML",
        help="where to write it (default: RUN_DIR/report.html; a sweep's folder; ./report.html)",
    )
    sub.add_argument(
        "--by",
        metavar="METRIC",
        help="rank a comparison by this metric (as `specforge compare --by`)",
    )
    sub.add_argument("--open", action="store_true", help="open the page in a browser")


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: the report loads matplotlib
    from specforge.report.compare_page import report_targets

    path = report_targets(args.targets, args.output, args.by)
    print(path)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0


def report_after_run(code: int, name: str) -> int:
    """After `specforge run` (succeeded or not): write the page of the run this process ran
    into its folder and print its path; returns the run's exit code unchanged. A page that
    cannot be written is a warning: the run's outcome is the record, not the page."""
    # imported here for start-up time (matplotlib) and to keep `run` working without it
    from specforge.report.page import report_run
    from specforge.runs.record import host, list_runs

    mine = [
        (run_dir, data)
        for run_dir, data in list_runs(name)
        if data.get("pid") == os.getpid() and data.get("host") == host()
    ]
    if not mine:
        return code  # nothing started (stale scripts, a refused resume)
    run_dir, data = mine[-1]
    try:
        path = report_run(run_dir, record=data)
    except Exception as err:  # noqa: BLE001 - any failure here must not change the run's outcome
        say(f"[yellow]warning[/]: no report page for {run_dir}: {type(err).__name__}: {err}")
        return code
    say(f"report: {path}")
    return code
