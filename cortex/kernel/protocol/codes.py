"""The ``ParseError.code`` values, each with what the parser did about it."""

from __future__ import annotations

STRAY_TEXT = "stray_text"
STRAY_CLOSE_TAG = "stray_close_tag"
NESTED_TAG = "nested_tag"
UNCLOSED_TAG = "unclosed_tag"
BAD_TAG = "bad_tag"
INCOMPLETE_TAG = "incomplete_tag"
MISSING_ATTRIBUTE = "missing_attribute"
UNKNOWN_TYPE = "unknown_type"
BAD_ATTRIBUTE = "bad_attribute"
UNKNOWN_ATTRIBUTE = "unknown_attribute"
DUPLICATE_ID = "duplicate_id"
INVALID_JSON = "invalid_json"
BODY_TOO_LARGE = "body_too_large"
UNCLOSED_ACTION = "unclosed_action"
RUNTIME_BLOCK = "runtime_block"
CLOSED = "closed"
INTERNAL_ERROR = "internal_error"

DESCRIPTIONS: dict[str, str] = {
    STRAY_TEXT: "non-whitespace text outside any element; dropped",
    STRAY_CLOSE_TAG: "a closing tag with no matching open element; ignored",
    NESTED_TAG: "<thought> inside a thought; the inner tag is ignored",
    UNCLOSED_TAG: "an element ended without its closing tag (implied by the next element or "
    "the end of the stream); an action with a complete JSON body is still delivered",
    BAD_TAG: "an opening tag that cannot be read (a '<' inside it, or longer than max_pending); "
    "dropped",
    INCOMPLETE_TAG: "the stream ended inside an opening tag; dropped",
    MISSING_ATTRIBUTE: "a required attribute is missing; the element is still delivered",
    UNKNOWN_TYPE: "an action type outside the six known ones; delivered with its raw type",
    BAD_ATTRIBUTE: "an attribute value that cannot be used (mode kept raw, timeout/retry dropped)",
    UNKNOWN_ATTRIBUTE: "an attribute the protocol does not define; kept in `attributes`",
    DUPLICATE_ID: "an action id already used in this stream; the later action is not delivered",
    INVALID_JSON: "the action body is not valid JSON; the action is not delivered",
    BODY_TOO_LARGE: "a body longer than max_body; not delivered, skipped to its closing tag",
    UNCLOSED_ACTION: "an action never closed and its body is not complete JSON; not delivered",
    RUNTIME_BLOCK: "the model wrote a block only the runtime writes (<action_result>, "
    "<context>); dropped",
    CLOSED: "feed() after close(); the input is ignored",
    INTERNAL_ERROR: "a bug in the parser (never expected); its state is reset",
}
"""Every code with what the parser does about it (``docs/protocol.md`` has the full story)."""

DROPS_ACTION: frozenset[str] = frozenset(
    {DUPLICATE_ID, INVALID_JSON, BODY_TOO_LARGE, UNCLOSED_ACTION, BAD_TAG, INCOMPLETE_TAG}
)
"""Codes after which the action they name is not delivered (the others are warnings)."""
