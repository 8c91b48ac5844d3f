"""The run record (run.json): what ran, on what, from which inputs, and how it ended.

Everything here is read without importing the ML stack (package versions come from metadata).
Environment variables are never recorded: tokens live there.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from specforge import __version__
from specforge.core.files import file_sha256, sha256_bytes, write_atomic
from specforge.modelinfo.vocab import COMMIT, ref_file
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
    """sha256 of local files; name + revision for hub datasets; one entry per source of a mixture."""
    ds = spec.dataset
    if ds.sources is None:
        out = {"train": source_fingerprint(ds.source_list()[0])}
    else:
        out = {"train": {"sources": [source_fingerprint(source) for source in ds.sources]}}
    if spec.inference.eval_data:
        path = Path(spec.inference.eval_data)
        out["eval"] = {"path": spec.inference.eval_data, "sha256": file_sha256(path)}
    return out


def source_fingerprint(source) -> dict:
    if is_local_path(source.path):
        return {"path": source.path, "sha256": file_sha256(Path(source.path))}
    out = {"hub": source.path, "revision": source.revision, "split": source.split}
    if source.name is not None:
        out["name"] = source.name
    if source.data_files is not None:
        out["data_files"] = source.data_files
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


# Resolving a Hub revision (null, a branch or a tag) to the commit that ran, so run.json can
# reproduce a Hub run. Read after the train step: the files, and the ref, are in the cache then.

TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of HF_HUB_OFFLINE


def hub_offline() -> bool:
    return any(
        os.environ.get(v, "").upper() in TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def resolve_revision(kind: str, repo_id: str, revision: str | None) -> dict:
    """{resolved_revision, resolved_from} for a Hub `kind` ("model" or "dataset") repo: the spec's
    own commit sha, else the Hub cache's ref, else (online) the Hub API, else unresolved."""
    if revision and COMMIT.fullmatch(revision):
        return {"resolved_revision": revision, "resolved_from": "spec"}
    folder = ref_file(kind, repo_id, revision)
    try:
        sha = folder.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        sha = ""
    if COMMIT.fullmatch(sha):
        return {"resolved_revision": sha, "resolved_from": "hub-cache"}
    unresolved = {"resolved_revision": None, "resolved_from": "unresolved"}
    if hub_offline():
        return unresolved
    try:
        from huggingface_hub import HfApi

        info = getattr(HfApi(), f"{kind}_info")(repo_id, revision=revision, timeout=10)
    except Exception as err:  # noqa: BLE001 - no network, no access, no such repo: unresolved
        return {**unresolved, "resolve_error": type(err).__name__}
    if info.sha and COMMIT.fullmatch(info.sha):
        return {"resolved_revision": info.sha, "resolved_from": "hub-api"}
    return unresolved


def hub_model(spec: Spec) -> str | None:
    """The model's Hub id; None for a package or a local folder (which transformers prefers)."""
    m = spec.model
    if m.package or is_local_path(m.name) or Path(m.name).expanduser().exists():
        return None
    return m.name


def record_revisions(record: RunRecord, spec: Spec) -> None:
    """Add the resolved commit of the Hub model and the Hub dataset to run.json."""
    model = hub_model(spec)
    if model is not None:
        record.data["model"].update(resolve_revision("model", model, spec.model.revision))
    train = record.data["data"]["train"]
    for recorded, source in zip(train.get("sources", [train]), spec.dataset.source_list()):
        if "hub" in recorded:
            recorded.update(resolve_revision("dataset", source.path, source.revision))
    record.save()


def code_sha256(name: str, text: str) -> str:
    """sha256 of what a script runs: a .py file's syntax tree without docstrings (comments are
    not in it), another file's lines that are not comments (#SBATCH lines are directives)."""
    if name.endswith(".py"):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            return sha256_bytes(text.encode("utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and _is_docstring(body[0]):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return sha256_bytes(ast.dump(tree).encode("utf-8"))
    kept = [
        line
        for line in text.splitlines()
        if not line.lstrip().startswith("#") or line.startswith(("#SBATCH", "#!"))
    ]
    return sha256_bytes("\n".join(kept).encode("utf-8"))


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


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
    summary: dict = next((m for m in reversed(metrics) if "train_loss" in m), {})
    return {
        "first_train_loss": train[0] if train else None,
        "final_train_loss": train[-1] if train else None,
        "mean_train_loss": summary.get("train_loss"),
        "final_eval_loss": evals[-1] if evals else None,
        "steps": max((m.get("step", 0) for m in metrics), default=0),
    }


def throughput(metrics: list[dict]) -> dict | None:
    """Mean tokens/s and MFU over the logged intervals (train.py's MetricsFile, FLOPs counted as
    `specforge explain` does); None when none was logged (a run shorter than two log entries)."""
    logged = [m for m in metrics if "tokens_per_second" in m and "mfu" in m]
    if not logged:
        return None
    return {
        "tokens_per_second": sum(m["tokens_per_second"] for m in logged) / len(logged),
        "mfu": sum(m["mfu"] for m in logged) / len(logged),
        "intervals": len(logged),
    }


REWARDS = {"accuracy": "rewards/accuracies", "margin": "rewards/margins"}


def final_rewards(metrics: list[dict]) -> dict | None:
    """dpo/orpo/kto: the trainer's reward accuracy and margin, first and last logged in training,
    and at the last evaluation (kto logs no accuracy); None for other methods."""
    out = {}
    for name, key in REWARDS.items():
        train = [m[key] for m in metrics if key in m]
        evals = [m[f"eval_{key}"] for m in metrics if f"eval_{key}" in m]
        if train:
            out[f"first_reward_{name}"], out[f"final_reward_{name}"] = train[0], train[-1]
        if evals:
            out[f"eval_reward_{name}"] = evals[-1]
    return out or None


class RunRecord:
    """run.json, rewritten atomically whenever something changes."""

    def __init__(self, run_dir: Path, data: dict, *, save: bool = True):
        self.path = run_dir / "run.json"
        self.data = data
        if save:
            self.save()

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        return cls(
            run_dir, json.loads((run_dir / "run.json").read_text(encoding="utf-8")), save=False
        )

    def update(self, **fields) -> None:
        self.data.update(fields)
        self.save()

    def save(self) -> None:
        text = json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n"
        write_atomic(self.path, text.encode("utf-8"))

    def begin_attempt(self, resumed_from: str | None) -> None:
        """A new attempt in the same folder; earlier attempts stay in `attempts`."""
        self.data.setdefault("attempts", []).append(
            {
                "started_at": now_iso(),
                "ended_at": None,
                "duration_s": None,
                "status": "running",
                "failed_step": None,
                "resumed_from": resumed_from,
                "pid": os.getpid(),
                "host": host(),
            }
        )
        self.update(
            status="running",
            failed_step=None,
            ended_at=None,
            step_process=None,
            **runner_identity(),
        )

    def end_attempt(self, status: str, failed_step: str | None, duration_s: float) -> None:
        attempt = self.data["attempts"][-1]
        attempt.update(
            status=status, failed_step=failed_step, ended_at=now_iso(), duration_s=duration_s
        )
        self.update(
            status=status,
            failed_step=failed_step,
            ended_at=attempt["ended_at"],
            duration_s=round(sum(a["duration_s"] or 0 for a in self.data["attempts"]), 1),
            step_process=None,
        )


def start_record(run_dir: Path, loaded, scripts_dir: Path, script_hashes: dict) -> RunRecord:
    spec = loaded.spec
    t = spec.training
    record = RunRecord(
        run_dir,
        {
            "run_id": run_dir.name,
            "name": spec.name,
            "status": "running",
            "failed_step": None,
            **runner_identity(),
            "step_process": None,
            "started_at": now_iso(),
            "ended_at": None,
            "duration_s": None,
            "completed_steps": [],
            "attempts": [],
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
            "world_size": spec.launch.world_size(),
            # rows per optimiser step: per device x processes x accumulation
            "effective_batch_size": t.per_device_train_batch_size
            * spec.launch.world_size()
            * t.gradient_accumulation_steps,
            "results": {},
        },
    )
    record.begin_attempt(resumed_from=None)
    return record


# Liveness. A `specforge run` killed with SIGKILL (or by the OOM killer, or a lost terminal)
# cannot write its own ending, so readers infer it: `running` with no live process behind it
# on this host means interrupted. The pid's start time guards against a reused pid.


def host() -> str:
    return socket.gethostname()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) from /proc; None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
    return fields[0], int(fields[19])


def process_start(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def runner_identity() -> dict:
    pid = os.getpid()
    return {"pid": pid, "pid_start": process_start(pid), "host": host()}


def process_alive(pid: int | None, started: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (macOS): the pid exists, trust it
    state, start = stat
    # a zombie is dead but not yet reaped; another start time means the pid was reused
    return state != "Z" and (started is None or start == started)


def _alive(data: dict) -> bool:
    """The runner, or the step it started (orphaned if only the runner was killed), still runs."""
    step = data.get("step_process") or {}
    return process_alive(data.get("pid"), data.get("pid_start")) or process_alive(
        step.get("pid"), step.get("pid_start")
    )


def settle(run_dir: Path, data: dict) -> dict:
    """Apply the dead-runner rule; the record is rewritten so every later reader agrees."""
    if data.get("status") != "running" or data.get("host") != host() or _alive(data):
        return data  # another host's run cannot be checked from here
    try:
        current = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return data
    if current.get("status") != "running" or current.get("pid") != data.get("pid"):
        return current  # a resume started meanwhile: its record wins
    step = (data.get("step_process") or {}).get("name")
    note = f"runner pid {data.get('pid')} on {data.get('host')} is gone; marked at {now_iso()}"
    data = {
        **data,
        "status": "interrupted",
        "failed_step": step,
        "step_process": None,
        "interrupted": note,
    }
    if data.get("attempts") and data["attempts"][-1]["status"] == "running":
        data["attempts"][-1] = {
            **data["attempts"][-1],
            "status": "interrupted",
            "failed_step": step,
        }
    RunRecord(run_dir, data)
    return data


def read_record(run_dir: Path) -> dict | None:
    """run.json with the dead-runner rule applied; None when absent or unreadable."""
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return settle(run_dir, data)


def list_runs(name: str | None = None, root: Path = RUNS_DIR) -> list[tuple[Path, dict]]:
    """(run folder, record) for every run of `name` (or of every spec), oldest first."""
    parents = [root / name] if name else sorted(p for p in root.glob("*") if p.is_dir())
    found = []
    for parent in parents:
        for run_dir in sorted(p for p in parent.glob("*") if p.is_dir()):
            data = read_record(run_dir)
            if data is not None:
                found.append((run_dir, data))
    return found


def base_side(models) -> str:
    """The heading of the base side for runs whose base evaluations scored `models` ("base", or
    "parent" for a run that continued one; None counts as "base"): base, parent or base/parent."""
    return "/".join(sorted({m or "base" for m in models}, key=("base", "parent").index)) or "base"


# tqdm's "n/total [elapsed<eta, ...]", or infer.py's "rows n/total"
PROGRESS = re.compile(r"rows (\d+)/(\d+)|(\d+)/(\d+) \[")
TAIL_BYTES = 16384


def step_progress(log: Path | None, total: int | None = None) -> tuple[int, int] | None:
    """The newest (done, total) a step's log shows: train.py's tqdm bar, infer.py's progress
    lines; with `total`, only a count out of that total (the training bar, not an evaluation's
    bar inside it). None: nothing to show."""
    if log is None:
        return None
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - TAIL_BYTES))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    found = None
    for match in PROGRESS.finditer(tail):
        done, of = (int(g) for g in (match[1] or match[3], match[2] or match[4]))
        if total is None or of == total:
            found = (done, of)
    return found


def steps_done(run_dir: Path, data: dict, logged: int | None) -> int | None:
    """The optimizer steps a run has taken: the record's, once it has results; while it trains,
    the step its train.log's progress bar is at, which runs ahead of the last logged step."""
    if (data.get("results") or {}).get("losses") or data.get("status") != "running":
        return logged
    max_steps = (((data.get("spec") or {}).get("resolved") or {}).get("training") or {}).get(
        "max_steps"
    )
    bar = step_progress(run_dir / "train.log", max_steps)
    return max(logged or 0, bar[0]) if bar else logged


def summary_row(run_dir: Path, data: dict) -> dict:
    """One line of `specforge runs`: losses from the record, or from metrics.jsonl for a run
    that never wrote its results (still running, or killed)."""
    results = data.get("results") or {}
    losses = results.get("losses") or final_losses(read_jsonl(run_dir / "metrics.jsonl"))
    evals = {k: results.get(k) or {} for k in ("eval_tuned", "eval_base")}
    return {
        "name": data.get("name", run_dir.parent.name),
        "run_id": data.get("run_id", run_dir.name),
        "status": data.get("status"),
        "steps": steps_done(run_dir, data, losses.get("steps")),
        "final_train_loss": losses.get("final_train_loss"),
        "final_eval_loss": losses.get("final_eval_loss"),
        "accuracy_tuned": evals["eval_tuned"].get("accuracy"),
        # lenient: the first label the answer names counts (infer.py's lenient_accuracy)
        "lenient_accuracy_tuned": evals["eval_tuned"].get("lenient_accuracy"),
        "accuracy_base": evals["eval_base"].get("accuracy"),
        "lenient_accuracy_base": evals["eval_base"].get("lenient_accuracy"),
        # a generative (chat) run's scores: it has no labels to be accurate on
        "exact_match_tuned": evals["eval_tuned"].get("exact_match"),
        "rouge_l_tuned": evals["eval_tuned"].get("rouge_l"),
        "exact_match_base": evals["eval_base"].get("exact_match"),
        "rouge_l_base": evals["eval_base"].get("rouge_l"),
        # what the base side scored: "parent" for a run that continued one (model.adapter)
        "base_model": (data.get("base_evaluation") or {}).get("model"),
        "sweep": (data.get("sweep") or {}).get("id"),
        "attempts": len(data.get("attempts") or [None]),
        "started_at": data.get("started_at"),
        "path": run_dir.as_posix(),
    }
