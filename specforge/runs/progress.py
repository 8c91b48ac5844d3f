"""The live view of a run: step, loss, eval loss, tokens/s, ETA (rich on a terminal, lines when piped)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from specforge.runs.record import read_jsonl
from specforge.spec.models import Spec


class LiveView:
    def __init__(self, metrics_path: Path, spec: Spec):
        self.metrics_path = metrics_path
        self.max_steps = spec.training.max_steps
        self.epochs = spec.training.num_train_epochs
        self.step = "starting"
        self.started = time.monotonic()
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

    def set_step(self, name: str) -> None:
        self.step = name
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
            if not self.live:
                print(self._line(), file=sys.stderr, flush=True)
        if self.live:
            self.live.update(self._table())

    def _remember(self, entry: dict) -> None:
        self.last.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})

    def _fields(self) -> dict[str, str]:
        last = self.last
        elapsed = time.monotonic() - self.started
        progress = self._progress(last) if last else None
        done = progress - self.base if progress is not None else 0
        eta = elapsed * (1 - progress) / done if done > 0 else None
        # TRL's num_tokens restarts at 0 in a resumed trainer: a rate only from new entries
        tokens = last.get("num_tokens") if self.seen > self.resumed_at else None
        return {
            "step": self.step
            if not last
            else f"{self.step} {int(last.get('step', 0))}"
            + (f"/{self.max_steps}" if self.max_steps else ""),
            "loss": f"{last['loss']:.4f}" if "loss" in last else "-",
            "eval loss": f"{last['eval_loss']:.4f}" if "eval_loss" in last else "-",
            "tokens/s": f"{tokens / elapsed:.0f}" if tokens else "-",
            "ETA": f"{eta:.0f}s" if eta is not None and self.step == "train" else "-",
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
