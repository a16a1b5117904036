"""``$id`` references inside action params: finding them, and substituting results for them.

A reference is ``$id`` optionally followed by a path of ``.field`` and ``[index]`` steps,
e.g. ``$wiki.body`` or ``$search.hits[0].url``; ``$$`` stands for a literal ``$``. Only string
values are searched (keys are not). A string that is exactly one reference is replaced by the
referenced value with its JSON type; references inside a longer string are replaced by their
text (strings as they are, anything else as compact JSON).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from cortex.errors import UnresolvedReference

REFERENCE = re.compile(
    r"\$(?:\$|([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])*))"
)
"""``$$`` (group 1 empty) or ``$id`` (group 1) with an optional path (group 2)."""

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")


def find_refs(params: Any) -> tuple[str, ...]:
    """Action ids referenced anywhere in the string values of ``params``, in order, once each."""
    found: dict[str, None] = {}
    stack = [iter((params,))]  # the values still to see, container by container (no recursion)
    while stack:
        for value in stack[-1]:
            if isinstance(value, str):
                if "$" in value:
                    for m in REFERENCE.finditer(value):
                        if m.group(1):
                            found.setdefault(m.group(1))
            elif isinstance(value, dict):
                stack.append(iter(value.values()))
                break
            elif isinstance(value, list):
                stack.append(iter(value))
                break
        else:
            stack.pop()
    return tuple(found)


def resolve(params: Any, results: Mapping[str, Any]) -> Any:
    """A copy of ``params`` with every reference replaced by its value from ``results``.

    ``results`` maps action ids to their (JSON-like) results. Raises ``UnresolvedReference``
    naming the reference when an id is missing or its path leads nowhere.
    """
    if isinstance(params, str):
        return _resolve_string(params, results)
    if isinstance(params, dict):
        return {k: resolve(v, results) for k, v in params.items()}
    if isinstance(params, list):
        return [resolve(v, results) for v in params]
    return params


def _resolve_string(text: str, results: Mapping[str, Any]) -> Any:
    if "$" not in text:
        return text
    whole = REFERENCE.fullmatch(text)
    if whole and whole.group(1):
        return _lookup(whole, results)
    return REFERENCE.sub(lambda m: _as_text(m, results), text)


def _as_text(match: re.Match[str], results: Mapping[str, Any]) -> str:
    if not match.group(1):
        return "$"
    value = _lookup(match, results)
    if isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def _lookup(match: re.Match[str], results: Mapping[str, Any]) -> Any:
    action_id, path = match.group(1), match.group(2)
    reference = match.group(0)
    if action_id not in results:
        raise UnresolvedReference(reference, action_id, f"no result for action {action_id!r}")
    value = results[action_id]
    walked = f"${action_id}"
    for step in _STEP.finditer(path):
        key, index = step.groups()
        if key is not None:
            if not isinstance(value, Mapping) or key not in value:
                raise UnresolvedReference(
                    reference, action_id, f"{walked} has no field {key!r} ({_kind(value)})"
                )
            value = value[key]
        else:
            position = int(index)
            if not _is_sequence(value) or position >= len(value):
                raise UnresolvedReference(
                    reference, action_id, f"{walked} has no item [{position}] ({_kind(value)})"
                )
            value = value[position]
        walked += step.group(0)
    return value


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"an object with keys {sorted(map(str, value))[:8]}"
    if _is_sequence(value):
        return f"a list of {len(value)}"
    return f"a {type(value).__name__}"
