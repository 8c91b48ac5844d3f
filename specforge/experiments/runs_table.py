"""`specforge runs` filters and `--export jsonl|csv`: every record, for notebooks and tools.

jsonl: one run.json a line (plus its folder). csv: one run a row, its summary columns, the held-out
metrics of both models and every resolved spec key (`spec.lora.r`, ...), union over the runs.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from specforge.experiments.compare import flatten
from specforge.runs.record import summary_row


def select(
    runs: list[tuple[Path, dict]], *, status: list[str] | None, sweep: str | None
) -> list[tuple[Path, dict]]:
    """The runs with one of `status` and in sweep `sweep` (None: any)."""
    return [
        (run_dir, data)
        for run_dir, data in runs
        if (not status or data.get("status") in status)
        and (sweep is None or (data.get("sweep") or {}).get("id") == sweep)
    ]


def csv_row(run_dir: Path, data: dict) -> dict:
    results = data.get("results") or {}
    row = dict(summary_row(run_dir, data))
    row.update(
        overrides=" ".join(data.get("spec", {}).get("overrides") or []),
        duration_s=data.get("duration_s"),
        git_commit=(data.get("git") or {}).get("commit"),
        git_dirty=(data.get("git") or {}).get("dirty"),
    )
    for model in ("tuned", "base"):
        scores = results.get(f"eval_{model}") or {}
        for key, value in scores.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[f"{key}_{model}"] = value
    resolved = dict((data.get("spec") or {}).get("resolved") or {})
    resolved.pop("sweep", None)
    row.update({f"spec.{k}": v for k, v in flatten(resolved).items()})
    return row


def export(runs: list[tuple[Path, dict]], fmt: str, out=None) -> None:
    out = out or sys.stdout
    if fmt == "jsonl":
        for run_dir, data in runs:
            out.write(json.dumps({**data, "path": run_dir.as_posix()}, sort_keys=True) + "\n")
        return
    rows = [csv_row(run_dir, data) for run_dir, data in runs]
    columns: dict[str, None] = {}  # first seen first: the summary columns lead
    for row in rows:
        columns.update(dict.fromkeys(row))
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
