"""Safe YAML reading that remembers where every key and value came from.

PyYAML's SafeLoader, narrowed to the YAML 1.2 core schema so a spec means what it looks like:
`no`/`yes`/`on`/`off` stay strings (`save_strategy: no` is "no", not False), `1e-4` is a float,
`010` is ten, dates stay strings. Duplicate keys, merge keys and non-string keys are errors.
Aliases are allowed but their expansion is budgeted, so an alias bomb fails fast instead of hanging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from specforge.core.errors import Diagnostic, Location, SpecError

MAX_BYTES = 1_000_000
MAX_NODES = 20_000  # values visited while building the document, aliases expanded


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    if text.startswith("0x"):
        return int(text, 16)
    if text.startswith("0o"):
        return int(text, 8)
    return int(text, 10)  # YAML 1.2: a leading zero is not octal


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


@dataclass
class Document:
    """A YAML mapping with the source location of every key and value, by key path."""

    data: dict
    values: dict[tuple, Location] = field(default_factory=dict)
    keys: dict[tuple, Location] = field(default_factory=dict)
    path: Path | None = None
    text: str = ""

    def locate(self, path: tuple, *, key: bool = False) -> Location:
        """Where `path` is written; falls back to the nearest written ancestor."""
        table = self.keys if key else self.values
        for end in range(len(path), -1, -1):
            prefix = tuple(path[:end])
            if prefix in table:
                return table[prefix]
            if prefix in self.keys:
                return self.keys[prefix]
        return Location(self.values[()].file, 1, 1) if () in self.values else Location("<spec>")


def _loc(label: str, mark) -> Location:
    return Location(label, mark.line + 1, mark.column + 1)


def _fail(label: str, line: int, col: int, message: str, *hints: str) -> SpecError:
    return SpecError([Diagnostic(Location(label, line, col), message, hints=tuple(hints))])


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _Builder:
    """Turns composed nodes into Python values, recording locations and enforcing the rules above."""

    def __init__(self, loader: _Loader, label: str):
        self.loader = loader
        self.label = label
        self.visited = 0
        self.doc = Document(data={})

    def build(self, node, path: tuple = ()):
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _fail(
                self.label,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                f"document expands to more than {MAX_NODES} values (alias bomb?)",
                "a spec is a few hundred values; remove the repeated aliases",
            )
        self.doc.values[path] = _loc(self.label, node.start_mark)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            raise _fail(
                self.label,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                f"tag not allowed: {node.tag}",
                "specs are data: only plain YAML values are accepted",
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            where = _loc(self.label, key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge" or (
                isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<"
            ):
                raise _fail(
                    self.label,
                    where.line,
                    where.col,
                    "YAML merge keys (`<<`) are not supported",
                    "use `extends: base.yaml` to share settings between specs",
                )
            key = (
                self.loader.construct_object(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                raise _fail(
                    self.label,
                    where.line,
                    where.col,
                    f"keys must be strings (got {key_node.value!r})",
                    "quote the key",
                )
            if key in out:
                first = self.doc.keys[path + (key,)]
                raise _fail(
                    self.label,
                    where.line,
                    where.col,
                    f"duplicate key `{key}` (first defined at line {first.line})",
                    "delete one of them; YAML would silently keep the last",
                )
            self.doc.keys[path + (key,)] = where
            out[key] = self.build(value_node, (*path, key))
        return out


def _decode(raw: bytes, label: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise _fail(
            label,
            line,
            col,
            f"not valid UTF-8 (byte 0x{raw[err.start]:02x})",
            "save the file as UTF-8",
        ) from None


def parse_text(text: str, label: str) -> Document:
    """Parse YAML text into a Document; every failure is a located SpecError."""
    try:
        loader = _Loader(text)  # raises ReaderError on control characters (NUL, ESC, ...)
        try:
            node = loader.get_single_node()
            if node is None:
                raise _fail(label, 1, 1, "spec is empty", "start from specs/quickstart.yaml")
            if not isinstance(node, yaml.MappingNode) or node.tag != "tag:yaml.org,2002:map":
                raise _fail(
                    label,
                    node.start_mark.line + 1,
                    node.start_mark.column + 1,
                    "top level must be a mapping of keys to values",
                    "a spec starts with `spec_version: 1`",
                )
            builder = _Builder(loader, label)
            builder.doc.data = builder.build(node)
            builder.doc.text = text
            return builder.doc
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        message = (err.problem or err.context or "invalid YAML").strip()
        hints = []
        if "\\t" in message or "'\\t'" in str(err) or "tab" in message.lower():
            hints.append("indent with spaces; YAML does not allow tabs for indentation")
        if err.problem and "could not determine a constructor" in err.problem:
            message = f"tag not allowed: {err.problem.split('tag ', 1)[-1].strip()}"
            hints.append("specs are data: only plain YAML values are accepted")
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise _fail(label, line, col, message, *hints) from None
    except yaml.reader.ReaderError as err:
        before = text[: err.position]
        raise _fail(
            label,
            before.count("\n") + 1,
            err.position - (before.rfind("\n") + 1) + 1,
            f"control character {err.character:#06x} is not allowed",
            "remove it; specs are printable text",
        ) from None
    except yaml.YAMLError as err:
        raise _fail(label, 1, 1, f"invalid YAML: {err}") from None
    except RecursionError:
        raise _fail(label, 1, 1, "nesting is too deep") from None


def read_document(path: Path, label: str) -> Document:
    """Read a spec file from disk (size-capped, UTF-8) and parse it."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _fail(label, 1, 1, f"spec is {size} bytes; the limit is {MAX_BYTES}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(label, 1, 1, "no such file") from None
    except IsADirectoryError:
        raise _fail(label, 1, 1, "is a directory, not a spec file") from None
    except OSError as err:
        raise _fail(label, 1, 1, f"cannot read: {err.strerror}") from None
    doc = parse_text(_decode(raw, label), label)
    doc.path = path
    return doc


def parse_scalar(text: str, label: str):
    """A `--set` value, read as YAML with the same rules (so `--set lora.r=8` is an int)."""
    doc = parse_text(f"v: {text}" if text.strip() else "v: ''", label)
    return doc.data["v"]
