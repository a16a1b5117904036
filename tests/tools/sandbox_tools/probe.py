"""Tools that try to break out of the sandbox; run by tests/tools/test_bwrap.py (stdlib only)."""

import json
import os
import socket
import sys
import time


def echo(params):
    """Return the params and who ran them."""
    return {"params": params, "uid": os.getuid(), "cwd": os.getcwd()}


def connect(params):
    """Connect to host:port and read what the server says first."""
    try:
        with socket.create_connection((params["host"], params["port"]), timeout=3) as sock:
            return {"connected": True, "banner": sock.recv(100).decode()}
    except OSError as exc:
        return {"connected": False, "error": f"{type(exc).__name__}: {exc}"}


def write(params):
    """Try to write a file at each path; report what happened."""
    out = {}
    for path in params["paths"]:
        try:
            with open(path, "w") as fh:
                fh.write("written from the sandbox")
            out[path] = "ok"
        except OSError as exc:
            out[path] = f"{type(exc).__name__}: {exc.strerror}"
    return out


def forkbomb(params):
    """Every process forks forever; failures back off briefly so the host stays usable."""
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.05)


def hog(params):
    """Allocate (and touch) params["mb"] megabytes."""
    blocks = [bytearray(1024 * 1024) for _ in range(params["mb"])]
    return {"allocated_mb": len(blocks)}


def spin(params):
    """Burn CPU until killed."""
    while True:
        pass


def sleeper(params):
    """Start a child that sleeps, then sleep; both carry the marker in their argv."""
    marker = params["marker"]
    if os.fork() == 0:
        os.execvp(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", marker])
    os.execvp(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", marker])


def environ(params):
    """Return the environment the tool sees."""
    return dict(os.environ)


def fail(params):
    """Write to stderr and exit non-zero."""
    print("something went wrong: " + params.get("why", "no reason"), file=sys.stderr)
    sys.exit(3)


def garbage(params):
    """Write something that is not JSON."""
    sys.stdout.write("this is not json")
    return None


def flood(params):
    """Write far more than the output cap, then sleep (the runtime must not wait for the sleep)."""
    sys.stdout.write("x" * 100_000)
    sys.stdout.flush()
    time.sleep(600)


def main():
    tool = sys.argv[-1]
    params = json.load(sys.stdin)
    result = globals()[tool](params)
    if tool != "garbage":
        json.dump(result, sys.stdout)


main()
