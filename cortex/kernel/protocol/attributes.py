"""Reading tag attributes and checking the ones an ``<action>`` carries."""

from __future__ import annotations

import math
import re
from collections.abc import Container

import msgspec

from cortex.kernel.protocol import codes
from cortex.kernel.protocol.markup import normalize_attribute

ACTION_TYPES: tuple[str, ...] = ("tool", "llm", "agent", "workflow", "relic", "internal")
"""The action types the runtime knows."""

ACTION_MODES: tuple[str, ...] = ("sync", "async", "fire_and_forget")
"""How the model waits for an action."""

DEFAULT_MODE = "async"
"""The mode of an action that names none."""

ACTION_ATTRIBUTES: frozenset[str] = frozenset(
    {"type", "name", "id", "mode", "depends_on", "output_key", "timeout", "retry"}
)
"""The attributes the protocol defines for ``<action>``."""

KNOWN_ATTRIBUTES: dict[str, frozenset[str]] = {
    "action": ACTION_ATTRIBUTES,
    "response": frozenset({"final"}),
    "thought": frozenset(),
    "action_result": frozenset({"id", "status", "latency_ms"}),
    "context": frozenset({"feed"}),
}
"""Attributes defined per element; others give an ``unknown_attribute`` warning."""

ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
"""What an action id looks like (so that ``$id`` references can name it)."""

_ATTR = re.compile(
    r"""([^\s=/>"'<]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>=`]+)))?"""
)
PLAIN_ATTRIBUTES = r'(?:\s+[A-Za-z_][\w.:-]*="[^"<&\t\n\r]*")*\s*'
"""Attributes as the usual ``name="value"`` pairs with nothing to decode (a pattern)."""
_SIMPLE = re.compile(PLAIN_ATTRIBUTES)
_PAIR = re.compile(r'([A-Za-z_][\w.:-]*)="([^"]*)"')
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

Problem = tuple[str, str]
"""A ``(code, message)`` pair found while reading a tag."""


def parse_attributes(inside: str, plain: bool = False) -> tuple[dict[str, str], list[Problem]]:
    """Attributes of a tag from the text between its name and ``>``, with any problems;
    ``plain`` says ``inside`` is already known to be plain ``name="value"`` pairs."""
    if not inside:
        return {}, []
    if plain or _SIMPLE.fullmatch(inside):  # the usual name="value" ... with nothing to decode
        pairs = _PAIR.findall(inside)
        simple = dict(pairs)
        if len(simple) == len(pairs):
            return simple, []
    attrs: dict[str, str] = {}
    problems: list[Problem] = []
    junk: list[str] = []  # text that is no attribute
    bare: list[str] = []  # names without a value
    pos = 0
    for m in _ATTR.finditer(inside):
        junk.append(inside[pos : m.start()].strip())
        pos = m.end()
        name = m.group(1)
        value = next((g for g in m.group(2, 3, 4) if g is not None), None)
        if value is None:
            bare.append(name)
        elif name in attrs:
            problems.append((codes.BAD_ATTRIBUTE, f"attribute {name!r} repeated; first kept"))
        else:
            attrs[name] = normalize_attribute(value)
    junk.append(inside[pos:].strip())
    junk = [j for j in junk if j]
    if junk:
        text = " ".join(junk + bare)
        problems.append((codes.BAD_ATTRIBUTE, f"unreadable text {text[:40]!r} in the tag"))
    elif bare:
        problems.append((codes.BAD_ATTRIBUTE, f"attribute without a value: {' '.join(bare)}"))
    return attrs, problems


def unknown_attributes(element: str, attrs: dict[str, str]) -> list[Problem]:
    """Warnings for attributes the protocol does not define on ``element``."""
    known = KNOWN_ATTRIBUTES[element]
    return [
        (codes.UNKNOWN_ATTRIBUTE, f"unknown attribute {k!r} on <{element}>")
        for k in attrs
        if k not in known
    ]


def read_final(attrs: dict[str, str]) -> tuple[bool, list[Problem]]:
    """The ``final`` flag of a ``<response>`` (true when absent)."""
    raw = attrs.get("final")
    if raw is None:
        return True, []
    value = raw.strip().lower()
    if value in _TRUE:
        return True, []
    if value in _FALSE:
        return False, []
    return False, [(codes.BAD_ATTRIBUTE, f"final={raw!r} is not true or false; read as false")]


def read_number(raw: str | None) -> float | None:
    """A finite float from an attribute value, or None."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class ActionHeader(msgspec.Struct, frozen=True):
    """What an ``<action>`` opening tag says, checked and normalised (a struct: cheap to make)."""

    id: str
    type: str
    name: str
    mode: str
    depends_on: tuple[str, ...]
    output_key: str | None
    timeout: float | None
    retry: int | None
    attributes: dict[str, str]
    problems: list[Problem] = msgspec.field(default_factory=list)


def generated_id(ordinal: int, used: Container[str]) -> str:
    """The id of the ``ordinal``-th action when it names none: ``a<ordinal>``, made unique."""
    candidate = f"a{ordinal}"
    suffix = 2
    while candidate in used:
        candidate = f"a{ordinal}_{suffix}"
        suffix += 1
    return candidate


def read_action(
    attrs: dict[str, str], problems: list[Problem], ordinal: int, used: Container[str]
) -> ActionHeader:
    """Check an action's attributes; ``problems`` (from the tag) are extended, never raised."""
    problems = list(problems)
    if not ACTION_ATTRIBUTES.issuperset(attrs):
        problems += unknown_attributes("action", attrs)
    action_id = attrs.get("id", "").strip()
    if not action_id:
        action_id = generated_id(ordinal, used)
    elif not ID_PATTERN.match(action_id):
        problems.append(
            (codes.BAD_ATTRIBUTE, f"id {action_id!r} is not an identifier; $refs cannot name it")
        )
    action_type = attrs.get("type", "").strip()
    if action_type not in ACTION_TYPES:
        if not action_type:
            problems.append((codes.MISSING_ATTRIBUTE, f"action {action_id!r} has no type"))
        else:
            problems.append(
                (
                    codes.UNKNOWN_TYPE,
                    f"action {action_id!r} has unknown type {action_type!r} "
                    f"(known: {', '.join(ACTION_TYPES)})",
                )
            )
    name = attrs.get("name", "").strip()
    if not name:
        problems.append((codes.MISSING_ATTRIBUTE, f"action {action_id!r} has no name"))
    mode = attrs.get("mode", DEFAULT_MODE).strip()
    if mode not in ACTION_MODES:
        problems.append(
            (codes.BAD_ATTRIBUTE, f"mode {mode!r} is not one of {', '.join(ACTION_MODES)}")
        )
    timeout = retry = None
    if "timeout" in attrs:
        timeout = read_number(attrs["timeout"])
        if timeout is None or timeout <= 0:
            timeout = None
            message = f"timeout={attrs['timeout']!r} is not a positive number; ignored"
            problems.append((codes.BAD_ATTRIBUTE, message))
    if "retry" in attrs:
        retry = _read_retry(attrs["retry"])
        if retry is None:
            message = f"retry={attrs['retry']!r} is not a whole number >= 0; ignored"
            problems.append((codes.BAD_ATTRIBUTE, message))
    depends_on = attrs.get("depends_on")
    return ActionHeader(
        id=action_id,
        type=action_type,
        name=name,
        mode=mode,
        depends_on=_read_depends_on(depends_on) if depends_on else (),
        output_key=attrs.get("output_key", "").strip() or None,
        timeout=timeout,
        retry=retry,
        attributes=attrs,
        problems=problems,
    )


def _read_retry(raw: str) -> int | None:
    raw = raw.strip()
    if not raw.isdecimal() or not raw.isascii():
        return None
    return int(raw)


def _read_depends_on(raw: str) -> tuple[str, ...]:
    ids = (part.strip().lstrip("$").strip() for part in raw.split(","))
    return tuple(dict.fromkeys(i for i in ids if i))
