"""The `py` filter: the only way a spec value enters generated source.

Every value becomes a Python literal via `repr`, and must read back through `ast.literal_eval` to an
equal value, so no spec text can ever become code. NaN and infinities are refused (their repr is not a
literal).

The one place that knows the line width: a constant or keyword dict is laid out as `ruff format`
would at its default 88 columns (one line when it fits, else one item a line, or the comment above).
The templates need no width: where a call's arguments vary with the spec they are written one a
line with a trailing comma, a layout ruff keeps at any width.
"""

from __future__ import annotations

import ast
import math

_PLAIN = (str, int, float, bool, type(None))
# ruff format's default line length: generated files pass `ruff format --isolated --check`,
# so a user's own formatter (at its defaults) never rewrites them
LINE_LIMIT = 88


class LiteralError(ValueError):
    pass


def _check(value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise LiteralError(f"non-finite number {value!r} cannot be emitted")
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise LiteralError(f"dict key {key!r} is not a str or int")
            _check(item)
        return
    raise LiteralError(f"{type(value).__name__} is not a literal type")


def py(value) -> str:
    """`repr` of a plain value, proven to round-trip through `ast.literal_eval`."""
    _check(value)
    text = repr(value)
    if ast.literal_eval(text) != value or type(ast.literal_eval(text)) is not type(value):
        raise LiteralError(f"{value!r} does not round-trip as a literal")
    return text


def literal(value) -> str:
    """The `py` filter: a value as the literal ruff format would write, proven to round-trip."""
    py(value)
    return _inline(value)


def _scalar(value) -> str:
    text = py(value)
    if isinstance(value, str) and text.startswith("'") and '"' not in value:
        text = '"' + text[1:-1] + '"'  # ruff's preferred quotes; no escape changes meaning
    return text


def _inline(value) -> str:
    """A literal on one line, as ruff format writes a collection that fits."""
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_inline(v)}" for k, v in value.items()) + "}"
    return _scalar(value)


def _block(value, depth: int, room: int = LINE_LIMIT) -> str:
    """A literal: on one line when it fits in `room` characters, else one item per line with
    trailing commas (ruff format's own layout, kept stable by the magic trailing comma)."""
    text = _inline(value)
    if len(text) <= room or not isinstance(value, (list, dict)) or not value:
        return text
    pad, close = "    " * (depth + 1), "    " * depth
    if isinstance(value, list):
        items = [_block(item, depth + 1, LINE_LIMIT - len(pad) - 1) for item in value]
        return "[\n" + "".join(f"{pad}{item},\n" for item in items) + f"{close}]"
    items = []
    for key, item in value.items():
        lead = f"{_scalar(key)}: "
        items.append(lead + _block(item, depth + 1, LINE_LIMIT - len(pad) - len(lead) - 1))
    return "{\n" + "".join(f"{pad}{item},\n" for item in items) + f"{close}}}"


def _comment(spec_key: str | None, why: str | None) -> str:
    parts = ([f"spec: {spec_key}"] if spec_key else []) + ([why] if why else [])
    return ("  # " + "; ".join(parts)) if parts else ""


def _checked(text: str, value) -> str:
    """Prove the emitted text is one assignment of a literal equal to `value`."""
    tree = ast.parse(text)
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign):
        raise LiteralError("emitted constant is not a single assignment")
    if ast.literal_eval(tree.body[0].value) != value:
        raise LiteralError("emitted constant does not round-trip")
    return text


def _entry(indent: int, lead: str, body: str, comment: str, tail: str = "") -> list[str]:
    """One `lead body tail  # comment` entry, laid out as ruff format would keep it.

    The comment goes on its own line above when the line would be too long (or the body spans
    lines); a too-long scalar that fits when wrapped gets the parentheses ruff would add.
    """
    pad = " " * indent
    line = f"{pad}{lead}{body}{tail}{comment}"
    if "\n" not in body and len(line) <= LINE_LIMIT:
        return [line]
    above = [f"{pad}#{comment[3:]}"] if comment else []
    line = f"{pad}{lead}{body}{tail}"
    if "\n" in body or len(line) <= LINE_LIMIT or indent + 4 + len(body) > LINE_LIMIT:
        return above + [line]
    return above + [f"{pad}{lead}(", f"{pad}    {body}", f"{pad}){tail}"]


def assign(name: str, value, spec_key: str | None = None, why: str | None = None) -> str:
    """`NAME = <literal>  # spec: key; why`, proven to round-trip."""
    if not name.isidentifier():
        raise LiteralError(f"{name!r} is not an identifier")
    lead = f"{name} = "
    lines = _entry(0, lead, _block(value, 0, LINE_LIMIT - len(lead)), _comment(spec_key, why))
    return _checked("\n".join(lines), value)


def kwargs_block(name: str, items: list[tuple]) -> str:
    """A dict of keyword arguments, each line naming the spec key it comes from."""
    lines = [f"{name} = {{"]
    for key, value, spec_key, why in items:
        lead = f"{_scalar(key)}: "
        body = _block(value, 1, LINE_LIMIT - 4 - len(lead) - 1)
        lines += _entry(4, lead, body, _comment(spec_key, why), ",")
    lines.append("}")
    return _checked("\n".join(lines), {k: v for k, v, _, _ in items})
