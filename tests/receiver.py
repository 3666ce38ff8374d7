"""A webhook receiver on loopback for the tests: a real HTTP server (the standard
library's, in a thread) that verifies every request's signature with the Standard Webhooks
package, as a municipality's system would, and answers as the test tells it (a status per
request, or slowly).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: Any  # the parsed body if the signature held, else None
    error: str | None


@dataclass
class Receiver:
    url: str
    secret: str | None = None  # set once the endpoint is registered
    answers: list[int] = field(default_factory=list)  # one status per request; then 200
    delays: list[float] = field(default_factory=list)  # seconds before each answer; then 0
    received: list[Received] = field(default_factory=list)

    def verified(self) -> list[Any]:
        return [r.verified for r in self.received if r.verified is not None]


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 until the block ends."""
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified, error = None, None
            try:
                assert receiver.secret is not None, "no secret yet"
                verified = Webhook(receiver.secret).verify(body, headers)
            except (WebhookVerificationError, AssertionError, ValueError) as problem:
                error = str(problem)
            receiver.received.append(Received(headers, body, verified, error))
            status = receiver.answers.pop(0) if receiver.answers else 200
            delay = receiver.delays.pop(0) if receiver.delays else 0.0
            if delay:
                time.sleep(delay)
            answer = json.dumps({"ok": status < 300}).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                pass  # the sender stopped waiting

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/avtal")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
