"""Test helpers for GBNF grammars: a reader of GBNF text, a random sampler and a recogniser.

They work on the grammar *text*, independently of how ``cortex.kernel.protocol.grammar``
built it, so what the tests sample and check is what llama.cpp is given. Only the GBNF
subset llama.cpp documents is read: rules, literals, character classes (with ranges and
negation), ``.``, groups, ``|``, ``? * + {m} {m,} {m,n}`` and ``#`` comments.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache

# ---- reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    """A literal string."""

    text: str


@dataclass(frozen=True)
class Cls:
    """A character class: ranges of code points, maybe negated."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool

    def has(self, ch: str) -> bool:
        """Whether the class matches ``ch``."""
        inside = any(lo <= ord(ch) <= hi for lo, hi in self.ranges)
        return inside != self.negated


@dataclass(frozen=True)
class Ref:
    """A reference to a rule."""

    name: str


@dataclass(frozen=True)
class Seq:
    """Items in sequence."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    """Alternatives."""

    options: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    """A repetition ``{lo,hi}`` (``hi`` None: unbounded)."""

    item: Node
    lo: int
    hi: int | None


Node = Lit | Cls | Ref | Seq | Alt | Rep

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}
_HEX = {"x": 2, "u": 4, "U": 8}


class _Reader:
    """Recursive-descent reader of GBNF text."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def rules(self) -> dict[str, Node]:
        out: dict[str, Node] = {}
        self.space(newlines=True)
        while self.i < len(self.s):
            name = self.name()
            self.space()
            assert self.s.startswith("::=", self.i), f"expected ::= at {self.i}"
            self.i += 3
            assert name not in out, f"rule {name} defined twice"
            out[name] = self.alt()
            self.space(newlines=True)
        return out

    def space(self, newlines: bool = False) -> None:
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            elif ch in " \t" or (newlines and ch in "\r\n"):
                self.i += 1
            else:
                return

    def name(self) -> str:
        m = re.compile(r"[a-zA-Z0-9-]+").match(self.s, self.i)
        assert m, f"expected a rule name at {self.i}: {self.s[self.i : self.i + 20]!r}"
        self.i = m.end()
        return m.group()

    def alt(self, nested: bool = False) -> Node:
        options = [self.seq(nested)]
        while self.s.startswith("|", self.i):
            self.i += 1
            self.space(newlines=True)
            options.append(self.seq(nested))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def seq(self, nested: bool) -> Node:
        items: list[Node] = []
        while True:
            self.space(newlines=nested)
            if self.i >= len(self.s) or self.s[self.i] in "|)\n\r":
                break
            items.append(self.postfix(self.atom()))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def atom(self) -> Node:
        ch = self.s[self.i]
        if ch == '"':
            self.i += 1
            out = []
            while self.s[self.i] != '"':
                out.append(self.char())
            self.i += 1
            return Lit("".join(out))
        if ch == "[":
            self.i += 1
            negated = self.s.startswith("^", self.i)
            self.i += negated
            ranges = []
            while self.s[self.i] != "]":
                lo = self.char()
                hi = lo
                if self.s[self.i] == "-" and self.s[self.i + 1] != "]":
                    self.i += 1
                    hi = self.char()
                ranges.append((ord(lo), ord(hi)))
            self.i += 1
            return Cls(tuple(ranges), negated)
        if ch == "(":
            self.i += 1
            self.space(newlines=True)
            node = self.alt(nested=True)
            self.space(newlines=True)
            assert self.s[self.i] == ")", f"expected ) at {self.i}"
            self.i += 1
            return node
        if ch == ".":
            self.i += 1
            return Cls((), True)
        name = self.name()
        assert not self.s.startswith("::=", self.i), "rule definition inside a sequence"
        return Ref(name)

    def char(self) -> str:
        ch = self.s[self.i]
        if ch != "\\":
            self.i += 1
            return ch
        esc = self.s[self.i + 1]
        if esc in _HEX:
            n = _HEX[esc]
            code = self.s[self.i + 2 : self.i + 2 + n]
            self.i += 2 + n
            return chr(int(code, 16))
        assert esc in _ESCAPES, f"unknown escape \\{esc}"
        self.i += 2
        return _ESCAPES[esc]

    def postfix(self, node: Node) -> Node:
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch in "?*+":
                self.i += 1
                node = Rep(node, int(ch == "+"), 1 if ch == "?" else None)
            elif ch == "{":
                m = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.s, self.i)
                assert m, f"bad repetition at {self.i}"
                self.i = m.end()
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
                node = Rep(node, lo, hi)
            else:
                return node
        return node


class Grammar:
    """A GBNF grammar read from text: sample strings from it, or check a string against it."""

    def __init__(self, text: str) -> None:
        self.rules = _Reader(text).rules()
        assert "root" in self.rules, "no root rule"
        for ref in _refs(self.rules):
            assert ref in self.rules, f"undefined rule {ref}"
        self._height = _heights(self.rules)

    # ---- recognising ----------------------------------------------------------------

    def accepts(self, text: str) -> bool:
        """Whether the grammar derives exactly ``text`` from ``root``."""

        @cache
        def rule_ends(name: str, pos: int) -> frozenset[int]:
            return frozenset(ends(self.rules[name], pos))

        def ends(node: Node, pos: int) -> set[int]:
            if isinstance(node, Lit):
                return {pos + len(node.text)} if text.startswith(node.text, pos) else set()
            if isinstance(node, Cls):
                return {pos + 1} if pos < len(text) and node.has(text[pos]) else set()
            if isinstance(node, Ref):
                return set(rule_ends(node.name, pos))
            if isinstance(node, Seq):
                current = {pos}
                for item in node.items:
                    current = {e for p in current for e in ends(item, p)}
                    if not current:
                        break
                return current
            if isinstance(node, Alt):
                return {e for option in node.options for e in ends(option, pos)}
            out = {pos} if node.lo == 0 else set()
            frontier, seen, count = {pos}, {pos}, 0
            while frontier and (node.hi is None or count < node.hi):
                frontier = {e for p in frontier for e in ends(node.item, p)}
                count += 1
                if node.hi is None and count > node.lo:
                    frontier -= seen
                    seen |= frontier
                if count >= node.lo:
                    out |= frontier
            return out

        return len(text) in rule_ends("root", 0)

    # ---- sampling -------------------------------------------------------------------

    def sample(self, rng: random.Random, *, depth: int = 40, spread: int = 4) -> str:
        """A random string the grammar derives; deep in the derivation, shortest choices win."""
        out: list[str] = []

        def gen(node: Node, d: int) -> None:
            if isinstance(node, Lit):
                out.append(node.text)
            elif isinstance(node, Cls):
                out.append(rng.choice([c for c in _ALPHABET if node.has(c)]))
            elif isinstance(node, Ref):
                gen(self.rules[node.name], d + 1)
            elif isinstance(node, Seq):
                for item in node.items:
                    gen(item, d)
            elif isinstance(node, Alt):
                by_height = sorted(node.options, key=lambda o: _node_height(o, self._height))
                if d >= depth:
                    gen(by_height[0], d)
                elif rng.random() < 0.5:  # favour the longer choices: richer samples
                    gen(rng.choice(by_height[1:] or by_height), d)
                else:
                    gen(rng.choice(node.options), d)
            else:
                top = node.lo if d >= depth else node.lo + spread
                hi = top if node.hi is None else min(node.hi, top)
                for _ in range(rng.randint(node.lo, hi)):
                    gen(node.item, d + 1)

        gen(self.rules["root"], 0)
        return "".join(out)


_ALPHABET = [chr(c) for c in range(0x20, 0x7F)] + list("\t\n\x01\x1f\x7féß→中😀") + ["\u2028"]
"""Characters the sampler draws from (ASCII, some controls, some non-ASCII)."""


def _refs(rules: dict[str, Node]) -> set[str]:
    """Every rule name referenced anywhere."""
    found: set[str] = set()

    def walk(node: Node) -> None:
        if isinstance(node, Ref):
            found.add(node.name)
        elif isinstance(node, Seq | Alt):
            for child in node.items if isinstance(node, Seq) else node.options:
                walk(child)
        elif isinstance(node, Rep):
            walk(node.item)

    for node in rules.values():
        walk(node)
    return found


def _node_height(node: Node, heights: dict[str, float]) -> float:
    """Least derivation depth of a node given rule heights."""
    if isinstance(node, Lit | Cls):
        return 0
    if isinstance(node, Ref):
        return heights[node.name] + 1
    if isinstance(node, Seq):
        return max((_node_height(i, heights) for i in node.items), default=0)
    if isinstance(node, Alt):
        return min(_node_height(o, heights) for o in node.options)
    return 0 if node.lo == 0 else _node_height(node.item, heights) + 1


def _heights(rules: dict[str, Node]) -> dict[str, float]:
    """Least derivation depth of every rule (a fixpoint; inf for rules deriving nothing)."""
    heights = {name: float("inf") for name in rules}
    changed = True
    while changed:
        changed = False
        for name, node in rules.items():
            h = _node_height(node, heights)
            if h < heights[name]:
                heights[name], changed = h, True
    return heights
