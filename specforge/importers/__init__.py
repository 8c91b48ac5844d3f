"""`specforge import`: an axolotl or LLaMA-Factory config, turned into a spec.

`import_config` maps a config onto the spec language and reports every key it did not carry over
(`ImportResult.dropped`); `emit.render` writes the spec text and `emit.validate` checks it as
`specforge validate` would."""

from __future__ import annotations

from pathlib import Path

from specforge.core.errors import UsageError
from specforge.importers.axolotl import import_axolotl
from specforge.importers.detect import TOOLS, detect, read_config
from specforge.importers.llamafactory import import_llamafactory
from specforge.importers.result import ImportResult

__all__ = ["TOOLS", "ImportResult", "import_config"]


def import_config(
    path: Path, tool: str | None = None, dataset_info: Path | None = None
) -> ImportResult:
    """Read CONFIG, detect its tool unless given, and map it; UsageError for bad input."""
    data = read_config(path)
    tool = tool or detect(data, path)
    if tool == "axolotl":
        if dataset_info is not None:
            raise UsageError("--dataset-info is for LLaMA-Factory configs")
        return import_axolotl(data, path)
    if tool == "llamafactory":
        return import_llamafactory(data, path, dataset_info)
    raise UsageError(f"unknown format {tool!r}: use axolotl or llamafactory")
