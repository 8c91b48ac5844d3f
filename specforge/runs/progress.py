"""The live view of a run: step, loss, eval loss, tokens/s, ETA (rich on a terminal, lines when piped).

Training's figures come from metrics.jsonl; where a step stands between two log entries, and how
far an evaluation is, come from the step's log: tqdm's `n/total [` bar (train.py) and infer.py's
`rows n/total` lines (step_progress()).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from specforge.runs.record import read_jsonl, step_progress
from specforge.spec.models import Spec

HEARTBEAT_S = 30  # piped: a line at least this often while a step runs, so it never looks stuck


class LiveView:
    def __init__(self, metrics_path: Path, spec: Spec):
        self.metrics_path = metrics_path
        self.max_steps = spec.training.max_steps
        self.epochs = spec.training.num_train_epochs
        self.step = "starting"
        self.started = self.step_started = self.printed_at = time.monotonic()
        self.log: Path | None = None
        self.rows: int | None = None
        self.printed = ""
        self.console = Console(stderr=True)
        self.live = (
            Live(console=self.console, refresh_per_second=2, transient=False)
            if self.console.is_terminal
            else None
        )
        self.last: dict = {}
        # A resumed run's earlier entries are history: shown as the last values, but speed and
        # ETA count only from what this attempt logs.
        history = read_jsonl(metrics_path)
        for entry in history:
            self._remember(entry)
        self.seen = self.resumed_at = len(history)
        self.base = (self._progress(self.last) or 0.0) if self.last else 0.0

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)

    def set_step(self, name: str, log: Path | None = None, rows: int | None = None) -> None:
        """A new step: its name, the log it writes, and for an evaluation the rows it answers."""
        self.step, self.log, self.rows = name, log, rows
        self.step_started = time.monotonic()
        if not self.live:
            print(f"[{name}] started", file=sys.stderr, flush=True)
        self.refresh()

    def _progress(self, entry: dict) -> float | None:
        if self.max_steps:
            return min(entry.get("step", 0) / self.max_steps, 1.0)
        if "epoch" in entry and self.epochs:
            return min(entry["epoch"] / self.epochs, 1.0)
        return None

    def refresh(self) -> None:
        metrics = read_jsonl(self.metrics_path)
        new = metrics[self.seen :]
        self.seen = len(metrics)
        for entry in new:
            self._remember(entry)
            if not self.live and "train_runtime" not in entry:  # the summary repeats the step
                self._print()
        if self.live:
            self.live.update(self._table())
        elif time.monotonic() - self.printed_at >= HEARTBEAT_S:
            self._print(again=True)

    def _print(self, *, again: bool = False) -> None:
        """A line when it says something new (or, `again`, as the heartbeat)."""
        line = self._line()
        if line != self.printed or again:
            print(line, file=sys.stderr, flush=True)
            self.printed, self.printed_at = line, time.monotonic()

    def _remember(self, entry: dict) -> None:
        self.last.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})

    def _fields(self) -> dict[str, str]:
        if self.step.startswith("evaluate") or self.step == "infer":
            return self._evaluation_fields()
        last = self.last
        elapsed = time.monotonic() - self.started
        progress = self._progress(last) if last else None
        done = progress - self.base if progress is not None else 0.0
        eta = elapsed * (1 - progress) / done if progress is not None and done > 0 else None
        # TRL's num_tokens restarts at 0 in a resumed trainer: a rate only from new entries
        tokens = last.get("num_tokens") if self.seen > self.resumed_at else None
        at = int(last.get("step", 0))
        if self.step == "train" and (bar := step_progress(self.log, self.max_steps)):
            at = max(at, bar[0])  # between log entries: the step training is at
        return {
            "step": self.step
            if not last and at == 0
            else f"{self.step} {at}" + (f"/{self.max_steps}" if self.max_steps else ""),
            "loss": f"{last['loss']:.4f}" if "loss" in last else "-",
            "eval loss": f"{last['eval_loss']:.4f}" if "eval_loss" in last else "-",
            "tokens/s": f"{tokens / elapsed:.0f}" if tokens else "-",
            "ETA": f"{eta:.0f}s" if eta is not None and self.step == "train" else "-",
        }

    def _evaluation_fields(self) -> dict[str, str]:
        """rows done of the rows it answers, rows/s and ETA (from infer.py's progress lines);
        the time spent so far where it prints none."""
        elapsed = time.monotonic() - self.step_started
        found = step_progress(self.log, self.rows)
        if found is None:
            of = f" of {self.rows} rows" if self.rows else ""
            return {"step": f"{self.step} ({elapsed:.0f}s{of})", "rows/s": "-", "ETA": "-"}
        done, total = found
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        return {
            "step": f"{self.step} {done}/{total} rows",
            "rows/s": f"{rate:.2f}" if rate else "-",
            "ETA": f"{eta:.0f}s" if eta is not None else "-",
        }

    def _line(self) -> str:
        return "  ".join(f"{k}: {v}" for k, v in self._fields().items())

    def _table(self) -> Table:
        table = Table(show_header=True, header_style="bold")
        fields = self._fields()
        for key in fields:
            table.add_column(key)
        table.add_row(*fields.values())
        return table
