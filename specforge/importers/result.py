"""What an import produces: the spec as data, a comment per mapped key, and every source key that
was not carried over, with the reason and what kind of loss it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNSUPPORTED = "unsupported"  # affects training: the spec cannot say it (exit 1)
APPROXIMATED = "approximated"  # carried over in a nearby form; the reason says how
NO_EFFECT = "no effect here"  # changes nothing in what specforge trains
IGNORED = "ignored bookkeeping"  # output paths, logging, worker counts, hub tokens
KINDS = (UNSUPPORTED, APPROXIMATED, NO_EFFECT, IGNORED)


@dataclass(frozen=True)
class Dropped:
    """A source key that was not carried over one to one."""

    key: str
    reason: str
    kind: str


@dataclass
class Draft:
    """The spec being built: nested data in insertion order, and a comment per dotted key."""

    data: dict[str, Any] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)

    def set(self, path: str, value: Any, comment: str | None = None) -> None:
        """Set `a.b.c` (creating the sections on the way) and note where it came from."""
        *parents, leaf = path.split(".")
        node = self.data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        if comment:
            self.comments[path] = comment

    def get(self, path: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


@dataclass
class ImportResult:
    """One imported config."""

    tool: str  # "axolotl" | "llamafactory"
    source: Path
    name: str
    draft: Draft
    dropped: list[Dropped]
    notes: list[str] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)  # source keys mapped onto the spec
    refused: str | None = None  # out of scope as a whole (multimodal): nothing is written

    @classmethod
    def refusal(cls, tool: str, source: Path, why: str) -> ImportResult:
        """A config out of scope as a whole: nothing is mapped or written."""
        return cls(tool=tool, source=source, name="", draft=Draft(), dropped=[], refused=why)

    @property
    def blocking(self) -> list[Dropped]:
        """What affects training and could not be carried over."""
        return [d for d in self.dropped if d.kind == UNSUPPORTED]
