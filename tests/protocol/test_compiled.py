"""The compiled parser (Cython, setup.py) is built, current, and behaves exactly as its source."""

from __future__ import annotations

import importlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.protocol.fuzzing import corpus, inputs
from tests.protocol.support import encode_events, golden_names, load_golden, parse_chunks, random_split

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from setup import COMPILED  # noqa: E402

MODULES = [path.removesuffix(".py").replace("/", ".") for path in COMPILED]


@pytest.mark.parametrize("name", MODULES)
def test_the_module_runs_compiled_and_current(name: str) -> None:
    """Each listed module is imported from its extension, built after its .py and .pxd changed."""
    module = importlib.import_module(name)
    built = Path(module.__file__)
    assert built.suffix == ".so", f"{name} runs from {built.name}: run `make build`"
    source = ROOT / (name.replace(".", "/") + ".py")
    newest = max(p.stat().st_mtime for p in (source, source.with_suffix(".pxd")) if p.exists())
    assert built.stat().st_mtime >= newest, f"{built.name} is older than its source: run `make build`"


def _cases() -> list[tuple[list[str], dict]]:
    """Goldens whole, per character and at random cuts, then mutated and random inputs."""
    rng = random.Random(11)
    cases: list[tuple[list[str], dict]] = []
    for name in golden_names():
        golden = load_golden(name)
        text = golden.text
        cases += [([text], golden.options), (list(text), golden.options)]
        cases += [(random_split(text, rng), golden.options) for _ in range(3)]
    for data in inputs(5, 1500, corpus()):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        options = {"max_body": 64, "max_pending": 32} if rng.random() < 0.1 else {}
        cases.append((random_split(text, rng), options))
    return cases


def test_the_compiled_build_gives_the_events_of_the_pure_python_source() -> None:
    """Every case parses to the same events with the extension and with the .py source."""
    cases = _cases()
    done = subprocess.run(
        [sys.executable, "-m", "tests.protocol.pure_twin"],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    pure = json.loads(done.stdout)
    assert len(pure) == len(cases)
    for (pieces, options), expected in zip(cases, pure, strict=True):
        assert encode_events(parse_chunks(pieces, **options)) == expected, "".join(pieces)[:200]
