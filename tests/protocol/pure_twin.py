"""Parse inputs with the pure-Python source of the protocol package, ignoring compiled modules.

Run as a script (``python -m tests.protocol.pure_twin``): reads a JSON list of
``[pieces, options]`` on stdin and writes, for each, the events of feeding the pieces and
closing, as JSON. The compiled build must give exactly the same (tests/protocol/test_compiled.py).
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
from pathlib import Path
from typing import Any

import cortex.kernel

PACKAGE = "cortex.kernel.protocol"


class SourceOnly:
    """A meta path finder that loads the protocol package's modules from their .py files only."""

    def __init__(self) -> None:
        directory = Path(cortex.kernel.__file__).parent / "protocol"
        self.finder = importlib.machinery.FileFinder(
            str(directory), (importlib.machinery.SourceFileLoader, [".py"])
        )

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """The source spec of a module of the protocol package (None for any other module)."""
        if not name.startswith(PACKAGE + "."):
            return None
        return self.finder.find_spec(name)


def main() -> None:
    """Parse each ``[pieces, options]`` of stdin with the source modules; print the events."""
    sys.meta_path.insert(0, SourceOnly())
    import msgspec

    from cortex.kernel.protocol import parser as parser_module

    assert parser_module.__file__.endswith(".py"), parser_module.__file__
    results = []
    for pieces, options in json.load(sys.stdin):
        parser = parser_module.Parser(**options)
        events = []
        for piece in pieces:
            events += parser.feed(piece)
        events += parser.close()
        results.append(json.loads(msgspec.json.encode(events)))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
