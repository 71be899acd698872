"""A small, safe XML reader for answers from peers we do not trust (UPnP devices).

Built on the stdlib expat parser with every DTD refused: a ``<!DOCTYPE``, an entity
declaration or an external entity reference is an error, so entity expansion ("billion
laughs") and external DTD/entity fetches cannot happen. Bounded: the input size, the number
of elements, the nesting depth and the text kept per element are capped. Pure: no I/O.
"""

from __future__ import annotations

import xml.parsers.expat
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_XML_BYTES = 256 * 1024
MAX_ELEMENTS = 20_000
MAX_DEPTH = 64
MAX_TEXT = 4096


class XmlRefused(ValueError):
    """The document is not well-formed, too large, or declares a DTD/entities."""


@dataclass
class Node:
    """One element: its local name (namespace dropped), text and children."""

    tag: str
    text: str = ""
    children: list[Node] = field(default_factory=list)

    def iter(self, tag: str) -> Iterator[Node]:
        """This element and its descendants named ``tag``, in document order."""
        stack = [self]
        while stack:
            node = stack.pop()
            if node.tag == tag:
                yield node
            stack.extend(reversed(node.children))

    def child(self, tag: str) -> Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def child_text(self, tag: str) -> str:
        c = self.child(tag)
        return c.text.strip() if c is not None else ""


def _local(name: str) -> str:
    return name.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]


def parse_xml(data: bytes, max_bytes: int = MAX_XML_BYTES) -> Node:
    """The root element of ``data``. Raises XmlRefused."""
    if len(data) > max_bytes:
        raise XmlRefused(f"XML document larger than {max_bytes} bytes")
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []
    count = 0

    def refuse_dtd(*_: object) -> None:
        raise XmlRefused("XML with a DTD (<!DOCTYPE>) refused")

    def refuse_entity(*_: object) -> None:
        raise XmlRefused("XML entity declaration refused")

    def refuse_external(*_: object) -> int:
        raise XmlRefused("XML external entity reference refused")

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > MAX_ELEMENTS:
            raise XmlRefused(f"XML document with more than {MAX_ELEMENTS} elements")
        if len(stack) >= MAX_DEPTH:
            raise XmlRefused(f"XML nested deeper than {MAX_DEPTH}")
        node = Node(_local(name))
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(_name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack and len(stack[-1].text) < MAX_TEXT:
            stack[-1].text = (stack[-1].text + data)[:MAX_TEXT]

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_external
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise XmlRefused(f"malformed XML: {exc}") from None
    if not root:
        raise XmlRefused("XML document without an element")
    return root[0]
