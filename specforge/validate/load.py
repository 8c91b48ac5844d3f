"""Load a spec: read YAML, resolve `extends:`, apply `--set` overrides, validate, run cross-field rules."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from specforge.core.errors import Diagnostic, Location, SpecError, UsageError
from specforge.spec.models import Spec
from specforge.spec.schema_errors import schema_diagnostics
from specforge.spec.yaml_source import Document, parse_scalar, read_document
from specforge.validate.rules import run_rules

MAX_EXTENDS_DEPTH = 8


__all__ = ["LoadedSpec", "UsageError", "load_spec"]


@dataclass
class LoadedSpec:
    spec: Spec
    doc: Document
    path: Path
    label: str
    sha256: str
    overrides: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)  # the spec and every file it extends


def label_for(path: Path) -> str:
    """How a spec file is named in messages and headers: relative to the working directory if inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _overridden(path: tuple, over) -> bool:
    """True when `over` (a spec layered on top) replaces the value at `path`."""
    node = over
    for part in path:
        if not isinstance(node, dict) or isinstance(part, int):
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _merge_data(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge_data(base[key], value) if key in base else value
        return out
    return over  # lists and scalars replace


def merge(base: Document, over: Document) -> Document:
    """Deep-merge `over` onto `base`; every location points at the file whose value survives."""
    data = _merge_data(base.data, over.data)
    values = {p: loc for p, loc in base.values.items() if p and not _overridden(p, over.data)}
    keys = {p: loc for p, loc in base.keys.items() if not _overridden(p, over.data)}
    values.update(over.values)
    keys.update(over.keys)
    return Document(data=data, values=values, keys=keys, path=over.path, text=over.text)


def _with_extends(
    path: Path, label: str, seen: tuple[Path, ...] = (), sources: list[Path] | None = None
) -> Document:
    if sources is not None:
        sources.append(path)
    doc = read_document(path, label)
    parent = doc.data.get("extends")
    if parent is None:
        return doc
    where = doc.locate(("extends",))
    if not isinstance(parent, str) or not parent:
        raise SpecError([Diagnostic(where, "must be a path to a base spec", key="extends")])
    base_path = (path.parent / parent).resolve()
    if base_path in seen or base_path == path.resolve() or len(seen) >= MAX_EXTENDS_DEPTH:
        raise SpecError(
            [Diagnostic(where, f"`extends` cycle or chain too deep at {parent}", key="extends")]
        )
    if not base_path.is_file():
        raise SpecError(
            [
                Diagnostic(
                    where,
                    f"base spec {parent} does not exist",
                    key="extends",
                    hints=("`extends` resolves from this spec's folder",),
                )
            ]
        )
    base = _with_extends(base_path, label_for(base_path), (*seen, path.resolve()), sources)
    merged = merge(base, doc)
    merged.data.pop("extends", None)
    return merged


def parse_override(item: str) -> tuple[tuple, str]:
    """`lora.r=8` -> (('lora', 'r'), '8'); list indices as `.0`."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".") if key.strip() else []
    if not sep or not parts or any(not p for p in parts):
        raise UsageError(f"--set expects key.path=value (got {item!r})")
    return tuple(int(p) if p.isdigit() else p for p in parts), value


def apply_override(doc: Document, item: str) -> None:
    path, text = parse_override(item)
    label = f"--set {item}"
    value = parse_scalar(text, label)
    node: dict | list = doc.data
    created = []  # mappings this override brings into being: errors in them belong to the --set
    for depth, part in enumerate(path[:-1]):
        nxt = (
            node.get(part)
            if isinstance(node, dict)
            else (
                node[part]
                if isinstance(node, list) and isinstance(part, int) and part < len(node)
                else None
            )
        )
        if nxt is None:
            if not isinstance(node, dict):
                raise UsageError(
                    f"--set {item}: {'.'.join(map(str, path[: depth + 1]))} cannot be set"
                )
            nxt = node[part] = {}
            created.append(path[: depth + 1])
        if not isinstance(nxt, (dict, list)):
            raise UsageError(
                f"--set {item}: {'.'.join(map(str, path[: depth + 1]))} is not a mapping"
            )
        node = nxt
    last = path[-1]
    if isinstance(node, list) and (not isinstance(last, int) or last >= len(node)):
        raise UsageError(f"--set {item}: index out of range")
    node[last] = value
    where = Location(label, 0, 0)
    for table in (doc.values, doc.keys):
        for p in [p for p in table if p[: len(path)] == path]:
            del table[p]
        for p in [*created, path]:
            table[p] = where


def load_spec(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    allow_remote_code: bool = False,
    check_files: bool = True,
) -> LoadedSpec:
    """Everything `validate` checks. Raises SpecError with all diagnostics; returns warnings alongside."""
    path = Path(path)
    label = label_for(path)
    sources: list[Path] = []
    doc = _with_extends(path, label, sources=sources)
    raw = path.read_bytes()
    if overrides:
        doc = Document(
            copy.deepcopy(doc.data), dict(doc.values), dict(doc.keys), doc.path, doc.text
        )
        for item in overrides:
            apply_override(doc, item)
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as err:
        raise SpecError(schema_diagnostics(err, doc, Spec)) from None
    found = run_rules(spec, doc, allow_remote_code=allow_remote_code, check_files=check_files)
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise SpecError(found)
    return LoadedSpec(
        spec=spec,
        doc=doc,
        path=path,
        label=label,
        sha256=hashlib.sha256(raw).hexdigest(),
        overrides=list(overrides or []),
        warnings=found,
        sources=sources,
    )
