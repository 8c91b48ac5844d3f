"""Read a config file and tell which tool wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from specforge.core.errors import UsageError

TOOLS = ("axolotl", "llamafactory")
# Keys only one of the tools uses; a config is scored by how many of each it has.
AXOLOTL_KEYS = {"base_model", "datasets", "adapter", "lora_r", "micro_batch_size", "num_epochs"}
AXOLOTL_KEYS |= {"sequence_len", "sample_packing", "lora_target_linear", "val_set_size", "rl"}
LLAMAFACTORY_KEYS = {"model_name_or_path", "stage", "finetuning_type", "template", "cutoff_len"}
LLAMAFACTORY_KEYS |= {"lora_rank", "lora_target", "val_size", "pref_beta", "dataset_dir"}


def read_config(path: Path) -> dict[str, Any]:
    """The config's mapping; UsageError (exit 2) for a missing, unreadable or non-mapping file."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise UsageError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def detect(data: dict[str, Any], path: Path) -> str:
    """'axolotl' or 'llamafactory', from the keys only each uses."""
    axolotl = len(AXOLOTL_KEYS & data.keys())
    if isinstance(data.get("datasets"), list):
        axolotl += 2
    factory = len(LLAMAFACTORY_KEYS & data.keys())
    if isinstance(data.get("dataset"), str):
        factory += 1
    if axolotl == factory:
        raise UsageError(
            f"{path}: cannot tell whether this is an axolotl or a LLaMA-Factory config "
            "(axolotl has base_model and a datasets: list; LLaMA-Factory has "
            "model_name_or_path, stage and dataset: a,b)",
        )
    return "axolotl" if axolotl > factory else "llamafactory"
