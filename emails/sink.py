"""The embedded mail sink: an SMTP server on loopback that keeps every message as an .eml
file under a folder, so nothing leaves the machine while the service is tried out."""

from __future__ import annotations

import hashlib
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    """Stores each accepted message once per recipient as `<n>-<hash>.eml`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = len(list(folder.glob("*.eml")))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        content = raw.encode() if isinstance(raw, str) else raw
        for recipient in envelope.rcpt_tos:
            self.count += 1
            digest = hashlib.sha256(content + recipient.encode()).hexdigest()[:12]
            header = f"X-Sink-Recipient: {recipient}\r\n".encode()
            (self.folder / f"{self.count:06d}-{digest}.eml").write_bytes(header + content)
        return "250 Message accepted for delivery"


def start_sink(folder: Path, host: str = "127.0.0.1", port: int = 8025) -> Controller:
    controller = Controller(MaildirHandler(folder), hostname=host, port=port)
    controller.start()
    return controller


def read_mail(folder: Path) -> list[Message]:
    """Every message in the sink, oldest first."""
    return [
        message_from_bytes(path.read_bytes(), policy=default)
        for path in sorted(folder.glob("*.eml"))
    ]
