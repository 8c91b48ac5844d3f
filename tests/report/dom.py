"""Reading a report page the way a browser would, without one: every tag with its attributes,
the elements by id, and their text (html.parser from the standard library)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

VOID = {"meta", "br", "img", "hr", "input", "link", "col", "source", "wbr", "area", "base"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: list[str] = field(default_factory=list)
    children: list[Element] = field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(self.text).strip()

    def descendants(self, tag: str) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag:
                found.append(child)
            found += child.descendants(tag)
        return found


class Page(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[Element] = []
        self.open: list[Element] = []
        self.by_id: dict[str, Element] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs))
        self.tags.append(element)
        if self.open:
            self.open[-1].children.append(element)
        if "id" in element.attrs and tag not in ("path", "g", "clipPath"):
            self.by_id[element.attrs["id"]] = element
        if tag not in VOID:
            self.open.append(element)

    def handle_startendtag(self, tag, attrs):
        element = Element(tag, dict(attrs))
        self.tags.append(element)
        if self.open:
            self.open[-1].children.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i].tag == tag:
                del self.open[i:]
                return

    def handle_data(self, data):
        for element in self.open:
            element.text.append(data)


def read(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


LOADING = ("src", "href", "xlink:href", "data", "poster", "srcset", "action", "formaction")


def external_references(page: Page) -> list[str]:
    """Every attribute that would make a browser fetch something: any src/href that is not a
    link within the page (#...); plus script, iframe, link and object elements at all."""
    found = []
    for tag in page.tags:
        if tag.tag in ("script", "iframe", "link", "object", "embed", "img", "audio", "video"):
            found.append(f"<{tag.tag}>")
        for name in LOADING:
            value = tag.attrs.get(name)
            if value is not None and not value.startswith("#"):
                found.append(f"<{tag.tag} {name}={value!r}>")
        style = tag.attrs.get("style") or ""
        if "url(" in style:
            found.append(f"<{tag.tag} style={style!r}>")
    return found
