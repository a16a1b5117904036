"""Load YAML and keep the line of every node, so manifest errors can name file, line and field."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from cortex.errors import ManifestError

Locator = Callable[[Sequence[str | int]], int]
"""Maps a field path such as ``("permissions", "network", 0)`` to a 1-based line number."""


def load_yaml_with_lines(path: str | Path) -> tuple[Any, Locator]:
    """Parse one YAML document; return its data and a locator from field paths to lines.

    The locator walks the composed node tree as far as the path exists and returns the line
    of the deepest node reached (a missing key reports the line of its parent mapping).
    Unreadable files and YAML syntax errors raise ``ManifestError`` naming file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc.strerror or exc}") from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ManifestError(f"{path}:{line}: invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}:1: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()

    def locate(field_path: Sequence[str | int]) -> int:
        """Return the 1-based line of the deepest node on ``field_path``."""
        node = root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for part in field_path:
            child = _child(node, part)
            if child is None:
                break
            line_node, node = child
            line = line_node.start_mark.line + 1
        return line

    return data, locate


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """The (node to report, node to descend into) for one path step, or None if absent."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item, item
    return None
