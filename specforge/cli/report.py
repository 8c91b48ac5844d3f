"""`specforge report`: one self-contained HTML page for a run, a sweep or several runs
(specforge.report does the work); and the page `specforge run` writes when a run ends."""

from __future__ import annotations

import argparse
import os
import webbrowser
from collections.abc import Callable
from functools import partial
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


def _runs_of_this_process(name: str) -> list[tuple[Path, dict]]:
    # imported here for start-up time (the record's helpers are not needed to parse arguments)
    from specforge.runs.record import host, list_runs

    return [
        (run_dir, data)
        for run_dir, data in list_runs(name)
        if data.get("pid") == os.getpid() and data.get("host") == host()
    ]


def _write(what: Path | str, write: Callable[[], Path]) -> Path | None:
    """One page; a page that cannot be written is a warning: the outcome is the record."""
    try:
        return write()
    except Exception as err:  # noqa: BLE001 - any failure here must not change the run's outcome
        say(f"[yellow]warning[/]: no report page for {what}: {type(err).__name__}: {err}")
        return None


def report_after_run(code: int, name: str) -> int:
    """After `specforge run` (succeeded or not): write the page of the run this process ran
    into its folder and print its path; returns the run's exit code unchanged."""
    # imported here for start-up time (matplotlib) and to keep `run` working without it
    from specforge.report.page import report_run

    mine = _runs_of_this_process(name)
    if not mine:
        return code  # nothing started (stale scripts, a refused resume)
    run_dir, data = mine[-1]
    path = _write(run_dir, lambda: report_run(run_dir, record=data))
    if path is not None:
        say(f"report: {path}")
    return code


def report_after_sweep(code: int, name: str, sweep_id: str) -> int:
    """After a local `specforge sweep`: each point run this process ran gets its page, as
    `specforge run` writes one, and the sweep its page (the points ranked) in its folder;
    returns the sweep's exit code unchanged."""
    # imported here for start-up time (matplotlib)
    from specforge.report.compare_page import report_targets
    from specforge.report.page import report_run

    for run_dir, data in _runs_of_this_process(name):
        _write(run_dir, partial(report_run, run_dir, record=data))
    path = _write(sweep_id, lambda: report_targets([sweep_id], None))
    if path is not None:
        say(f"report: {path}")
    return code
