"""`check`'s verdict cache: answer "generated/ matches" without loading the spec at all.

`check` runs in every pre-commit hook and CI job, mostly over specs nobody touched. When a spec
passed `check` before (valid, no warnings, output byte-identical on disk), the verdict is stored
under a key of everything that is not a file: working directory, spec path, overrides, flags,
specforge version and a digest of the templates, the generator and the validator's source. The
entry lists every file the verdict read, each with a fingerprint:

  sha256:<hex>          the spec and each file it `extends` (small; content decides)
  stat:<size>:<mtime>   files and folders the rules looked at (data, eval data, model folder),
                        as make and git's index do: their content is not hashed, a data file
                        may be gigabytes
  absent / dir          paths the rules found missing, or found to be folders

and the sha256 of each generated file. A later `check` re-reads those fingerprints and hashes
the generated files on disk; if all agree it answers without importing pydantic or jinja2. Any
difference, or any doubt, falls back to the full check, which records a new entry.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from specforge import __version__
from specforge.codegen.cache import (
    compiler_digest,
    inputs_digest,
    outputs_on_disk,
    read_entry,
    sources_digest,
    write_entry,
)
from specforge.core.files import sha256_bytes

if TYPE_CHECKING:
    from specforge.validate.load import LoadedSpec

KIND = "checked"


@lru_cache(maxsize=1)
def validator_digest() -> str:
    """The compiler's digest plus the spec package's source (schema and rules decide validity)."""
    spec_package = Path(__file__).resolve().parent.parent / "spec"
    return sources_digest(sorted(spec_package.glob("*.py")), seed=compiler_digest())


def verdict_key(spec_path: Path, overrides: list[str], allow_remote_code: bool) -> str:
    return inputs_digest(
        {
            "cwd": str(Path.cwd().resolve()),
            "spec": str(Path(spec_path).resolve()),
            "overrides": list(overrides),
            "allow_remote_code": allow_remote_code,
            "version": __version__,
            "code": validator_digest(),
        }
    )


def stat_fingerprint(path: Path) -> str:
    try:
        info = path.stat()
    except OSError:
        return "absent"
    if path.is_dir():
        return "dir"
    return f"stat:{info.st_size}:{info.st_mtime_ns}"


def content_fingerprint(path: Path) -> str:
    try:
        return "sha256:" + sha256_bytes(path.read_bytes())
    except OSError:
        return "absent"


def fingerprint_like(path: Path, recorded: str) -> str:
    """Fingerprint `path` the way `recorded` was taken."""
    if recorded.startswith("sha256:"):
        return content_fingerprint(path)
    return stat_fingerprint(path)


def known_good(spec_path: Path, overrides: list[str], allow_remote_code: bool) -> str | None:
    """The spec's name when a stored verdict still holds, else None (run the full check)."""
    entry = read_entry(verdict_key(spec_path, overrides, allow_remote_code), KIND)
    if entry is None:
        return None
    try:
        reads, outputs = dict(entry["reads"]), dict(entry["outputs"])
        name, out_dir = str(entry["name"]), Path(entry["out_dir"])
    except (TypeError, KeyError, ValueError):
        return None
    if any(fingerprint_like(Path(p), fp) != fp for p, fp in reads.items()):
        return None
    if outputs_on_disk(out_dir) != outputs:
        return None
    return name


def record(
    item: LoadedSpec, out_dir: Path, allow_remote_code: bool, outputs: dict[str, str] | None
) -> None:
    """Store the verdict for a spec that just passed the full check (valid, no warnings);
    `outputs` is outputs_on_disk(out_dir), which that check compared."""
    from specforge.validate.rules import files_read

    if item.warnings:
        return  # the full check prints them; a stored verdict would hide them
    if not outputs:
        return
    reads = {str(p.resolve()): content_fingerprint(p) for p in item.sources}
    for path in files_read(item.spec):
        reads.setdefault(str(path.resolve()), stat_fingerprint(path))
    entry = {
        "name": item.spec.name,
        "out_dir": out_dir.as_posix(),
        "reads": reads,
        "outputs": outputs,
    }
    key = verdict_key(item.path, item.overrides, allow_remote_code)
    write_entry(key, entry, KIND)


def disabled() -> bool:
    """SPECFORGE_NO_CHECK_CACHE=1 forces the full check (debugging, benchmarks of the slow path)."""
    return os.environ.get("SPECFORGE_NO_CHECK_CACHE", "") not in ("", "0")
