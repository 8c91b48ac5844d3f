"""Remember what a compile produced, so `check` over many unchanged specs need not render them.

An entry maps a key (every input of the compile: resolved spec, its label and sha256, overrides,
output folder, specforge version, and a digest of the templates and the generator's code) to the sha256 of each output file.
Compiling is deterministic (tested), so equal keys mean equal outputs. `check` still reads and hashes
every file on disk; only the rendering is skipped. Lives in the user cache, never in the project.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from specforge import __version__
from specforge.codegen.paths import templates_dir
from specforge.core.files import cache_root, sha256_bytes, write_atomic

if TYPE_CHECKING:  # the verdict cache imports this module before any spec is loaded
    from specforge.validate.load import LoadedSpec


def sources_digest(paths: list[Path], seed: str = "") -> str:
    """sha256 over each file's name and bytes, after `seed` (another digest)."""
    digest = hashlib.sha256(seed.encode())
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def inputs_digest(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@lru_cache(maxsize=1)
def compiler_digest() -> str:
    """The templates and the code generator's own source: editing either invalidates entries."""
    return sources_digest(
        sorted(templates_dir().rglob("*.j2")) + sorted(Path(__file__).parent.glob("*.py"))
    )


def compile_key(loaded: LoadedSpec, script_dir: str) -> str:
    inputs = {
        "resolved": loaded.spec.model_dump(mode="json"),
        "label": loaded.label,
        "sha256": loaded.sha256,
        "overrides": loaded.overrides,
        "script_dir": script_dir,
        "version": __version__,
        "compiler": compiler_digest(),
    }
    return inputs_digest(inputs)


def _entry(key: str, kind: str = "compiled") -> Path:
    return cache_root() / kind / f"{key}.json"


def read_entry(key: str, kind: str = "compiled") -> dict | None:
    try:
        data = json.loads(_entry(key, kind).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_entry(key: str, data: dict, kind: str = "compiled") -> None:
    try:
        write_atomic(_entry(key, kind), json.dumps(data, sort_keys=True).encode())
    except OSError:
        pass  # a read-only cache only costs speed


def remembered(key: str) -> dict[str, str] | None:
    """{file name: sha256} of a compile with this key, if one was recorded."""
    return read_entry(key)


def outputs_on_disk(out_dir: Path) -> dict[str, str] | None:
    """{name: sha256, or "dir" for a folder} of an output folder's entries; None if it is missing.
    Equal to remembered(key) exactly when the folder holds that compile's files and nothing else."""
    if not out_dir.is_dir():
        return None
    return {
        p.name: "dir" if p.is_dir() else sha256_bytes(p.read_bytes())
        for p in sorted(out_dir.iterdir())
        if p.name != "__pycache__"
    }


def remember(key: str, files: dict[str, str]) -> None:
    write_entry(key, {name: sha256_bytes(text.encode("utf-8")) for name, text in files.items()})
