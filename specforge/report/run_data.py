"""What a run's page shows, read from its folder alone: run.json, metrics.jsonl, eval_*.json,
predictions, train_summary.json and the parent runs' records.

Nothing is recomputed that the record holds; what the folder lacks stays None, and the page
says "not recorded".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from specforge.runs.record import final_losses, read_jsonl, read_record
from specforge.runs.scoring import read_predictions
from specforge.spec.models import Spec

# infer.py's output per evaluate step, and the log each step writes (runner.plan_steps)
PREDICTIONS = {"tuned": "predictions.jsonl", "base": "predictions_base.jsonl"}
STEP_LOGS = {
    "prepare": "prepare.log",
    "train": "train.log",
    "evaluate-tuned": "eval_tuned.log",
    "evaluate-base": "eval_base.log",
    "infer": "infer.log",
}
PARENT_DEPTH = 8  # a parent chain longer than this is cut (and said to be)


@dataclass
class RunView:
    dir: Path
    record: dict
    metrics: list[dict] = field(default_factory=list)
    tuned: dict | None = None  # eval_tuned.json
    base: dict | None = None  # eval_base.json
    predictions: dict[str, list[dict]] = field(default_factory=dict)
    summary: dict | None = None  # train_summary.json
    parents: list[dict] = field(default_factory=list)  # parent, grandparent, ... records

    @property
    def resolved(self) -> dict:
        return (self.record.get("spec") or {}).get("resolved") or {}

    @property
    def results(self) -> dict:
        return self.record.get("results") or {}

    @property
    def losses(self) -> dict:
        return self.results.get("losses") or final_losses(self.metrics)

    @property
    def labels(self) -> list[str] | None:
        return (self.resolved.get("inference") or {}).get("labels")

    @property
    def base_name(self) -> str:
        """What the base side scored: "parent" for a run that continued one, else "base"."""
        return (self.record.get("base_evaluation") or {}).get("model") or "base"

    @property
    def method(self) -> str:
        return self.resolved.get("method") or "sft"


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _predictions(path: Path) -> list[dict]:
    try:
        return read_predictions(path)
    except (OSError, ValueError):
        return []


def parent_chain(record: dict) -> list[dict]:
    """The records of the run's parent, its parent's parent, ... (as far as they are readable);
    a parent whose folder is gone appears as run.json's own note of it."""
    chain: list[dict] = []
    parent = record.get("parent")
    while parent and len(chain) < PARENT_DEPTH:
        data = read_record(Path(parent["path"])) if parent.get("path") else None
        chain.append({"parent": parent, "record": data})
        parent = (data or {}).get("parent")
    return chain


def load_run(run_dir: Path, record: dict | None = None) -> RunView:
    record = record if record is not None else read_record(run_dir)
    if record is None:
        raise FileNotFoundError(f"{run_dir}: no readable run.json")
    view = RunView(dir=run_dir, record=record, metrics=read_jsonl(run_dir / "metrics.jsonl"))
    results = record.get("results") or {}
    view.tuned = results.get("eval_tuned") or _json(run_dir / "eval_tuned.json")
    view.base = results.get("eval_base") or _json(run_dir / "eval_base.json")
    view.summary = results.get("train_summary") or _json(run_dir / "train_summary.json")
    for side, name in PREDICTIONS.items():
        view.predictions[side] = _predictions(run_dir / name)
    view.parents = parent_chain(record)
    return view


def answer_column(resolved: dict) -> str | None:
    """The held-out column with the gold answer, decided as the run decided it (the resolved
    spec read back into a Spec); None for a record the models no longer read."""
    try:
        return Spec.model_validate(resolved).answer_column()
    except (ValidationError, ValueError, TypeError):
        return None


def log_tail(run_dir: Path, step: str | None, lines: int = 25) -> tuple[str, str] | None:
    """(file name, its last lines) of the log the step wrote; None when there is none."""
    name = STEP_LOGS.get(step or "")
    if name is None:
        return None
    try:
        text = (run_dir / name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return name, "\n".join(text.splitlines()[-lines:])
