"""Reading tag attributes the way XML does, with tolerance for what models write."""

from __future__ import annotations

import pytest

from cortex.kernel.protocol import codes
from cortex.kernel.protocol.attributes import parse_attributes


@pytest.mark.parametrize(
    ("inside", "attrs"),
    [
        (' type="tool" name="x"', {"type": "tool", "name": "x"}),
        (" type='tool'  name = \"x\" ", {"type": "tool", "name": "x"}),
        (' q="a &lt; b &amp; &quot;c&quot; &#x41;"', {"q": 'a < b & "c" A'}),
        (' q="line\none\ttab"', {"q": "line one tab"}),  # XML attribute normalisation
        (' q="&#10;"', {"q": "\n"}),  # a character reference survives normalisation
        (" mode=sync", {"mode": "sync"}),  # unquoted: tolerated
        (' q="it\'s"', {"q": "it's"}),
        (' q="a>b"', {"q": "a>b"}),
        ("", {}),
    ],
)
def test_attributes_are_read(inside: str, attrs: dict[str, str]) -> None:
    assert parse_attributes(inside) == (attrs, [])


@pytest.mark.parametrize(
    ("inside", "attrs", "problem"),
    [
        (' id="a" id="b"', {"id": "a"}, "repeated"),
        (" async", {}, "without a value: async"),
        (' type="tool" {"q": 1}', {"type": "tool"}, "unreadable text"),
    ],
)
def test_attribute_problems_are_reported_not_raised(
    inside: str, attrs: dict[str, str], problem: str
) -> None:
    found, problems = parse_attributes(inside)
    assert found == attrs
    assert [code for code, _ in problems] == [codes.BAD_ATTRIBUTE]
    assert problem in problems[0][1]
