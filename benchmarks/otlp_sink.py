"""A minimal OTLP/HTTP trace sink for benchmarks: answers 200 to every export and counts
them, keeping connections open between exports (HTTP/1.1) as a real collector does.
Prints its port on the first line; exits when its stdin closes."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

received = {"exports": 0, "bytes": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # connections kept open between exports, as a collector does

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received["exports"] += 1
        received["bytes"] += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes it
    server.shutdown()
    print(f"exports {received['exports']} bytes {received['bytes']}", file=sys.stderr)


if __name__ == "__main__":
    main()
