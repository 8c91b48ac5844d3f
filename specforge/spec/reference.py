"""docs/spec-reference.md, generated from the pydantic models (so it cannot drift from the schema).

Regenerate: `python -m specforge.spec.reference > docs/spec-reference.md` (a test checks it).
"""

from __future__ import annotations

import json
import types
import typing

from pydantic import BaseModel

from specforge.spec.models import Spec


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map {_type_name(args[0])} → {_type_name(args[1])}"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        # a section left out is `{}`, filled with its own defaults: they are listed under it
        section = value == {} and _nested(field.annotation) is not None
        return "" if section or isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    return f"`{json.dumps(field.default)}`"


def _nested(annotation) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        for inner in typing.get_args(arg):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _section(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    title = prefix or "top level"
    out += [
        f"## `{title}`",
        "",
        (model.__doc__ or "").strip().splitlines()[0],
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    nested = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        description = (field.description or "").replace("|", "\\|")
        out.append(
            f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {description} |"
        )
        inner = _nested(field.annotation)
        if inner is not None:
            nested.append(
                (inner, key + ("[]" if typing.get_origin(field.annotation) is list else ""))
            )
    out.append("")
    for inner, key in nested:
        _section(inner, key, out)


def reference_markdown() -> str:
    out = [
        "# Spec reference (version 1)",
        "",
        "Generated from the schema by `python -m specforge.spec.reference`. Do not edit.",
        "",
    ]
    _section(Spec, "", out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
