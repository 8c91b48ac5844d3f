"""`specforge runs`: list recorded runs (status, steps, losses, accuracy), filtered; or export the
selected records as jsonl/csv. Reading a record applies the dead-runner rule (and rewrites it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from specforge.cli.common import add_verb, load_spec
from specforge.core.console import print_diagnostics, print_json, say
from specforge.core.errors import SpecError

RUN_COLUMNS = (
    ("name", "spec"),
    ("run_id", "run"),
    ("status", "status"),
    ("steps", "steps"),
    ("final_train_loss", "train loss"),
    ("final_eval_loss", "eval loss"),
    ("accuracy_tuned", "acc tuned"),
    ("lenient_accuracy_tuned", "lenient tuned"),
    ("accuracy_base", "acc base"),
    ("lenient_accuracy_base", "lenient base"),
    ("exact_match_tuned", "EM tuned"),
    ("rouge_l_tuned", "ROUGE-L tuned"),
    ("exact_match_base", "EM base"),
    ("rouge_l_base", "ROUGE-L base"),
    ("sweep", "sweep"),
)
# shown only when some listed run has them (runs recorded before infer.py reported them do not;
# a classifier has no exact match, a chat run no accuracy)
OPTIONAL_COLUMNS = (
    "accuracy_tuned",
    "accuracy_base",
    "lenient_accuracy_tuned",
    "lenient_accuracy_base",
    "exact_match_tuned",
    "rouge_l_tuned",
    "exact_match_base",
    "rouge_l_base",
    "sweep",
)


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers, "runs", run, "List runs: status, steps, losses, accuracy; filter; export."
    )
    sub.add_argument(
        "spec", nargs="?", metavar="SPEC", help="a spec file or name (default: every spec's runs)"
    )
    sub.add_argument("--format", choices=["text", "json"], default="text")
    sub.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only runs with this status: succeeded, failed, interrupted, running, ... "
        "(repeatable)",
    )
    sub.add_argument("--sweep", metavar="SWEEP_ID", help="only the runs of this sweep")
    sub.add_argument(
        "--latest",
        action="store_true",
        help="print only the folder `runs/<name>/latest` names (the newest succeeded run started "
        "without --set overrides, outside a sweep); exit 1 when there is none",
    )
    sub.add_argument(
        "--export",
        choices=["jsonl", "csv"],
        help="print every selected record instead of the table: jsonl (each run.json) or csv "
        "(one row a run: summary, metrics, every resolved spec key)",
    )


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: run records load the spec's pydantic models
    from specforge.experiments.compare import cell
    from specforge.experiments.runs_table import export, select
    from specforge.runs.record import base_side, list_runs, summary_row

    name = args.spec
    if name is not None and Path(name).is_file():  # a spec file: its runs (by the spec's name)
        try:
            name = load_spec(Path(name), None, allow_remote_code=True, check_files=False).spec.name
        except SpecError as err:
            print_diagnostics(err.diagnostics)
            return 1
    if args.latest:
        return print_latest(name)
    runs = select(list_runs(name), status=args.status, sweep=args.sweep)
    if args.export:
        export(runs, args.export)
        return 0
    rows = [summary_row(run_dir, data) for run_dir, data in runs]
    if args.format == "json":
        print_json(rows)
        return 0
    columns = [
        (key, label)
        for key, label in RUN_COLUMNS
        if key not in OPTIONAL_COLUMNS or any(row[key] is not None for row in rows)
    ]
    # a run that continued a parent (model.adapter) scored that parent on the base side
    side = base_side(row["base_model"] for row in rows)
    columns = [(key, label.replace(" base", f" {side}")) for key, label in columns]
    print_table(
        [label for _, label in columns], [[cell(row[key]) for key, _ in columns] for row in rows]
    )
    if not rows:
        say(f"no runs under runs/{name or ''}")
    return 0


def print_latest(name: str | None) -> int:
    """`runs NAME --latest`: the folder model.adapter's `runs/NAME/latest` resolves to."""
    from specforge.runs.lineage import latest_run  # here for start-up time, as in run()

    if name is None:
        say("[red]error[/]: --latest needs a spec (file or name)")
        return 2
    found = latest_run(name)
    if found is None:
        say(
            f"no succeeded run of {name} without --set overrides, outside a sweep, under runs/{name}/"
        )
        return 1
    print(found.as_posix())
    return 0


def print_table(headers: list[str], table: list[list[str]]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console  # rich only for a terminal: its import is slow
        from rich.table import Table

        rich_table = Table(header_style="bold")
        for header in headers:
            rich_table.add_column(header, no_wrap=header in ("spec", "run"))
        for cells in table:
            rich_table.add_row(*cells)
        Console().print(rich_table)
    else:  # piped: plain aligned columns, one run a line, for grep and awk
        widths = [max(len(c) for c in column) for column in zip(headers, *table)]
        for cells in [headers, *table]:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
