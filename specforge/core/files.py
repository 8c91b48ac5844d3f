"""Files on disk: atomic writes, hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """specforge's cache (SPECFORGE_CACHE, else ~/.cache/specforge); safe to delete."""
    return Path(os.environ.get("SPECFORGE_CACHE", Path.home() / ".cache" / "specforge"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (model files run to gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only set)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): set and restore at once
    os.umask(mask)
    return mask


def file_mode(path: Path) -> int:
    """The mode a new file at `path` gets: an existing file keeps its own (an executable stays
    one), a new one what open() would give it (0666 less the umask). mkstemp alone gives 0600."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~umask()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unified_diff(path: Path, old: str | None, new: str | None) -> str:
    """A unified diff from what is on disk (old) to what compile produces (new)."""
    import difflib

    label = path.as_posix()
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            fromfile=f"a/{label}" if old is not None else "/dev/null",
            tofile=f"b/{label}" if new is not None else "/dev/null",
        )
    )


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None


def changes(out_dir: Path, files: dict[str, str]) -> list[tuple[Path, str | None, str]]:
    """(path, on disk, wanted) for every file whose bytes differ from the fresh compile."""
    found = []
    for name, text in sorted(files.items()):
        path = out_dir / name
        current = read_text_or_none(path)
        if current != text:
            found.append((path, current, text))
    return found


def strays(out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Files in an owned output folder that the compile does not produce."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.name not in files and p.name != "__pycache__")


class EscapeError(Exception):
    """An output path resolves outside the folder it belongs to (a symlink or `..`)."""


def ensure_inside(root: Path, path: Path) -> None:
    """Refuse to write through a symlink or `..` that leaves `root`."""
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise EscapeError(f"{path} resolves to {resolved}, outside {root}/")


def write_all(outputs: list[tuple[Path, dict[str, str]]]) -> list[Path]:
    """Write compiled outputs, each file atomically; only after every spec compiled cleanly."""
    for out_dir, files in outputs:  # check every path before writing any
        for name in files:
            ensure_inside(out_dir.parent, out_dir / name)
    written = []
    for out_dir, files in outputs:
        for name, text in sorted(files.items()):
            path = out_dir / name
            if read_text_or_none(path) != text:
                write_atomic(path, text.encode("utf-8"))
                written.append(path)
    return written
