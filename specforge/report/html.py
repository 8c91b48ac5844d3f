"""Small HTML builders for the report pages: escaped text, elements, tables, number formats.

The pages are written as strings rather than through a template engine: each section is a
function that returns its HTML, so a section reads top to bottom next to the data it shows, and
every value passes through `esc` (or a formatter that escapes) on its way in.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

NOT_RECORDED = "not recorded"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def attrs(**values: object) -> str:
    """` name="value"` pairs; a trailing underscore is dropped (class_), underscores become
    hyphens (data_value), None is left out."""
    out = []
    for name, value in values.items():
        if value is None:
            continue
        key = name.rstrip("_").replace("_", "-")
        out.append(f' {key}="{esc(value)}"')
    return "".join(out)


def el(name: str, body: str = "", **values: object) -> str:
    """An element around already-escaped `body`."""
    return f"<{name}{attrs(**values)}>{body}</{name}>"


def text(name: str, value: object, **values: object) -> str:
    """An element around escaped text."""
    return el(name, esc(value), **values)


def section(anchor: str, title: str, body: str) -> str:
    return el("section", el("h2", esc(title)) + body, id=anchor)


def note(message: str) -> str:
    return text("p", message, class_="note")


def table(
    headers: Iterable[str],
    rows: Iterable[Iterable[str]],
    *,
    id_: str | None = None,
    class_: str | None = None,
) -> str:
    """A table of already-escaped cells (use `esc` or the formatters for plain values)."""
    head = el("thead", el("tr", "".join(el("th", esc(h)) for h in headers)))
    body = "".join(el("tr", "".join(el("td", cell) for cell in row)) for row in rows)
    return el("table", head + el("tbody", body), id=id_, class_=class_)


def key_values(pairs: Iterable[tuple[str, str]], *, id_: str | None = None) -> str:
    """A two-column table of label -> already-escaped value."""
    rows = "".join(el("tr", el("th", esc(k)) + el("td", v)) for k, v in pairs)
    return el("table", el("tbody", rows), id=id_, class_="kv")


def missing(value: object, shown: str | None = None) -> str:
    """`shown` (escaped text) or the value, and NOT_RECORDED, greyed, for None."""
    if value is None:
        return el("span", NOT_RECORDED, class_="missing")
    return esc(value) if shown is None else shown


def pct(value: float | None, digits: int = 1) -> str:
    return missing(value, None if value is None else esc(f"{value * 100:.{digits}f} %"))


def num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return missing(None)
    if isinstance(value, bool):
        return esc(str(value).lower())
    if isinstance(value, int):
        return esc(f"{value:,}")
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e6):
        return esc(f"{value:.{digits - 1}e}")
    return esc(f"{value:.{digits}f}")


def short_sha(value: str | None) -> str:
    """A sha256 or commit, shortened for the eye, whole in the tooltip."""
    if not value:
        return missing(None)
    return el("code", esc(value[:12]), title=value)


def pre(value: str, **values: object) -> str:
    return el("pre", esc(value), **values)
