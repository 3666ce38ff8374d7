"""One attempt at a delivery: the body POSTed to the endpoint, signed as Standard Webhooks
says (webhook-id, webhook-timestamp, webhook-signature), within a bounded time, with no
redirect followed; what came back, ready to be recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass

import httpx
from standardwebhooks.webhooks import Webhook

from webhooks import targets

TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # each phase of the request
WHOLE = 15.0  # seconds for the whole attempt, answer included: a slow receiver is a failure
ANSWER = 1000  # characters of the answer kept
USER_AGENT = "agreements-webhooks/1"


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no answer (refused, unreachable, too slow)
    text: str | None
    error: str | None
    milliseconds: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def headers(secret: str, message_id: str, body: str, now: dt.datetime) -> dict[str, str]:
    """The Standard Webhooks headers for the body, signed now."""
    now = now.astimezone(dt.UTC)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


async def attempt(url: str, secret: str, message_id: str, body: str, allow_private: bool) -> Answer:
    """POST the body once. Never raises for what the network or the receiver does."""
    started = time.monotonic()

    def answer(code: int | None, text: str | None, error: str | None) -> Answer:
        return Answer(code, text, error, int((time.monotonic() - started) * 1000))

    try:
        await asyncio.to_thread(targets.check, url, allow_private)
    except targets.TargetRefused as refused:
        return answer(None, None, f"refused: {refused.code} {refused.params}"[:500])
    signed = headers(secret, message_id, body, dt.datetime.now(dt.UTC))
    try:
        async with asyncio.timeout(WHOLE):
            async with (
                httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client,
                client.stream("POST", url, content=body.encode(), headers=signed) as response,
            ):
                text = await _start_of(response)
                return answer(response.status_code, text, None)
    except TimeoutError:
        return answer(None, None, f"no answer within {WHOLE:.0f} s")
    except httpx.HTTPError as error:
        return answer(None, None, f"{type(error).__name__}: {error}"[:500])


async def _start_of(response: httpx.Response) -> str:
    """The answer's first characters (the rest is not read)."""
    read = b""
    async for chunk in response.aiter_bytes():
        read += chunk
        if len(read) >= ANSWER * 4:
            break
    return read.decode("utf-8", "replace")[:ANSWER]
