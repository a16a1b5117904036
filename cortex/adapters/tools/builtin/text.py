"""Built-in ``text`` plugin: extract readable text (or regex matches) and count text."""

from __future__ import annotations

import re
from typing import Any

import lxml.html
from lxml import etree

from cortex.adapters.tools.decorator import tool
from cortex.errors import ToolError

MAX_INPUT_CHARS = 2_000_000
_HTML_HINT = re.compile(r"<\s*(?:!doctype|html|head|body|p|div|span|a|br|h[1-6]|table|ul|ol|li|script|style)\b", re.I)
_DROP = ("script", "style", "noscript", "template", "title")
_BLOCKS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre")


@tool
def extract(text: str, pattern: str | None = None, max_chars: int = 20_000) -> dict[str, Any]:
    """Extract readable text from HTML or plain text, or only the matches of a regular expression.

    Args:
        text: HTML or plain text.
        pattern: A regular expression; when given, its matches are returned instead of the text.
        max_chars: Cut the extracted text after this many characters.
    """
    if len(text) > MAX_INPUT_CHARS:
        raise ToolError(f"text.extract takes at most {MAX_INPUT_CHARS} characters, got {len(text)}")
    title: str | None = None
    links: list[str] = []
    if _HTML_HINT.search(text):
        text, title, links = _from_html(text)
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"text.extract: bad pattern: {exc}") from exc
        matches = [m.group(0) for m in regex.finditer(text)]
        return {"matches": matches, "count": len(matches)}
    return {"text": text[:max_chars], "title": title, "links": links, "truncated": len(text) > max_chars}


@tool
def count(text: str, substring: str | None = None) -> dict[str, int]:
    """Count characters, words, lines and UTF-8 bytes of a text (and a substring's occurrences).

    Args:
        text: The text to count.
        substring: Also count the non-overlapping occurrences of this string.
    """
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    counts = {"chars": len(text), "words": len(text.split()), "lines": lines, "bytes": len(text.encode())}
    if substring:
        counts["occurrences"] = text.count(substring)
    return counts


def _from_html(html: str) -> tuple[str, str | None, list[str]]:
    """Visible text, title and link targets of an HTML document."""
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        raise ToolError(f"text.extract: cannot parse HTML: {exc}") from exc
    title = doc.findtext(".//title")
    for element in doc.xpath("|".join(f"//{tag}" for tag in _DROP)):
        element.drop_tree()
    links = [href for href in doc.xpath("//a/@href") if isinstance(href, str)]
    for element in doc.iter(*_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in doc.text_content().splitlines())
    text = "\n".join(line for line in lines if line)
    return text, title.strip() if title else None, links
