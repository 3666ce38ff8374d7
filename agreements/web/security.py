"""What every answer of the web service carries, and what every request is held to:

- credentials compared in constant time whatever a client sends (`same`: any text, also
  non-ASCII, is a refusal, never an error);
- security headers on every response: no framing, no sniffing, no referrer (a signing link
  is a key, and must not leak to the next site through the Referer header), nothing kept
  in caches, a content security policy that lets the pages run only the service's own
  script file, nothing inline (the API pages, which need an inline start, get a policy of
  their own), and HSTS when the service is
  reached over HTTPS;
- a bound on a request's body: a larger one is refused with 413 and a sentence saying
  so, before it is read;
- failed sign-ins throttled per client address, and logged.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("agreements.web")

MAX_BODY = 1024 * 1024  # an agreement file is a few KiB; a form or a decision less
# Where documents are uploaded (the drafting form, the API's documents): a few PDFs at once.
MAX_UPLOAD = 64 * 1024 * 1024
UPLOADS = re.compile(
    r"^/(?:draft|a/[^/]+/draft|a/[^/]+/sign-paper|api/agreements/[^/]+/documents)$"
)
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The OpenAPI page runs Swagger UI from this service (never from a CDN), started by a
# short inline script.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/static/docs/")


def same(given: str | None, expected: str) -> bool:
    """Whether a credential a client sent is the expected one, in constant time. Any text
    is compared as UTF-8 bytes (`hmac.compare_digest` refuses non-ASCII str with an
    error); nothing sent is not the same."""
    if given is None:
        return False
    try:
        return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: not any credential of ours
        return False


def headers_for(path: str, https: bool) -> list[tuple[bytes, bytes]]:
    policy = DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGE_POLICY
    found = [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    ]
    if not path.startswith("/static/"):
        found.append((b"cache-control", b"no-store"))
    if https:
        found.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return found


class Guard:
    """ASGI middleware: the headers above on every HTTP response, and requests with a body
    larger than `max_body` bytes refused with 413 (by their Content-Length, or while the
    body streams in when none is given)."""

    def __init__(
        self, app: App, https: bool, too_large: Callable[[Scope], bytes], max_body: int = MAX_BODY
    ) -> None:
        self.app = app
        self.https = https
        self.too_large = too_large
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope.get("path", ""), self.https)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in extra if n not in names),
                ]
            await send(message)

        limit = MAX_UPLOAD if UPLOADS.match(scope.get("path", "")) else self.max_body
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(scope, send_with_headers)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send_with_headers)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, send_with_headers)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = self.too_large(scope)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class Throttle:
    """Failed sign-ins per client address: after `limit` failures within `window` seconds
    the address is refused until the oldest of them is that old, whatever it sends, so a
    key cannot be guessed at speed. Every failure is logged (the address and the count,
    never what was sent). Held in memory, for at most `addresses` addresses (the oldest
    forgotten first): a web server restarted forgets, which costs an attacker a restart."""

    def __init__(
        self, limit: int = 5, window: float = 900.0, addresses: int = 10_000, clock: Any = None
    ) -> None:
        self.limit = limit
        self.window = window
        self.addresses = addresses
        self.clock = clock or time.monotonic
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, address: str) -> int:
        """Seconds until `address` may try again; 0 if it may now."""
        now = self.clock()
        found = self.failures.get(address)
        if found is None:
            return 0
        while found and found[0] <= now - self.window:
            found.popleft()
        if len(found) < self.limit:
            return 0
        return max(1, math.ceil(found[0] + self.window - now))

    def failed(self, address: str, what: str) -> None:
        found = self.failures.pop(address, None) or deque(maxlen=self.limit)
        found.append(self.clock())
        self.failures[address] = found
        while len(self.failures) > self.addresses:
            self.failures.popitem(last=False)
        log.warning(
            "failed %s from %s (%d in %d min)", what, address, len(found), self.window // 60
        )
