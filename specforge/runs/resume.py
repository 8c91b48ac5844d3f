"""`specforge run --resume`: which run continues, whether it would still be the same run, the
checkpoint it continues from, and a record that reads as if it had never stopped.

A resumed trainer logs its first loss over the steps since the checkpoint only (Trainer restarts
its loss window there), its final train_loss over the resumed steps only, and TRL's num_tokens
from 0. rewind_metrics() keeps what an earlier attempt logged after the checkpoint in
metrics.rewound.jsonl; reconcile_metrics() puts the uninterrupted figures back from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from specforge.codegen.compiler import GENERATED_DIR, compile_files
from specforge.core.console import say
from specforge.core.files import file_sha256, sha256_bytes, write_atomic
from specforge.modelinfo.prepare import PrepareError, gguf_path
from specforge.runs.record import (
    RUNS_DIR,
    data_fingerprint,
    hub_model,
    list_runs,
    read_jsonl,
    resolve_revision,
)
from specforge.validate.load import LoadedSpec


class CannotResume(Exception):
    """--resume refused: no such run, nothing to resume, or it would not be the same run."""


def find_resumable(name: str, run_id: str | None) -> Path:
    """The run named, or the spec's latest run that did not succeed."""
    runs = list_runs(name)
    if run_id:
        chosen = [(d, r) for d, r in runs if d.name == run_id]
        if not chosen:
            raise CannotResume(f"no run {run_id!r} under {RUNS_DIR / name}/")
    else:
        chosen = [(d, r) for d, r in runs if r.get("status") != "succeeded"][-1:]
        if not chosen:
            raise CannotResume(f"no unfinished run of {name!r} under {RUNS_DIR / name}/")
    run_dir, data = chosen[0]
    if data.get("status") == "succeeded":
        raise CannotResume(f"{run_dir} already succeeded; nothing to resume")
    if data.get("status") == "running":  # alive here, or on a host whose processes we cannot see
        raise CannotResume(
            f"{run_dir} is still running (pid {data.get('pid')} on {data.get('host')})"
        )
    return run_dir


def resume_mismatches(
    loaded: LoadedSpec, data: dict, scripts: Path, *, compile_first: bool
) -> list[str]:
    """Every reason the resumed run would not be the run that started (empty: same run)."""
    problems = []
    recorded = data["spec"]
    if loaded.sha256 != recorded["sha256"]:
        problems.append(f"{loaded.label} changed since the run started (sha256)")
    if loaded.overrides != recorded["overrides"]:
        was = " ".join(f"--set {o}" for o in recorded["overrides"]) or "no --set"
        problems.append(f"the run started with {was}; pass the same")
    resolved = loaded.spec.model_dump(mode="json", exclude={"extends"})
    changed = _changed_keys(recorded["resolved"], resolved)
    if changed:
        problems.append(f"the resolved spec differs at {', '.join(changed[:8])}")
    fresh = compile_files(loaded, scripts.as_posix())
    for name, sha in data["scripts"]["sha256"].items():
        if sha256_bytes(fresh[name].encode("utf-8")) != sha:
            problems.append(f"{name} would compile differently now")
        elif sha256_bytes(_read_bytes(scripts / name)) != sha:
            if compile_first and scripts == Path(GENERATED_DIR) / loaded.spec.name:
                # --compile: restore the reviewed script
                write_atomic(scripts / name, fresh[name].encode("utf-8"))
            else:
                problems.append(f"{scripts / name} was edited since the run started")
    try:
        if data_fingerprint(loaded.spec) != _unresolved(data["data"]):
            problems.append("the data files changed since the run started (sha256)")
    except OSError as err:
        problems.append(f"data: {err}")
    problems += _moved_revisions(loaded, data)
    recorded_gguf = data["model"].get("gguf_sha256")
    if recorded_gguf:
        try:
            gguf = gguf_path(loaded.spec)
            if gguf is None or file_sha256(gguf) != recorded_gguf:
                problems.append(f"{loaded.spec.model.gguf_file} changed since the run started")
        except (PrepareError, OSError) as err:
            problems.append(f"model: {err}")
    return problems


RESOLVED = ("resolved_revision", "resolved_from", "resolve_error")


def _unresolved(data: dict) -> dict:
    """The data fingerprint as start_record wrote it, before the train step added revisions."""

    def strip(part: dict) -> dict:
        return {
            f: [strip(s) for s in v] if f == "sources" else v
            for f, v in part.items()
            if f not in RESOLVED
        }

    return {k: strip(part) for k, part in data.items()}


def _moved_revisions(loaded: LoadedSpec, data: dict) -> list[str]:
    """A Hub branch that moved since the run resolved it would load other weights or rows."""
    spec, problems = loaded.spec, []
    model, train = hub_model(spec), data["data"]["train"]
    for kind, repo_id, revision, recorded in (
        ("model", model, spec.model.revision, data["model"]),
        ("dataset", train.get("hub"), spec.dataset.revision, train),
    ):
        was = recorded.get("resolved_revision")
        if repo_id is None or was is None:
            continue
        now = resolve_revision(kind, repo_id, revision)["resolved_revision"]
        if now is not None and now != was:
            problems.append(
                f"{kind} {repo_id}@{revision or 'main'} is now {now}; the run used {was}"
            )
    return problems


def _changed_keys(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def checkpoints(run_dir: Path) -> tuple[dict[int, Path], list[Path]]:
    """Complete checkpoints by step, and the folders a kill cut short.

    Trainer writes checkpoint-N in place with trainer_state.json last, so a folder whose
    trainer_state.json does not parse is incomplete. train.py's --resume uses the same rule.
    """
    complete, partial = {}, []
    for folder in sorted(run_dir.glob("checkpoint-*")):
        step = folder.name.removeprefix("checkpoint-")
        if not (step.isdigit() and folder.is_dir()):
            continue
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
            complete[int(step)] = folder
        except (OSError, ValueError):
            partial.append(folder)
    return complete, partial


def resume_point(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (None: training restarts from step 0). Partial ones are
    removed and metrics.jsonl is rewound to it. `specforge run --resume` and submit.sbatch use it."""
    complete, partial = checkpoints(run_dir)
    for folder in partial:  # half a checkpoint is worth nothing, and Trainer would pick it
        say(f"removing {folder}: cut short before its trainer_state.json was written")
        shutil.rmtree(folder)
    at = max(complete, default=0)
    rewind_metrics(run_dir / "metrics.jsonl", at)
    return complete.get(at)


REWOUND = "metrics.rewound.jsonl"


def rewind_metrics(path: Path, step: int) -> None:
    """Keep entries logged up to `step`: the resumed trainer logs the later steps again.

    The later ones go to metrics.rewound.jsonl beside it (reconcile_metrics() takes the
    uninterrupted loss window from them), the end-of-training summary (train_runtime, ...) with
    them: the resumed trainer writes its own. A summary at the checkpoint's step stays: training
    had ended there, and a trainer resumed from its last step writes none.
    """
    if not path.is_file():
        return
    kept, later = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        if entry.get("step", 0) <= step:
            kept.append(line + "\n")
        elif LOSS_FROM not in entry and "train_runtime" not in entry:
            # a window cut by a resume is no uninterrupted figure, nor a resumed trainer's summary
            later.append(line + "\n")
    if later:
        with (path.parent / REWOUND).open("a", encoding="utf-8") as rewound:
            rewound.write("".join(later))
    write_atomic(path, "".join(kept).encode("utf-8"))


# Keys reconcile_metrics() adds to metrics.jsonl entries of a resumed attempt.
LOSS_FROM = "loss_from_step"  # this loss averages steps after this one only (window cut)
RESUMED_LOSS = "resumed_loss"  # the resumed trainer's own figure, replaced by the uninterrupted one
RESUMED_TRAIN_LOSS = "resumed_train_loss"  # ditto for the end-of-training summary


def resumed_at(record_data: dict) -> int | None:
    """The checkpoint step the last attempt's training resumed from (None: it did not)."""
    attempts = record_data.get("attempts") or [{}]
    resumed = str(attempts[-1].get("resumed_from"))
    step = resumed.removeprefix("checkpoint-")
    return int(step) if resumed.startswith("checkpoint-") and step.isdigit() else None


def reconcile_metrics(run_dir: Path, at: int) -> None:
    """Make metrics.jsonl of a run resumed from checkpoint-`at` read as an uninterrupted run's.

    Trainer restarts its loss window at the checkpoint: the first loss logged after it averages
    the resumed steps only. The attempt before logged that same step over the whole window (the
    resumed steps reproduce it: same seed, same data order); its entry replaces the resumed one.
    The summary's train_loss averages the resumed steps only; the steps up to `at` come from the
    log. Without that earlier entry (the window straddling the checkpoint was never logged) the
    entry says which steps it covers (loss_from_step) and the mean stays unknown.
    """
    path = run_dir / "metrics.jsonl"
    metrics = read_jsonl(path)
    rewound: dict[int, dict] = {}
    for entry in read_jsonl(run_dir / REWOUND):
        if "loss" in entry:
            rewound.setdefault(entry["step"], entry)
    losses = [m for m in metrics if "loss" in m]
    last_logged = max((m["step"] for m in losses if m["step"] <= at), default=0)
    first = next((m for m in losses if m["step"] > at), None)
    if first is not None and RESUMED_LOSS not in first and first["step"] in rewound:
        _take_earlier(metrics, first, rewound[first["step"]], at)
    straddled = None  # the losses summed over steps last_logged+1 .. at, when known
    if last_logged == at:
        straddled = 0.0
    elif first is not None and RESUMED_LOSS in first:
        straddled = _straddled(first, first[RESUMED_LOSS], last_logged, at)
    elif first is not None:
        first[LOSS_FROM] = at
    _correct_summary(metrics, at, last_logged, straddled)
    text = "".join(json.dumps(m) + "\n" for m in metrics)
    write_atomic(path, text.encode("utf-8"))


def _take_earlier(metrics: list[dict], first: dict, earlier: dict, at: int) -> None:
    """The earlier attempt's entry replaces the resumed trainer's first one (loss over the whole
    window, tokens/s measured over it); TRL's num_tokens, counted from 0 again, continues."""
    offset = earlier.get("num_tokens", 0) - first.get("num_tokens", 0)
    if offset:
        for entry in metrics:
            if entry.get("step", 0) > at and "num_tokens" in entry:
                entry["num_tokens"] += offset
    own = first["loss"]
    first.clear()
    first.update({**earlier, RESUMED_LOSS: own})


def _straddled(earlier: dict, own: float, last_logged: int, at: int) -> float:
    """The loss summed over steps last_logged+1 .. at: the earlier attempt's window over
    last_logged+1 .. step less the resumed trainer's over at+1 .. step."""
    step = earlier["step"]
    return (step - last_logged) * earlier["loss"] - (step - at) * own


def _correct_summary(metrics: list[dict], at: int, last_logged: int, straddled) -> None:
    """The summary's train_loss over every step: the log's windows up to `at`, then the resumed
    trainer's mean over the rest; None when the steps up to `at` are not all in the log."""
    summary = next((m for m in reversed(metrics) if "train_loss" in m), None)
    if summary is None or summary.get("step", 0) <= at:
        return
    resumed = summary.setdefault(RESUMED_TRAIN_LOSS, summary["train_loss"])
    cut = any(LOSS_FROM in m for m in metrics if "loss" in m and m["step"] <= at)
    if straddled is None or cut or resumed is None:
        summary["train_loss"] = None
        return
    total, previous = straddled, 0
    for entry in metrics:
        if "loss" in entry and entry["step"] <= last_logged:
            total += entry["loss"] * (entry["step"] - previous)
            previous = entry["step"]
    summary["train_loss"] = (total + resumed * (summary["step"] - at)) / summary["step"]
