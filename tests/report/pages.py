"""Read a written report back: its elements (tag, attributes, text), scripts and figure data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

_VOID = {"meta", "br", "hr", "img", "input", "link", "source", "area", "base", "col", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: str = ""


@dataclass
class Page:
    elements: list[Element] = field(default_factory=list)
    scripts: list[tuple[dict[str, str | None], str]] = field(default_factory=list)

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def has_id(self, element_id: str) -> bool:
        return any(e.attrs.get("id") == element_id for e in self.elements)

    def with_attr(self, name: str) -> list[Element]:
        return [e for e in self.elements if name in e.attrs]

    def by_class(self, cls: str) -> list[Element]:
        return [e for e in self.elements if cls in (e.attrs.get("class") or "").split()]

    def section_text(self, section_id: str) -> str:
        return " ".join(self.by_id(section_id).text.split())

    @property
    def figures(self) -> dict[str, Any]:
        data = [text for attrs, text in self.scripts if attrs.get("id") == "report-figures"]
        assert len(data) == 1, "the page must hold one figure data block"
        figures: dict[str, Any] = json.loads(data[0])["figures"]
        return figures

    @property
    def chart_ids(self) -> list[str]:
        return [e.attrs["id"] or "" for e in self.by_class("chart")]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._open: list[Element] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.page.elements.append(element)
        if tag == "script":
            self._script = element.attrs
            self.page.scripts.append((element.attrs, ""))
        elif tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None
            return
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        if self._script is not None:  # script text is code, not page text
            attrs, text = self.page.scripts[-1]
            self.page.scripts[-1] = (attrs, text + data)
            return
        for element in self._open:
            element.text += data


def parse_page(text: str) -> Page:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    return parser.page
