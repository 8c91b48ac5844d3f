"""Verification every export format shares: the same held-out prompts through the artifact's own
runtime, answers compared with the tuned adapter's, eval.json beside the artifact, and the export
recorded in run.json (sha256 of each file). Light: no torch import here.

A format's export() typically reads:

    with staged_folder(out_dir) as folder:      # built aside, swapped in whole
        ...write the artifact into folder...
    answers = ...run.prompts() through the artifact's runtime, post-processed like infer.py...
    return finish(run, "gguf", out_dir, answers=answers, threshold=threshold, seconds=s, ...)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from specforge.core.files import file_sha256, umask, write_atomic
from specforge.export.run import ExportError, ExportRun
from specforge.runs.record import RunRecord, now_iso
from specforge.runs.scoring import score_predictions

EVAL_FILE = "eval.json"
PREDICTIONS_FILE = "predictions.jsonl"
VERIFICATION_FILES = (EVAL_FILE, PREDICTIONS_FILE)  # written beside the artifact, not part of it


@dataclass
class ExportResult:
    """One format's export: where it is, what it holds, and how it compared with the adapter."""

    format: str
    path: Path
    threshold: float
    agreement: float | None = None  # share of rows answered exactly as the adapter answered
    n: int = 0  # rows compared
    passed: bool = False
    seconds: float | None = None  # the verification run through the artifact's runtime
    total_seconds: float | None = None  # build + verification (set by export_run)
    files: dict[str, str] = field(default_factory=dict)  # path in the folder -> sha256
    metrics: dict | None = None  # held-out scores of the export's answers (specforge.runs.scoring)
    checks: dict = field(default_factory=dict)  # format-specific evidence (e.g. logits diff)
    error: str | None = None  # why it did not pass
    reference: str = "the adapter"  # whose answers it was compared with (full FT: the model)

    def entry(self) -> dict:
        """The run.json `exports.<format>` entry."""
        return {
            "format": self.format,
            "path": self.path.as_posix(),
            "passed": self.passed,
            "agreement": self.agreement,
            "n": self.n,
            "threshold": self.threshold,
            "error": self.error,
            "sha256": self.files,
            "accuracy": (self.metrics or {}).get("accuracy"),
            "checks": self.checks,
            "seconds": self.seconds,
            "total_seconds": self.total_seconds,
            "exported_at": now_iso(),
        }

    def summary(self) -> str:
        if self.agreement is None:
            return f"FAILED: {self.error}"
        verdict = "ok" if self.passed else f"FAILED: {self.error}"
        return (
            f"agreement {self.agreement:.1%} with {self.reference} on {self.n} held-out rows "
            f"(threshold {self.threshold:.0%}), {self.path}: {verdict}"
        )


def agreement(reference: list[str], answers: list[str]) -> float:
    """Share of rows whose answer is exactly the reference answer (both already post-processed
    as infer.py's answer() does: new tokens only, up to the stop token, stripped)."""
    if len(reference) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(reference)} reference rows")
    if not reference:
        raise ValueError("no rows to compare")
    return sum(a == b for a, b in zip(reference, answers)) / len(reference)


def held_out_metrics(run: ExportRun, answers: list[str]) -> dict | None:
    """The run's own scoring of these answers (accuracy, macro-F1, ...); None without labels
    or gold answers."""
    spec = run.spec
    if not spec.inference.labels:
        return None
    column = spec.answer_column()
    rows = [{**row, "prediction": text} for row, text in zip(run.rows, answers)]
    return score_predictions(rows, list(spec.inference.labels), column)


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of the artifact (the verification files beside it excluded)."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in VERIFICATION_FILES
    }


def finish(
    run: ExportRun,
    fmt: str,
    out_dir: Path,
    *,
    answers: list[str],
    threshold: float,
    seconds: float,
    checks: dict | None = None,
    failures: list[str] | None = None,
) -> ExportResult:
    """Compare `answers` (the artifact's, one per run.rows) with the adapter's, score them, write
    eval.json and predictions.jsonl into out_dir; passed when agreement >= threshold and no
    format-specific check failed (`failures`, each a sentence)."""
    rate = agreement(run.reference, answers)
    problems = list(failures or [])
    trained = "the trained model" if run.spec.lora is None else "the adapter"
    if rate < threshold:
        differ = sum(a != b for a, b in zip(run.reference, answers))
        problems.insert(
            0,
            f"agreement {rate:.1%} is below the threshold {threshold:.0%} "
            f"({differ} of {len(answers)} answers differ from {trained}'s)",
        )
    result = ExportResult(
        fmt,
        out_dir,
        threshold,
        agreement=rate,
        n=len(answers),
        passed=not problems,
        seconds=round(seconds, 2),
        files=file_hashes(out_dir),
        metrics=held_out_metrics(run, answers),
        checks=checks or {},
        error="; ".join(problems) or None,
        reference=trained,
    )
    lines = [
        json.dumps({**row, "prediction": text, "adapter_prediction": ref}, ensure_ascii=False)
        for row, text, ref in zip(run.rows, answers, run.reference)
    ]
    write_atomic(out_dir / PREDICTIONS_FILE, "".join(x + "\n" for x in lines).encode("utf-8"))
    report = {
        "format": fmt,
        "agreement": rate,
        "n": len(answers),
        "threshold": threshold,
        "passed": result.passed,
        "error": result.error,
        "seconds": result.seconds,
        "reference": run.reference_file.as_posix(),
        "metrics": result.metrics,
        "checks": result.checks,
    }
    write_atomic(out_dir / EVAL_FILE, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return result


def record_entry(run_dir: Path, key: str, entry: dict) -> None:
    """Set run.json's exports[key] (rewritten atomically, other keys kept)."""
    record = RunRecord.load(run_dir)
    record.data.setdefault("exports", {})[key] = entry
    record.save()


def record_export(run_dir: Path, result: ExportResult) -> None:
    record_entry(run_dir, result.format, result.entry())


@contextlib.contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """A fresh folder beside out_dir to build in; on success it replaces out_dir whole (a reader
    never sees half an export). out_dir must be absent, empty or an earlier export."""
    if out_dir.exists() and not _replaceable(out_dir):
        raise ExportError(
            f"{out_dir} exists and is not an earlier export (no {EVAL_FILE}); "
            "choose another --out or remove it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        staging.chmod(0o777 & ~umask())  # mkdtemp makes it 0700
        yield staging
        for path in staging.rglob("*"):  # safetensors writes 0600 files: the umask decides
            if path.is_file():
                path.chmod(0o666 & ~umask())
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replaceable(folder: Path) -> bool:
    return folder.is_dir() and ((folder / EVAL_FILE).is_file() or not any(folder.iterdir()))
