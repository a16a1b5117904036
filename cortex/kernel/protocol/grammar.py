"""GBNF grammar (llama.cpp) admitting only valid Cortex protocol output for a set of tools.

What the grammar admits (see docs/grammar.md)::

    output   := (segment action)* segment final           (whitespace between elements)
    segment  := [thought] [interim]
    thought  := "<thought>" text (action text)* "</thought>"
    action   := '<action type="tool" name="NAME" id="aN" mode="sync|async|fire_and_forget"'
                [' depends_on="aI,aJ"'] '>' JSON '</action>'
    interim  := '<response final="false">' text '</response>'
    final    := '<response final="true">' text '</response>'      (always last; nothing follows)

- ``text`` never contains ``<`` or ``&`` (so it cannot open a bogus tag or entity).
- Action ids are ``a1``, ``a2``, ... in declaration order (the ids the parser gives actions
  without one), so they are unique by construction and ``depends_on`` names only actions
  declared before. At most ``max_actions`` actions are admitted; with at most one thought
  and one interim response between two top-level actions, the output's length is bounded
  (given ``max_text`` and bounded schemas), so a looping model cannot run past max_tokens.
- The JSON body follows the tool's params schema; JSON strings never contain raw ``<``,
  ``&`` or control characters, nor ``\\u`` escapes of lone surrogates (``\\u003c`` is fine).
  Supported schema keywords are listed in ``_SUPPORTED``; a (sub)schema using any other
  keyword, or a bound too large for llama.cpp's repetition limit, falls back to "any JSON
  value" (any JSON object for the top-level params). ``format`` is an annotation only, as
  JSON Schema has it by default.
- ``resume_from``: the assistant output generated so far (with any injected
  ``<action_result>``/``<context>`` blocks); the grammar then admits only its continuation,
  starting inside the open thought or response if one is open, with ordinals and the action
  budget carried on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from cortex.errors import ConfigError
from cortex.specs import ToolSpec

DEFAULT_MAX_ACTIONS = 16
"""Actions admitted per output when ``max_actions`` is None (ordinals need a bound)."""

_REPEAT_LIMIT = 1000  # llama.cpp refuses repetitions with bounds near 2000
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "format", "$schema", "$id", "$comment"}
)
_SUPPORTED = _ANNOTATIONS | {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "minLength", "maxLength", "minItems", "maxItems", "minimum", "anyOf",
}  # fmt: skip

_PRIMITIVES = r"""
ws ::= [ \t\n]{0,3}
jws ::= " "?
jchar ::= [^"\\<&\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" jcode)
jcode ::= [0-9a-cA-CeEfF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}
jstring ::= "\"" jchar* "\""
jint ::= "-"? jnat
jnat ::= "0" | [1-9] [0-9]{0,15}
jfrac ::= ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,3})?
jnumber ::= jint jfrac
jbool ::= "true" | "false"
jvalue ::= jobject | jarray | jstring | jnumber | jbool | "null"
jobject ::= "{" jws (jmember ("," jws jmember)*)? jws "}"
jmember ::= jstring jws ":" jws jvalue
jarray ::= "[" jws (jvalue ("," jws jvalue)*)? jws "]"
mode ::= "sync" | "async" | "fire_and_forget"
"""


def protocol_grammar(
    tools: Sequence[ToolSpec],
    *,
    allow_thought: bool = True,
    max_actions: int | None = None,
    max_text: int | None = None,
    resume_from: str = "",
    first_ordinal: int = 1,
) -> str:
    """Return GBNF text admitting only protocol output that calls ``tools`` with valid params.

    Action ids are ``a<n>`` from ``first_ordinal`` on (a later turn continues the run's numbering).
    """
    budget = DEFAULT_MAX_ACTIONS if max_actions is None else max_actions
    if budget < 0 or (max_text is not None and not 0 < max_text <= _REPEAT_LIMIT):
        raise ConfigError(f"bad grammar bounds: max_actions={max_actions}, max_text={max_text}")
    if first_ordinal < 1:
        raise ConfigError(f"first_ordinal must be at least 1, not {first_ordinal}")
    start, first = _resume_point(resume_from)
    first += first_ordinal - 1
    budget += first_ordinal - 1
    if start == "thought" and not allow_thought:
        raise ConfigError("resume_from ends inside a <thought> but allow_thought is False")
    b = _Builder()
    b.rules["text"] = "[^<&]*" if max_text is None else f"[^<&]{{0,{max_text}}}"
    calls = [_tool_call(b, i, tool) for i, tool in enumerate(tools)]
    last = max(first, budget + 1)
    for n in range(first, last + 1):
        # A segment before the n-th action: [thought] [interim] (action | final).
        can_act = bool(calls) and n <= budget  # then n + 1 <= last
        end = ["final"]
        if can_act:
            attrs = f'"\\" id=\\"a{n}\\" mode=\\"" mode "\\""{_deps(n)}'
            alts = " | ".join(f"{name} attrs-{n} {body}" for name, body in calls)
            b.rules[f"attrs-{n}"] = attrs
            b.rules[f"action-{n}"] = f'"<action type=\\"tool\\" name=\\"" ({alts})'
            end.append(f"action-{n} ws top-{n + 1}")
        if allow_thought:
            th = [f'"</thought>" ws mid-{n}']
            if can_act:
                th.append(f"action-{n} text th-{n + 1}")
            b.rules[f"top-{n}"] = f'"<thought>" text th-{n} | mid-{n}'
            b.rules[f"th-{n}"] = " | ".join(th)
        else:
            b.rules[f"top-{n}"] = f"mid-{n}"
        b.rules[f"mid-{n}"] = f"interim ws end-{n} | end-{n}"
        b.rules[f"end-{n}"] = " | ".join(end)
    b.rules["interim"] = '"<response final=\\"false\\">" text "</response>"'
    b.rules["final"] = '"<response final=\\"true\\">" text "</response>"'
    root = {
        "top": f"ws top-{first}",
        "thought": f"text th-{first}",
        "mid": f"ws mid-{first}",
        "interim": f'text "</response>" ws end-{first}',
        "end": f"ws end-{first}",
        "final": 'text "</response>"',
    }[start]
    return b.render(root)


def _deps(n: int) -> str:
    """GBNF for the optional depends_on attribute of the action with ordinal ``n``."""
    if n <= 1:
        return ""
    dep = "(" + " | ".join(f'"a{i}"' for i in range(1, n)) + ")"
    more = f' ("," {dep}){{0,{n - 2}}}' if n > 2 else ""
    return f' (" depends_on=\\"" {dep}{more} "\\"")?'


def _tool_call(b: _Builder, index: int, tool: ToolSpec) -> tuple[str, str]:
    """Return a tool's name literal and the rule for the rest of its action (params, close)."""
    params = _Schema(b, f"t{index}").params(tool.params_schema)
    body = b.add(f"t{index}-body", f'">" {params} "</action>"')
    return _literal(_xml_attr(tool.name)), body


def _resume_point(prefix: str) -> tuple[str, int]:
    """Where the output so far leaves off, as a grammar state, and the next action ordinal.

    States: 'top' (a segment may start with a thought), 'thought' (inside one), 'mid'
    (after a thought), 'interim' or 'final' (inside a response), 'end' (after an interim).
    """
    text = re.sub(r"<(action_result|context)\b.*?</\1>", "", prefix, flags=re.S)
    ordinal = len(re.findall(r"<action\b", text)) + 1
    if text.rfind("<") > text.rfind(">"):
        raise ConfigError("cannot resume a protocol grammar in the middle of a tag")
    if text.rfind("<action") > text.rfind("</action>"):
        raise ConfigError("cannot resume a protocol grammar inside an <action> body")
    if text.rfind("<thought>") > text.rfind("</thought>"):
        return "thought", ordinal
    tags = re.findall(r"<(/?)(thought|response|action)\b([^>]*)>", text)
    if not tags or tags[-1][1] == "action":
        return "top", ordinal
    closing, name, attrs = tags[-1]
    if name == "thought":
        return "mid", ordinal
    if not closing:
        return ("interim" if 'final="false"' in attrs else "final"), ordinal
    opened = [a for c, n, a in tags if n == "response" and not c]
    if not opened or 'final="false"' not in opened[-1]:
        raise ConfigError("the output so far already ends with a final response")
    return "end", ordinal


class _Builder:
    """Collects named GBNF rules, reusing one rule for identical bodies."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}

    def add(self, hint: str, body: str) -> str:
        """Add a rule (or reuse an identical one) and return its name."""
        if body in self._by_body:
            return self._by_body[body]
        base = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-") or "r"
        name, i = base, 1
        while name in self.rules or name in _PRIMITIVE_NAMES:
            i += 1
            name = f"{base}-{i}"
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def render(self, root: str) -> str:
        """Return the whole grammar text with ``root`` as its start rule."""
        lines = [f"root ::= {root}"] + [f"{k} ::= {v}" for k, v in self.rules.items()]
        return "\n".join(lines) + "\n" + _PRIMITIVES.lstrip("\n")


_PRIMITIVE_NAMES = frozenset(re.findall(r"^([a-z-]+) ::=", _PRIMITIVES, flags=re.M))


class _Schema:
    """Compiles JSON schemas into GBNF expressions for one tool's params."""

    def __init__(self, builder: _Builder, prefix: str) -> None:
        self.b = builder
        self.prefix = prefix

    def params(self, schema: Any) -> str:
        """Rule for the top-level params: the schema, or any JSON object if it falls back."""
        expr = self.value(schema, "p")
        if expr == "jvalue":
            return "jobject"
        return expr if _is_name(expr) else self.b.add(f"{self.prefix}-params", expr)

    def value(self, schema: Any, path: str) -> str:
        """GBNF expression for any value valid against ``schema`` (``jvalue`` if unsupported)."""
        if schema is True or schema == {}:
            return "jvalue"
        if not isinstance(schema, dict) or not set(schema) <= _SUPPORTED:
            return "jvalue"
        if "const" in schema:
            return _json_literal(schema["const"])
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                return "jvalue"
            return "(" + " | ".join(_json_literal(v) for v in schema["enum"]) + ")"
        if "anyOf" in schema:
            if set(schema) - _ANNOTATIONS != {"anyOf"} or not schema["anyOf"]:
                return "jvalue"
            alts = [self.value(s, f"{path}-{i}") for i, s in enumerate(schema["anyOf"])]
            return "jvalue" if "jvalue" in alts else "(" + " | ".join(alts) + ")"
        types = schema.get("type")
        if types is None:
            return "jvalue"
        if isinstance(types, list):
            alts = [self.value({**schema, "type": t}, f"{path}-{t}") for t in types]
            return "jvalue" if not alts or "jvalue" in alts else "(" + " | ".join(alts) + ")"
        return self._typed(types, schema, path)

    def _typed(self, kind: Any, schema: dict[str, Any], path: str) -> str:
        """GBNF expression for a schema with a single ``type``."""
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return self._number(kind, schema.get("minimum"))
        if kind == "boolean":
            return "jbool"
        if kind == "null":
            return '"null"'
        if kind == "array":
            return self._array(schema, path)
        if kind == "object":
            return self._object(schema, path)
        return "jvalue"

    def _string(self, schema: dict[str, Any]) -> str:
        """A JSON string within minLength/maxLength."""
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if not _bounds_ok(lo, hi):
            return "jvalue"
        if lo == 0 and hi is None:
            return "jstring"
        rep = f"{{{lo},}}" if hi is None else f"{{{lo},{hi}}}"
        return self.b.add(f"str-{lo}-{hi}", f'"\\"" jchar{rep} "\\""')

    def _number(self, kind: str, minimum: Any) -> str:
        """An integer or number, optionally with minimum 0 (or 1 for integers)."""
        if minimum is None:
            return "jint" if kind == "integer" else "jnumber"
        usable = minimum == 0 or (minimum == 1 and kind == "integer")
        if isinstance(minimum, bool) or not usable:
            return "jvalue"
        nat = "jnat" if minimum == 0 else "[1-9] [0-9]{0,15}"
        return nat if kind == "integer" else "(jnat jfrac)"

    def _array(self, schema: dict[str, Any], path: str) -> str:
        """A JSON array of ``items`` within minItems/maxItems."""
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        items = schema.get("items", True)
        if not _bounds_ok(lo, hi) or isinstance(items, list):
            return "jvalue"
        if hi == 0:
            return '"[" jws "]"'
        item = self.value(items, f"{path}-item")
        if lo == 0 and hi is None:
            inner = f'({item} ("," jws {item})*)?'
        else:
            rest_hi = "" if hi is None else str(hi - 1)
            seq = f'{item} ("," jws {item}){{{max(lo - 1, 0)},{rest_hi}}}'
            inner = f"({seq})?" if lo == 0 else seq
        return self.b.add(f"{self.prefix}-{path}-array", f'"[" jws {inner} jws "]"')

    def _object(self, schema: dict[str, Any], path: str) -> str:
        """A JSON object: required properties first, then optional ones, nothing else."""
        props = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", True)
        if not isinstance(props, dict) or not isinstance(required, list):
            return "jvalue"
        if not props and not required:
            if extra is False:
                return '"{" jws "}"'
            if extra is True or extra == {}:
                return "jobject"
            member = f'jstring jws ":" jws {self.value(extra, f"{path}-extra")}'
            body = f'"{{" jws ({member} ("," jws {member})*)? jws "}}"'
            return self.b.add(f"{self.prefix}-{path}-map", body)
        names = [n for n in props if n in required] + [n for n in required if n not in props]
        optional = [n for n in props if n not in required]
        member = {
            n: f'{_json_literal(n)} jws ":" jws {self.value(props.get(n, True), f"{path}-{n}")}'
            for n in names + optional
        }
        if names:
            parts = [member[names[0]]] + [f'"," jws {member[n]}' for n in names[1:]]
            parts += [f'("," jws {member[n]})?' for n in optional]
            inner = " ".join(parts)
        else:
            # No required property: choose the first one present, the later ones optional.
            alts = []
            for i, n in enumerate(optional):
                later = " ".join(f'("," jws {member[m]})?' for m in optional[i + 1 :])
                alts.append(f"{member[n]} {later}".strip())
            inner = "(" + " | ".join(alts) + ")?"
        return self.b.add(f"{self.prefix}-{path}-obj", f'"{{" jws {inner} jws "}}"')


def _is_name(expr: str) -> bool:
    """Whether a GBNF expression is a bare rule name."""
    return re.fullmatch(r"[a-zA-Z0-9-]+", expr) is not None


def _bounds_ok(lo: Any, hi: Any) -> bool:
    """Whether min/max bounds are plain ints that llama.cpp can repeat."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi or 0)):
        return False
    return 0 <= lo <= _REPEAT_LIMIT and (hi is None or lo <= hi <= _REPEAT_LIMIT)


def _json_literal(value: Any) -> str:
    """GBNF literal for ``value`` as compact JSON with ``<`` and ``&`` escaped."""
    text = json.dumps(value, separators=(",", ":"))
    return _literal(text.replace("<", "\\u003c").replace("&", "\\u0026"))


def _xml_attr(value: str) -> str:
    """Escape a value for a double-quoted XML attribute."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _literal(text: str) -> str:
    """A GBNF string literal for ``text``."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
