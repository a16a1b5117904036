"""The corpus tool, run under bubblewrap: params as JSON on stdin, tool name last, JSON result on stdout."""

import json
import os
import sys


def read(params):
    """Read one document from the granted corpus folder (the only readable data in the sandbox)."""
    root = os.environ["CORTEX_READ_PATHS"].split(os.pathsep)[0]
    name = os.path.basename(params["path"])
    with open(os.path.join(root, name), encoding="utf-8") as fh:
        return {"path": name, "text": fh.read()}


if __name__ == "__main__":
    if sys.argv[-1] != "read":
        sys.exit(f"unknown tool {sys.argv[-1]!r}")
    json.dump(read(json.load(sys.stdin)), sys.stdout)
