"""model.adapter: the previous run a dpo/orpo/kto run continues, resolved and fingerprinted.

`runs/<name>/latest` is that spec's newest succeeded run with an adapter, of the spec as written:
runs started with `--set` overrides and sweep points are never "latest" (a smoke run or a 4-step
sweep point must not become a parent unnoticed). A run folder (`runs/<name>/<run-id>`), a bare
run id as `specforge runs` shows it, or an adapter folder is taken as named. run.json records the parent's run id, spec name, folder and
the adapter weights' sha256, so a chain (SFT -> DPO) can be reproduced from the records.

With `lora: null` (full fine-tuning) the parent is whole weights instead: a full fine-tuning
run's model/ folder, or a merged export (`specforge export RUN --format merged`), whose run is
found from the export's eval.json or the folders above it; run.json then records the weights'
`model_sha256` (specforge.modelinfo.folders), so SFT -> merge -> DPO is reproducible from the records.
Nothing here imports the ML stack.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from specforge.core.files import file_sha256
from specforge.modelinfo.folders import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    MODEL_DIR,
    is_lora_adapter,
    is_model_folder,
    model_sha256,
)
from specforge.runs.record import RUNS_DIR, list_runs, read_record

if TYPE_CHECKING:
    from specforge.spec.models import Spec


class ParentError(Exception):
    """model.adapter names no usable adapter (the parent run is missing or unfinished)."""


def spec_parent(spec: Spec) -> dict | None:
    """The parent the spec's model.adapter names (None without one): an adapter under LoRA,
    whole weights under full fine-tuning (lora: null)."""
    adapter = spec.model.adapter
    if adapter is None:
        return None
    return resolve_model_parent(adapter) if spec.lora is None else resolve_parent(adapter)


def resolve_parent(adapter: str) -> dict:
    """{path, adapter, run_id, name, status, adapter_sha256} of a LoRA spec's model.adapter."""
    path, folder = adapter_folder(adapter)
    record = (read_record(path) if folder != path else None) or {}
    weights = folder / ADAPTER_WEIGHTS
    return {
        "path": path.as_posix(),
        "adapter": folder.as_posix(),
        "run_id": record.get("run_id"),
        "name": record.get("name"),
        "status": record.get("status"),
        "adapter_sha256": file_sha256(weights) if weights.is_file() else None,
    }


def parent_lora_config(adapter: str) -> dict | None:
    """The adapter_config.json of the adapter model.adapter names (its r and target modules are
    what a continued run trains, whatever the spec's lora section says); None while there is no
    such adapter yet (the parent run has not run here)."""
    try:
        _, folder = adapter_folder(adapter)
        return json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (ParentError, OSError, ValueError):
        return None


def adapter_folder(adapter: str) -> tuple[Path, Path]:
    """(the path named, resolved from `latest`; the adapter folder in it)."""
    path = _latest(
        Path(adapter).expanduser(),
        lambda run_dir: (run_dir / "adapter" / ADAPTER_CONFIG).is_file(),
        lambda folder, name: (
            f"model.adapter: {adapter}: {folder} holds no succeeded run with an adapter started "
            "without --set overrides and outside a sweep; run the parent spec first (e.g. "
            f"`specforge run specs/{name}.yaml`) or pin a run: `{folder}/<run-id>`"
        ),
    )
    folder = path / "adapter" if (path / "adapter").is_dir() else path
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ParentError(
            f"model.adapter: {adapter} holds no adapter ({ADAPTER_CONFIG}); name a run folder "
            "whose training finished, or `runs/<name>/latest`"
        )
    return path, folder


def resolve_model_parent(adapter: str) -> dict:
    """{path, adapter, run_id, name, status, model_sha256[, export]} of a full fine-tuning
    spec's model.adapter: the folder of whole weights train.py starts from is `adapter`."""
    path = _latest(
        Path(adapter).expanduser(),
        lambda run_dir: is_model_folder(run_dir / MODEL_DIR),
        lambda folder, _: (
            f"model.adapter: {adapter}: {folder} holds no succeeded full fine-tuning run "
            f"(a {MODEL_DIR}/ folder); run the parent spec first, or name a merged export "
            "(`specforge export RUN --format merged`)"
        ),
    )
    folder = path / MODEL_DIR if (path / MODEL_DIR).is_dir() else path
    if is_lora_adapter(path):
        raise ParentError(
            f"model.adapter: {adapter} is a LoRA adapter, and lora: null trains whole weights; "
            f"merge it first (`specforge export {path} --format merged`) and name the export's "
            "folder, or configure `lora:` to continue the adapter"
        )
    if not is_model_folder(folder):
        raise ParentError(
            f"model.adapter: {adapter} holds no model (config.json and *.safetensors); name a "
            "full fine-tuning run's folder, `runs/<name>/latest`, or a merged export's folder"
        )
    run_dir, export = _origin(path, folder)
    record = (read_record(run_dir) if run_dir is not None else None) or {}
    parent = {
        "path": path.as_posix(),
        "adapter": folder.as_posix(),
        "run_id": record.get("run_id"),
        "name": record.get("name"),
        "status": record.get("status"),
        "model_sha256": model_sha256(folder),
    }
    return parent | ({"export": export} if export else {})


RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def is_plain_run(data: dict) -> bool:
    """A run of the spec as written: no `--set` overrides, not a sweep point."""
    return not (data.get("spec") or {}).get("overrides") and not data.get("sweep")


def latest_run(name: str, root: Path = RUNS_DIR, holds=lambda run_dir: True) -> Path | None:
    """What `runs/<name>/latest` names: the spec's newest succeeded plain run (is_plain_run)
    that `holds` what is wanted; None when there is none."""
    runs = [
        run_dir
        for run_dir, data in list_runs(name, root=root)
        if data.get("status") == "succeeded" and is_plain_run(data) and holds(run_dir)
    ]
    return runs[-1] if runs else None


def by_run_id(path: Path, root: Path = RUNS_DIR) -> Path:
    """A bare run id (as `specforge runs` shows it) names that run's folder under runs/."""
    if path.exists() or not RUN_ID.fullmatch(path.as_posix()):
        return path
    found = sorted(root.glob(f"*/{path}"))
    return found[0] if len(found) == 1 else path


def _latest(path: Path, holds, missing) -> Path:
    """`runs/<name>/latest`: latest_run() (else ParentError with `missing(folder, name)`); a bare
    run id: its folder; any other path as it is."""
    if path.name != "latest":
        return by_run_id(path)
    found = latest_run(path.parent.name, root=path.parent.parent, holds=holds)
    if found is None:
        raise ParentError(missing(path.parent, path.parent.name))
    return found


def headline(run_dir: Path) -> str:
    """A run's figure to judge it by, for the line that names a parent: its held-out accuracy
    or exact match, else its final train loss."""
    data = read_record(run_dir) or {}
    results = data.get("results") or {}
    tuned = results.get("eval_tuned") or {}
    if tuned.get("accuracy") is not None:
        return f"accuracy {tuned['accuracy']:.1%} on {tuned.get('n')} held-out rows"
    if tuned.get("exact_match") is not None:
        return f"exact match {tuned['exact_match']:.1%} on {tuned.get('n')} held-out rows"
    loss = (results.get("losses") or {}).get("final_train_loss")
    return f"train loss {loss:.4f}" if loss is not None else "no figures recorded"


def _origin(path: Path, folder: Path) -> tuple[Path | None, dict | None]:
    """The run a model folder came from, and for a merged export its format and verdict: a run
    folder is its own; an export names the run's predictions in its eval.json, and by default
    sits in <run>/export/<format>/."""
    if folder != path:
        return path, None
    try:
        report = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = {}
    export = {k: report[k] for k in ("format", "passed", "agreement") if k in report} or None
    candidates = [Path(report["reference"]).parent] if report.get("reference") else []
    candidates += list(folder.resolve().parents)[:3]
    run_dir = next((c for c in candidates if (c / "run.json").is_file()), None)
    return run_dir, export
