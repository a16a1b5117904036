"""``$id`` references: found in params by the parser, substituted by ``resolve``."""

from __future__ import annotations

import pytest

from cortex.errors import DecisionError, UnresolvedReference
from cortex.kernel.protocol import find_refs, resolve

RESULTS = {
    "wiki": {"body": "Transformers are...", "status": 200, "links": ["a", "b"]},
    "search": {"hits": [{"url": "https://x.example", "score": 0.9}], "total": 1},
    "count": 3,
    "flag": False,
    "nothing": None,
    "text": "plain",
}


@pytest.mark.parametrize(
    ("params", "refs"),
    [
        ({"q": "$wiki"}, ("wiki",)),
        ({"a": "$wiki.body", "b": ["$search.hits[0].url", {"c": "$wiki"}]}, ("wiki", "search")),
        ({"q": "costs $$5 and $5 and $ alone"}, ()),
        ({"$wiki": "keys are not searched"}, ()),
        ({"q": "from $a1 to $b_2.x, then $a1 again"}, ("a1", "b_2")),
        ({"n": 3, "f": True, "z": None, "l": []}, ()),
        ("$top", ("top",)),
        ({"mail": "me@$host.example"}, ("host",)),
    ],
)
def test_find_refs(params: object, refs: tuple[str, ...]) -> None:
    assert find_refs(params) == refs


@pytest.mark.parametrize(
    ("params", "resolved"),
    [
        ({"x": "$count"}, {"x": 3}),  # a whole-string reference keeps the type
        ({"x": "$flag"}, {"x": False}),
        ({"x": "$nothing"}, {"x": None}),
        ({"x": "$wiki.links"}, {"x": ["a", "b"]}),
        ({"x": "$search.hits[0].score"}, {"x": 0.9}),
        ({"x": "n=$count"}, {"x": "n=3"}),  # embedded: stringified
        ({"x": "got $wiki.links!"}, {"x": 'got ["a","b"]!'}),
        ({"x": "$text and $text"}, {"x": "plain and plain"}),
        ({"x": "$nothing?"}, {"x": "null?"}),
        ({"x": "$$count is literal"}, {"x": "$count is literal"}),
        ({"x": ["$count", {"y": "$search.total"}]}, {"x": [3, {"y": 1}]}),
        ({"x": "ends with a dot: $text."}, {"x": "ends with a dot: plain."}),
        ({"$count": "keys stay"}, {"$count": "keys stay"}),
        ([1, 2.5, True, None], [1, 2.5, True, None]),
    ],
)
def test_resolve(params: object, resolved: object) -> None:
    assert resolve(params, RESULTS) == resolved


def test_resolve_does_not_touch_its_inputs() -> None:
    params = {"x": ["$wiki.links"], "y": {"z": "$count"}}
    results = {"wiki": {"links": ["a"]}, "count": 1}
    out = resolve(params, results)
    assert params == {"x": ["$wiki.links"], "y": {"z": "$count"}}
    assert out == {"x": [["a"]], "y": {"z": 1}}


@pytest.mark.parametrize(
    ("params", "reference", "detail"),
    [
        ({"x": "$missing"}, "$missing", "no result for action 'missing'"),
        ({"x": "$wiki.nope"}, "$wiki.nope", "$wiki has no field 'nope'"),
        ({"x": "a $search.hits[3].url b"}, "$search.hits[3].url", "$search.hits has no item [3]"),
        ({"x": "$count.field"}, "$count.field", "$count has no field 'field'"),
        ({"x": "$wiki[0]"}, "$wiki[0]", "$wiki has no item [0]"),
        ({"x": "$text[0]"}, "$text[0]", "$text has no item [0]"),
    ],
)
def test_unresolved_references_name_the_reference(
    params: object, reference: str, detail: str
) -> None:
    with pytest.raises(UnresolvedReference) as info:
        resolve(params, RESULTS)
    assert info.value.reference == reference
    assert detail in str(info.value)
    assert isinstance(info.value, DecisionError)
