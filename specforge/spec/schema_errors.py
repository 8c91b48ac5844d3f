"""Pydantic validation errors -> located diagnostics with hints."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from specforge.core.errors import Diagnostic, dotted
from specforge.spec.suggest import NOT_NULL, closest, unknown_key_hints, unsupported
from specforge.spec.yaml_source import Document

_YAML_11_BOOLS = {"yes", "no", "on", "off", "y", "n"}
_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
}


def show(value) -> str:
    """A value as the user wrote it in YAML."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _data_path(loc: tuple, data) -> tuple:
    """Keep only the parts of a pydantic loc that address the data (drop union-branch tags)."""
    path: list = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif (
            isinstance(node, dict) and isinstance(part, str) and "[" not in part and "-" not in part
        ):
            path.append(part)  # a missing or unknown key
            node = None
    return tuple(path)


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model class that holds the mapping at `path` (for listing allowed keys)."""
    current: typing.Any = model
    for part in path:
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = field.annotation
        while typing.get_origin(current) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(current) if a is not type(None)]
            current = options[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def error_message(err: Mapping[str, Any]) -> tuple[str, list[str]]:
    """One pydantic error (an item of ValidationError.errors()) as specforge's message and hints."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    got = f" (got {show(value)})"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'|(\d+)", ctx.get("expected", ""))
        options = [a or b for a, b in options]
        hints = []
        if isinstance(value, str):
            guess = closest(value, options)
            if guess:
                hints.append(f"did you mean `{guess}`?")
        if value is False and "no" in options:
            hints.append('write "no" in quotes')
        return f"must be one of {', '.join(options)}{got}", hints
    if isinstance(value, bool) and kind in ("int_type", "float_type"):
        return f"must be a number, not a boolean{got}", []
    if kind == "bool_type" and isinstance(value, str) and value.lower() in _YAML_11_BOOLS:
        return f"must be true or false{got}", ["YAML 1.2 booleans are only true/false"]
    if kind == "string_type" and isinstance(value, bool):
        return f"must be a string{got}", ["quote the value"]
    if kind == "string_type" and isinstance(value, (int, float)):
        return f"must be a string{got}", ["quote the value"]
    if kind == "float_type" and isinstance(value, str):
        return f"must be a number{got}", ["write numbers without quotes, e.g. 5.0e-4"]
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}{got}", []
    if kind == "missing":
        return "required key is missing", []
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping{got}", []
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{got}", []
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}{got}", []
    text = err["msg"]
    text = re.sub(r"^Value error, ", "", text)
    text = re.sub(r"^Input should be ", "must be ", text)
    text = re.sub(r"^Input ", "value ", text)
    text = re.sub(r" or instance of \w+", "", text)  # pydantic class names mean nothing to a user
    return text + ("" if kind == "value_error" else got), []


def _mapping_hints(model: type[BaseModel], path: tuple, err: Mapping[str, Any]) -> list[str]:
    """For a section given a scalar: how to write it as a mapping, or how to get its defaults."""
    if err["type"] != "model_type" or not path:
        return []
    holder, inner = _model_at(model, path[:-1]), _model_at(model, path)
    field = holder.model_fields.get(str(path[-1])) if holder else None
    value = err.get("input")
    if value is None and field is not None and not field.is_required():
        return [f"remove `{path[-1]}` to use the defaults"]
    required: list = [n for n, f in inner.model_fields.items() if f.is_required()] if inner else []
    required = required or [getattr(inner, "SHORTHAND", None)]  # a section with optional forms
    if isinstance(value, str) and len(required) == 1:
        return [f"write `{path[-1]}: {{{required[0]}: {value}}}`"]
    return []


def schema_diagnostics(
    error: ValidationError, doc: Document, model: type[BaseModel]
) -> list[Diagnostic]:
    """One diagnostic per problem, union branches folded into one line."""
    grouped: dict[tuple, list[ErrorDetails]] = {}
    for err in error.errors():
        grouped.setdefault(_data_path(err["loc"], doc.data), []).append(err)
    out = []
    for path, errs in grouped.items():
        key = dotted(path)
        known = unsupported(str(path[-1]), doc.data) if path else None
        if errs[0]["type"] == "extra_forbidden" and known is not None:
            message, hint = known
            out.append(Diagnostic(doc.locate(path, key=True), message, key=key, hints=(hint,)))
            continue
        if errs[0]["type"] == "extra_forbidden":
            holder = _model_at(model, path[:-1])
            allowed = list(holder.model_fields) if holder else []
            hints = unknown_key_hints(str(path[-1]), allowed)
            out.append(
                Diagnostic(doc.locate(path, key=True), "unknown key", key=key, hints=tuple(hints))
            )
            continue
        if errs[0]["type"] == "missing":
            if path == ("dataset",) and isinstance(doc.data, dict) and "datasets" in doc.data:
                continue  # reported at `datasets`
            holder = _model_at(model, path[:-1])
            field = holder.model_fields.get(str(path[-1])) if holder else None
            described = (field.description,) if field and field.description else ()
            out.append(
                Diagnostic(
                    doc.locate(path[:-1], key=True),
                    f"required key `{path[-1]}` is missing",
                    key=dotted(path[:-1]) or "(top level)",
                    hints=described,
                )
            )
            continue
        if path and str(path[-1]) in NOT_NULL and errs[0].get("input", ...) is None:
            message, hint = NOT_NULL[str(path[-1])]
            out.append(Diagnostic(doc.locate(path), message, key=key, hints=(hint,)))
            continue
        messages, hints = [], list(_mapping_hints(model, path, errs[0]))
        for err in errs:
            text, extra = error_message(err)
            if text not in messages:
                messages.append(text)
            hints.extend(h for h in extra if h not in hints)
        if len(messages) > 1:  # union branches: one sentence, the input shown once
            got = f" (got {show(errs[0].get('input'))})"
            parts = [m.removesuffix(got) for m in messages]
            parts[1:] = [p.removeprefix("must be ") for p in parts[1:]]
            messages = [" or ".join(parts) + got]
        out.append(Diagnostic(doc.locate(path), messages[0], key=key, hints=tuple(hints)))
    return sorted(out, key=lambda d: (d.location.file, d.location.line, d.location.col))
