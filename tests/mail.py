"""Reading the mail sink in tests: the personal signing links the signing requests carry."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

from emails.sink import read_mail

LINK = re.compile(r"https?://\S+/sign/[A-Za-z0-9_.-]+")


def signing_requests(mail: Path) -> list[tuple[str, str, str]]:
    """(agreement id, signer, link) of every signing request in the sink, oldest first."""
    found = []
    for message in read_mail(mail):
        if message["X-Agreement-Template"] != "signature_request":
            continue
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        match = LINK.search(body.get_content())
        assert match, body.get_content()
        found.append((str(message["X-Agreement-Id"]), str(message["X-Sink-Recipient"]), match[0]))
    return found
