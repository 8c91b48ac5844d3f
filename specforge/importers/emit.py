"""The imported spec as YAML text: a header naming what was not carried over, keys in the
spec's own order, a comment beside each value whose mapping is not one to one; then validated
before anything is written."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from specforge.core.errors import Diagnostic, Location, SpecError
from specforge.importers.result import APPROXIMATED, UNSUPPORTED, ImportResult
from specforge.validate.load import load_spec

ORDER = (
    "spec_version",
    "name",
    "description",
    "method",
    "seed",
    "model",
    "tokenizer",
    "dataset",
    "prompt",
    "lora",
    "preference",
    "training",
    "inference",
    "launch",
)
TOOL_NAMES = {"axolotl": "axolotl", "llamafactory": "LLaMA-Factory"}


def scalar(value: Any) -> str:
    """One value as YAML on one line (strings with line breaks double-quoted, escaped)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
    text = text.removesuffix("\n").removesuffix("\n...")
    if "\n" in text:
        text = yaml.safe_dump(value, default_style='"', width=1_000_000, allow_unicode=True)
        text = text.removesuffix("\n")
    return text


def _lines(node: dict, prefix: str, indent: int, comments: dict[str, str]) -> list[str]:
    out = []
    pad = " " * indent
    for key, value in node.items():
        path = f"{prefix}{key}"
        note = f"  # {comments[path]}" if path in comments else ""
        if isinstance(value, dict) and value:
            out.append(f"{pad}{scalar(key)}:{note}")
            out += _lines(value, f"{path}.", indent + 2, comments)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"{pad}{scalar(key)}:{note}")
            for i, item in enumerate(value):
                body = _lines(item, f"{path}.{i}.", indent + 4, comments)
                out.append(f"{pad}  - {body[0].lstrip()}")
                out += body[1:]
        else:
            out.append(f"{pad}{scalar(key)}: {scalar(value)}{note}")
    return out


def header(result: ImportResult) -> list[str]:
    tool = TOOL_NAMES[result.tool]
    lines = [
        f"# Imported from the {tool} config {result.source.as_posix()} by `specforge import`.",
        "# A comment names the source key where a mapping is not one to one.",
    ]
    for kind in (UNSUPPORTED, APPROXIMATED):
        found = [d for d in result.dropped if d.kind == kind]
        if found:
            lines.append(f"# {kind.capitalize()} (see `specforge import` for the rest):")
            lines += [f"#   {d.key}: {d.reason}" for d in found]
    return [line.replace("\n", " ") for line in lines]


def render(result: ImportResult) -> str:
    """The spec's text, deterministic for a given result."""
    data = result.draft.data
    ordered = {k: data[k] for k in ORDER if k in data}
    ordered |= {k: v for k, v in data.items() if k not in ordered}
    body = _lines(ordered, "", 0, result.draft.comments)
    return "\n".join([*header(result), *body]) + "\n"


def validate(text: str, label: str) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(errors, warnings) of the spec text as `specforge validate` finds them, located in `label`;
    data files are not looked at (Hub datasets are not reachable, local ones may live elsewhere)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "imported.yaml"
        path.write_text(text)
        try:
            found = load_spec(path, check_files=False, allow_remote_code=True).warnings
        except SpecError as err:
            found = err.diagnostics
    found = [replace(d, location=Location(label, d.location.line, d.location.col)) for d in found]
    return [d for d in found if d.severity == "error"], [d for d in found if d.severity != "error"]
