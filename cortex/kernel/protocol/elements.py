"""Turning a finished element (its opening tag and raw body) into events."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from cortex.kernel.protocol import codes
from cortex.kernel.protocol.attributes import ActionHeader, Problem, read_number
from cortex.kernel.protocol.events import (
    ActionDeclared,
    ActionResult,
    ContextBlock,
    Event,
    ParseError,
)
from cortex.kernel.protocol.markup import decode_body
from cortex.kernel.protocol.refs import find_refs

SNIPPET = 80
"""Characters of input quoted in a ``ParseError.snippet``."""


class End:
    """How an element body ended (plain constants, as ``tags.TagKind``)."""

    CLOSED = "closed"
    IMPLICIT = "implicit"
    """Another protocol tag started first."""
    FALLBACK = "fallback"
    """At the first ``</action>``, first read as part of a JSON string (or CDATA)."""
    EOF = "eof"


class OpenElement(msgspec.Struct, frozen=True):
    """An element whose body is being read: ``action``, ``action_result`` or ``context``."""

    name: str
    position: int
    body_start: int
    tag: str
    attrs: dict[str, str]
    problems: list[Problem]
    header: ActionHeader | None
    """Set for ``<action>``."""
    duplicate: bool
    parent: str | None
    """``"thought"``, ``"response"`` or None (top level)."""

    @property
    def id(self) -> str | None:
        """The action's id, or the result's ``id`` attribute."""
        if self.header is not None:
            return self.header.id
        return self.attrs.get("id") if self.name == "action_result" else None


def error(
    code: str, message: str, offset: int, snippet: str = "", action_id: str | None = None
) -> ParseError:
    """A ``ParseError`` with its snippet cut to ``SNIPPET`` characters."""
    return ParseError(
        code=code, message=message, action_id=action_id, offset=offset, snippet=snippet[:SNIPPET]
    )


def header_errors(element: OpenElement) -> list[Event]:
    """Warnings about an action's opening tag (reported when its body ends)."""
    if element.header is None:
        return []
    return [
        error(code, message, element.position, element.tag, element.header.id)
        for code, message in element.header.problems
    ]


def finish(
    element: OpenElement, raw: str, end: int, how: str, *, model_output: bool
) -> list[Event]:
    """The events for an element whose raw body ended at stream offset ``end``."""
    if element.header is not None:
        return _finish_action(element, element.header, raw, end, how)
    return _finish_block(element, raw, how, model_output)


def _finish_action(
    element: OpenElement, header: ActionHeader, raw: str, end: int, how: str
) -> list[Event]:
    aid = header.id
    at, snippet = element.position, element.tag
    out = header_errors(element)
    if element.duplicate:
        message = f"action id {aid!r} is already used in this output; this action is ignored"
        out.append(error(codes.DUPLICATE_ID, message, at, snippet, aid))
        return out
    body = decode_body(raw)
    params, problem, where = parse_json(body)
    unclosed = how is End.IMPLICIT or how is End.EOF
    if problem is not None:
        if unclosed:
            code = codes.UNCLOSED_ACTION
            message = f"action {aid!r} has no </action> and its body is not complete JSON"
        else:
            code = codes.INVALID_JSON
            message = f"action {aid!r}: body is not valid JSON"
        start = max(0, where - SNIPPET // 2)
        out.append(
            error(code, f"{message} ({problem})", element.body_start + where, body[start:], aid)
        )
        return out
    if unclosed:
        message = f"action {aid!r} has no </action>; delivered as its JSON body is complete"
        out.append(error(codes.UNCLOSED_TAG, message, at, snippet, aid))
    elif how is End.FALLBACK:
        message = f"action {aid!r}: body read up to its first </action> (unclosed CDATA?)"
        out.append(error(codes.UNCLOSED_TAG, message, at, snippet, aid))
    out.append(
        ActionDeclared(
            id=aid,
            type=header.type,
            name=header.name,
            mode=header.mode,
            depends_on=header.depends_on,
            params=params,
            refs=find_refs(params) if "$" in body else (),
            raw=raw,
            body=body,
            position=at,
            end=end,
            parent=element.parent,
            output_key=header.output_key,
            timeout=header.timeout,
            retry=header.retry,
            attributes=header.attributes,
        )
    )
    return out


def _finish_block(element: OpenElement, raw: str, how: str, model_output: bool) -> list[Event]:
    """An ``<action_result>`` or ``<context>`` block: an event only outside model output."""
    attrs, name = element.attrs, element.name
    at, snippet, block_id = element.position, element.tag, element.id
    if model_output:
        message = f"<{name}> blocks are written by the runtime, never by the model; ignored"
        return [error(codes.RUNTIME_BLOCK, message, at, snippet, block_id)]
    problems = list(element.problems)
    required = ("id", "status") if name == "action_result" else ("feed",)
    problems += [
        (codes.MISSING_ATTRIBUTE, f"<{name}> has no {key}") for key in required if key not in attrs
    ]
    latency = read_number(attrs.get("latency_ms"))
    if "latency_ms" in attrs and latency is None:
        problems.append((codes.BAD_ATTRIBUTE, f"latency_ms={attrs['latency_ms']!r} ignored"))
    out: list[Event] = [error(code, msg, at, snippet, block_id) for code, msg in problems]
    if how is not End.CLOSED:
        message = f"<{name}> was never closed; ignored"
        out.append(error(codes.UNCLOSED_TAG, message, at, snippet, block_id))
        return out
    body = decode_body(raw)
    if name == "action_result":
        out.append(
            ActionResult(
                id=attrs.get("id", ""),
                status=attrs.get("status", ""),
                latency_ms=latency,
                body=body,
                position=at,
                attributes=attrs,
            )
        )
    else:
        feed = attrs.get("feed", "")
        out.append(ContextBlock(feed=feed, body=body, position=at, attributes=attrs))
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: str) -> tuple[Any, str | None, int]:
    """``(value, None, 0)`` for a JSON body (empty: ``{}``), else ``(None, problem, index)``."""
    if not body.strip():
        return {}, None, 0
    try:
        return msgspec.json.decode(body), None, 0
    except msgspec.DecodeError as exc:
        fast_problem = str(exc)
    except RecursionError:
        return None, "nested too deeply", 0
    try:  # msgspec rejects some valid JSON (huge integers); the stdlib also explains failures
        return json.loads(body, parse_constant=_no_constants), None, 0
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg}: line {exc.lineno} column {exc.colno}", exc.pos
    except (ValueError, RecursionError):
        return None, fast_problem, 0
