"""The DATA step of SMTP with one moment made visible: after the relay's 354 (go ahead) and
before the content goes. Up to that moment a worker that dies has delivered nothing, so the
email may be sent again; from that moment the relay receives the whole message even if the
worker dies (the content is one write, flushed by the kernel), so it must not be.

aiosmtplib sends DATA, the content and the final dot in one call; this is that call with
the hook in between, on aiosmtplib's own protocol object (pinned below 6 in pyproject).
"""

from __future__ import annotations

from collections.abc import Callable

import aiosmtplib
from aiosmtplib.errors import SMTPDataError, SMTPServerDisconnected
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus


async def data(client: aiosmtplib.SMTP, content: bytes, handed: Callable[[], None]) -> SMTPResponse:
    """Send `content` as the message; `handed()` runs after 354, before the content, in the
    same synchronous step as the write: nothing else runs between the two, so a worker that
    dies has either not marked the message or has handed it to the kernel."""
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:
        raise SMTPServerDisconnected("Server not connected")
    body = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(content)) + b".\r\n"
    timeout = client.timeout
    async with protocol._command_lock:
        protocol._response_pending = True
        protocol.write(b"DATA\r\n")
        start = await protocol.read_response(timeout=timeout)
        if start.code != SMTPStatus.start_input:
            raise SMTPDataError(start.code, start.message)
        handed()  # blocking on purpose: no await between the mark and the write
        protocol._response_pending = True
        protocol.write(body)
        response = await protocol.read_response(timeout=timeout)
    if response.code != SMTPStatus.completed:
        raise SMTPDataError(response.code, response.message)
    return response
