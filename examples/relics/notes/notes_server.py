"""A tiny notes service (stdlib only) used as an example relic: it keeps notes in memory.

GET /health -> {"ok": true}; POST /notes {"text": ...} -> {"id": n, "count": n};
GET /notes -> {"notes": [...]}; GET /info -> {"pid": ..., "port": ...}. Listens on $PORT.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NOTES: list[str] = []


class Handler(BaseHTTPRequestHandler):
    """Routes the four endpoints; everything is JSON."""

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """Health, the notes, and who is serving."""
        if self.path == "/health":
            self._send(200, {"ok": True})
        elif self.path.startswith("/notes"):
            self._send(200, {"notes": NOTES})
        elif self.path == "/info":
            self._send(200, {"pid": os.getpid(), "port": self.server.server_address[1]})
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """Add a note."""
        if self.path != "/notes":
            self._send(404, {"error": f"no route {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            text = json.loads(self.rfile.read(length) or b"{}")["text"]
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": 'expected {"text": "..."}'})
            return
        NOTES.append(str(text))
        self._send(201, {"id": len(NOTES), "count": len(NOTES)})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        """Log requests to stdout (the relic pool keeps the last lines)."""
        print(format % args, flush=True)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    print(f"notes listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
