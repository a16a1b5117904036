"""Built-in ``files`` plugin: read and list files under the granted directories only.

Every path is resolved with symlinks followed and must land inside a granted root, so
neither ``..`` nor a symlink can lead outside it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from cortex.adapters.tools.decorator import tool
from cortex.errors import ToolError
from cortex.manifests.plugin import Permissions

MAX_ENTRIES = 1000


@tool
def read(perms: Permissions, path: str, max_bytes: int = 1_000_000) -> dict[str, Any]:
    """Read a text file under a granted directory.

    Args:
        path: The file, relative to the first granted directory, or absolute inside a granted one.
        max_bytes: Read at most this many bytes.
    """
    real = _resolve(perms, path)
    try:
        with os.fdopen(os.open(real, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(max_bytes + 1)
    except IsADirectoryError as exc:
        raise ToolError(f"files.read: {path} is a directory (use files.list)") from exc
    except OSError as exc:
        raise ToolError(f"files.read: cannot read {path}: {exc.strerror}") from exc
    return {
        "path": str(real),
        "size": size,
        "content": data[:max_bytes].decode("utf-8", "replace"),
        "truncated": len(data) > max_bytes,
    }


@tool(name="list")
def list_dir(perms: Permissions, path: str = ".") -> dict[str, Any]:
    """List a directory under a granted directory (names, kinds and sizes; symlinks not followed).

    Args:
        path: The directory, relative to the first granted directory, or absolute inside a granted one.
    """
    real = _resolve(perms, path)
    try:
        names = sorted(os.listdir(real))
    except NotADirectoryError as exc:
        raise ToolError(f"files.list: {path} is not a directory (use files.read)") from exc
    except OSError as exc:
        raise ToolError(f"files.list: cannot list {path}: {exc.strerror}") from exc
    entries = []
    for name in names[:MAX_ENTRIES]:
        try:
            info = os.lstat(real / name)
        except OSError:
            continue
        entries.append({"name": name, "type": _kind(info.st_mode), "size": info.st_size})
    return {"path": str(real), "entries": entries, "truncated": len(names) > MAX_ENTRIES}


def _resolve(perms: Permissions, path: str) -> Path:
    """The real path of ``path``, which must lie inside a granted root; ToolError otherwise."""
    roots = [*perms.filesystem.read, *perms.filesystem.write]
    if not roots:
        raise ToolError("files: no directory is granted to this plugin")
    candidate = Path(path) if os.path.isabs(path) else roots[0] / path
    real = Path(os.path.realpath(candidate))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real == real_root or real.is_relative_to(real_root):
            return real
    raise ToolError(f"files: {path} is outside the granted directories")


def _kind(mode: int) -> str:
    """file, dir, symlink or other."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"
