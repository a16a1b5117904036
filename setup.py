"""Build hook: compile the protocol parser's modules with Cython (pure-Python mode).

Everything else is in pyproject.toml. The compiled modules are an optional speed-up: where
Cython or a C compiler is missing the build goes on and the same .py files run as they are.
"""

from setuptools import setup

COMPILED = [
    "cortex/kernel/protocol/parser.py",
    "cortex/kernel/protocol/body.py",
    "cortex/kernel/protocol/tags.py",
    "cortex/kernel/protocol/attributes.py",
    "cortex/kernel/protocol/elements.py",
    "cortex/kernel/protocol/markup.py",
    "cortex/kernel/protocol/refs.py",
]


def extensions() -> list:
    """The Cython extensions, or none when Cython is not installed."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    modules = cythonize(
        COMPILED,
        language_level=3,
        compiler_directives={"binding": False, "annotation_typing": False},
        quiet=True,
    )
    for module in modules:
        module.optional = True  # no C compiler: keep the pure-Python modules
    return modules


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import COMPILED
    setup(ext_modules=extensions())
