"""The base model's vocabulary, read without loading the model or touching the network: from the
GGUF header, a local folder's tokenizer.json, or the local Hugging Face Hub cache.

Validation uses it (SF007: is a token in the template new?) and the compiler too (no default init
for a declared token the vocabulary already has).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
from functools import lru_cache
from pathlib import Path

from specforge.modelinfo.gguf_meta import gguf_tokens
from specforge.spec.models import Spec, is_local_path

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing (running) it."""
    top, *rest = package.split(".")
    try:
        found = importlib.util.find_spec(top)
        for part in rest:  # importlib.util.find_spec("a.b") would import `a`
            if found is None or not found.submodule_search_locations:
                return None
            found = importlib.machinery.PathFinder.find_spec(
                part, list(found.submodule_search_locations)
            )
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def hub_cache_dir() -> Path:
    """The Hub cache folder, found as huggingface_hub finds it (read here without importing it):
    HF_HUB_CACHE (or its old name), else HF_HOME/hub, else the XDG/home default."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.path.expandvars(os.environ[variable])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def ref_file(kind: str, repo_id: str, revision: str | None) -> Path:
    """The Hub cache file naming the commit a `kind` ("model", "dataset") repo's revision is at."""
    return (
        hub_cache_dir() / f"{kind}s--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    )


def hub_ref(spec: Spec) -> Path | None:
    """The cache file naming the commit the model's revision points at (None for local models)."""
    name = spec.model.name
    if spec.model.package or is_local_path(name) or name.count("/") != 1:
        return None
    return ref_file("model", name, spec.model.revision)


def hub_file(spec: Spec, filename: str) -> Path | None:
    """A file of the model's revision in the local Hub cache, if it was downloaded."""
    ref = hub_ref(spec)
    if ref is None:
        return None
    revision = spec.model.revision or "main"
    if COMMIT.match(revision):
        commit = revision
    else:
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
    if not COMMIT.match(commit):
        return None
    path = ref.parent.parent / "snapshots" / commit / filename
    return path if path.is_file() else None


def vocab_file(spec: Spec) -> Path | None:
    """The file the base vocabulary is read from: the GGUF, a local tokenizer.json, or the Hub
    cache's; None when there is none to read."""
    model = spec.model
    filename = model.gguf_file or "tokenizer.json"
    if model.package:
        folder = package_dir(model.package)
    elif Path(model.name).expanduser().is_dir():
        folder = Path(model.name).expanduser()
    else:
        return hub_file(spec, filename)
    return None if folder is None else folder / filename


def vocab_files(spec: Spec) -> list[Path]:
    """Every file vocab_tokens looks at, present or not (for `check`'s verdict cache)."""
    paths = [p for p in (hub_ref(spec), vocab_file(spec)) if p is not None]
    model = Path(spec.model.name).expanduser()
    if not spec.model.package:
        paths += [model, model / "tokenizer.json"]
    return list(dict.fromkeys(paths))


def _tokenizer_json_tokens(path: Path) -> list[str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    vocab = (data.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, dict):  # BPE, WordPiece: token -> id
        tokens = [t for t in vocab if isinstance(t, str)]
    else:  # Unigram: [token, score] pairs
        tokens = [e[0] for e in vocab if isinstance(e, list) and e and isinstance(e[0], str)]
    added = data.get("added_tokens") or []
    return tokens + [t["content"] for t in added if isinstance(t, dict) and "content" in t]


@lru_cache(maxsize=8)
def _read(path: str, stamp: tuple[int, int]) -> frozenset[str] | None:
    tokens = gguf_tokens(path) if path.endswith(".gguf") else _tokenizer_json_tokens(Path(path))
    return None if tokens is None else frozenset(tokens)


def vocab_tokens(spec: Spec) -> frozenset[str] | None:
    """Token strings of the base vocabulary (GGUF, local folder or Hub cache), else None."""
    path = vocab_file(spec)
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read(str(path), (stat.st_mtime_ns, stat.st_size))
