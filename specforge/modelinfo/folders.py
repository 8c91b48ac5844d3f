"""What a model folder holds: a LoRA adapter, or whole weights (a full fine-tuning run's model/ or
a merged export), and the whole weights' fingerprint.

One sha256 names the weights: a single `model.safetensors` file's own (what `sha256sum` prints),
or for sharded weights the sha256 of the `sha256sum`-style lines of every shard, sorted by name.
Nothing here imports the ML stack.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from specforge.core.files import file_sha256

MODEL_DIR = "model"  # where a full fine-tuning run saves its model (an adapter run: adapter/)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_lora_adapter(path: Path) -> bool:
    """An adapter folder, or a run folder that holds one (adapter/)."""
    return (path / ADAPTER_CONFIG).is_file() or (path / "adapter" / ADAPTER_CONFIG).is_file()


def is_model_folder(folder: Path) -> bool:
    """A transformers model folder with safetensors weights (not a LoRA adapter)."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def model_sha256(folder: Path) -> str | None:
    """The weights' sha256 (see the module docstring); None when the folder holds none."""
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        return None
    if len(shards) == 1:
        return file_sha256(shards[0])
    lines = "".join(f"{file_sha256(p)}  {p.name}\n" for p in shards)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def saved_model(run_dir: Path) -> dict | None:
    """{kind, path, sha256} of a full fine-tuning run's saved model; None for an adapter run."""
    folder = run_dir / MODEL_DIR
    if not is_model_folder(folder):
        return None
    return {"kind": "full model", "path": folder.as_posix(), "sha256": model_sha256(folder)}
