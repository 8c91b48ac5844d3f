"""The run record (run.json): what ran, on what, from which inputs, and how it ended.

Everything here is read without importing the ML stack (package versions come from metadata).
Environment variables are never recorded: tokens live there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from specforge import __version__
from specforge.artifacts import write_atomic
from specforge.spec.models import Spec, is_local_path

RUNS_DIR = Path("runs")
STACK = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_dir(name: str, root: Path = RUNS_DIR) -> Path:
    """runs/<name>/<UTC time>-<random>: sortable by time, never reused, never overwritten."""
    parent = root / name
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = parent / f"{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"specforge": __version__, "python": platform.python_version()}
    for package in STACK:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def _run(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state() -> dict:
    commit = _run(["git", "rev-parse", "HEAD"])
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit, "dirty": bool(status)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device() -> dict:
    gpus = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus.splitlines() if gpus else [],
    }


def data_fingerprint(spec: Spec) -> dict:
    """sha256 of local files; name + revision for hub datasets."""
    ds = spec.dataset
    if is_local_path(ds.path):
        train = {"path": ds.path, "sha256": file_sha256(Path(ds.path))}
    else:
        train = {"hub": ds.path, "revision": ds.revision, "split": ds.split}
    out = {"train": train}
    if spec.inference.eval_data:
        path = Path(spec.inference.eval_data)
        out["eval"] = {"path": spec.inference.eval_data, "sha256": file_sha256(path)}
    return out


def model_fingerprint(spec: Spec) -> dict:
    m = spec.model
    out: dict = {"name": m.name, "revision": m.revision}
    if m.package:
        try:
            out["package"] = m.package
            out["package_version"] = importlib.metadata.version(m.package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out["package_version"] = None
    if m.gguf_file:
        out["gguf_file"] = m.gguf_file
    return out


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return rows


def final_losses(metrics: list[dict]) -> dict:
    train = [m["loss"] for m in metrics if "loss" in m]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    summary = next((m for m in reversed(metrics) if "train_loss" in m), {})
    return {
        "first_train_loss": train[0] if train else None,
        "final_train_loss": train[-1] if train else None,
        "mean_train_loss": summary.get("train_loss"),
        "final_eval_loss": evals[-1] if evals else None,
        "steps": max((m.get("step", 0) for m in metrics), default=0),
    }


class RunRecord:
    """run.json, rewritten atomically whenever something changes."""

    def __init__(self, run_dir: Path, data: dict):
        self.path = run_dir / "run.json"
        self.data = data
        self.save()

    def update(self, **fields) -> None:
        self.data.update(fields)
        self.save()

    def save(self) -> None:
        text = json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n"
        write_atomic(self.path, text.encode("utf-8"))


def start_record(run_dir: Path, loaded, scripts_dir: Path, script_hashes: dict) -> RunRecord:
    spec = loaded.spec
    t = spec.training
    return RunRecord(
        run_dir,
        {
            "run_id": run_dir.name,
            "name": spec.name,
            "status": "running",
            "failed_step": None,
            "pid": os.getpid(),
            "started_at": now_iso(),
            "ended_at": None,
            "duration_s": None,
            "spec": {
                "path": loaded.label,
                "sha256": loaded.sha256,
                "overrides": loaded.overrides,
                "resolved": spec.model_dump(mode="json", exclude={"extends"}),
            },
            "scripts": {"dir": scripts_dir.as_posix(), "sha256": script_hashes},
            "git": git_state(),
            "versions": versions(),
            "device": device(),
            "seed": spec.seed,
            "model": model_fingerprint(spec),
            "data": data_fingerprint(spec),
            "world_size": 1,
            "effective_batch_size": t.per_device_train_batch_size * t.gradient_accumulation_steps,
            "results": {},
        },
    )
