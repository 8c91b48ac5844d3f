"""model.adapter: the previous run a dpo/orpo/kto run continues, resolved and fingerprinted.

`runs/<name>/latest` is that spec's newest succeeded run with an adapter; a run folder (or an
adapter folder) is taken as named. run.json records the parent's run id, spec name, folder and
the adapter weights' sha256, so a chain (SFT -> DPO) can be reproduced from the records.
Nothing here imports the ML stack.
"""

from __future__ import annotations

from pathlib import Path

from specforge.artifacts import file_sha256
from specforge.record import list_runs, read_record

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class ParentError(Exception):
    """model.adapter names no usable adapter (the parent run is missing or unfinished)."""


def resolve_parent(adapter: str) -> dict:
    """{path, adapter, run_id, name, status, adapter_sha256} of the spec's model.adapter."""
    path = Path(adapter).expanduser()
    if path.name == "latest":
        name = path.parent.name
        runs = [
            run_dir
            for run_dir, data in list_runs(name, root=path.parent.parent)
            if data.get("status") == "succeeded"
            and (run_dir / "adapter" / ADAPTER_CONFIG).is_file()
        ]
        if not runs:
            raise ParentError(
                f"model.adapter: {adapter}: {path.parent} holds no succeeded run with an adapter; "
                f"run the parent spec first (e.g. `specforge run specs/{name}.yaml`)"
            )
        path = runs[-1]
    folder = path / "adapter" if (path / "adapter").is_dir() else path
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ParentError(
            f"model.adapter: {adapter} holds no adapter ({ADAPTER_CONFIG}); name a run folder "
            "whose training finished, or `runs/<name>/latest`"
        )
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
