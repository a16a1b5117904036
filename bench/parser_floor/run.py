"""Compile floor.py and compare it with the real parser in bench/parser.py's loop (4-char chunks)."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import parser as bench  # noqa: E402  (bench/parser.py)

from cortex.kernel.protocol import Parser  # noqa: E402


def build(directory: Path) -> None:
    """Compile floor.py into ``directory`` with Cython."""
    shutil.copy(HERE / "floor.py", directory / "floor.py")
    setup = (
        "from setuptools import setup\nfrom Cython.Build import cythonize\n"
        "setup(ext_modules=cythonize(['floor.py'], language_level=3, quiet=True))\n"
    )
    (directory / "setup.py").write_text(setup)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=directory, check=True)


def main() -> None:
    """Print MB/s of the floor and of the parser on the same transcript."""
    rng = random.Random(7)
    text = ""
    while len(text.encode()) < 4e6:
        text += bench.transcript(rng, 50, first=len(text))
    size = len(text.encode())
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        sys.path.insert(0, tmp)
        from floor import Floor

        for name, make in (("floor (one delta per chunk, nothing parsed)", Floor), ("Cortex parser", Parser)):
            best = float("inf")
            for _ in range(5):
                seconds = bench.run_with(make().feed, text, 4)
                best = min(best, seconds)
            print(f"{name:<46} {size / best / 1e6:6.2f} MB/s")


if __name__ == "__main__":
    main()
