"""The Cortex protocol: the incremental parser, its events, and ``$id`` reference resolution.

See docs/protocol.md. ``codes`` holds the ``ParseError.code`` values.
"""

from cortex.kernel.protocol import codes
from cortex.kernel.protocol.events import (
    EVENT_TYPES,
    ActionDeclared,
    ActionResult,
    ContextBlock,
    Event,
    ParseError,
    ResponseDelta,
    ThoughtDelta,
)
from cortex.kernel.protocol.parser import Parser
from cortex.kernel.protocol.refs import find_refs, resolve

__all__ = [
    "EVENT_TYPES",
    "ActionDeclared",
    "ActionResult",
    "ContextBlock",
    "Event",
    "ParseError",
    "Parser",
    "ResponseDelta",
    "ThoughtDelta",
    "codes",
    "find_refs",
    "resolve",
]
