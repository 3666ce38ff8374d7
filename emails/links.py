"""Personal signing links: an HMAC-SHA256-signed token bound to the agreement, the round
and the signer, carrying the signer's round token and the round's expiry.

A forged or altered link fails the signature check; an expired one is refused by date;
a reused one is refused by the round itself (the signer has already signed or declined).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

from pydantic import BaseModel, ValidationError


class LinkError(Exception):
    """The link cannot be used; safe to show to whoever holds it, in their language through
    `i18n.refusals.explain` (`code`: link-invalid or link-expired)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.params: dict[str, object] = {}


class SigningLink(BaseModel):
    agreement: str
    round: int
    signer: str  # email
    token: str  # the round's per-signer token
    expires: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def make_link(
    secret: str,
    agreement: str,
    round_number: int,
    signer: str,
    token: str,
    expires: dt.datetime,
) -> str:
    link = SigningLink(
        agreement=agreement,
        round=round_number,
        signer=signer,
        token=token,
        expires=int(expires.timestamp()),
    )
    payload = _b64(link.model_dump_json().encode())
    return f"{payload}.{_mac(secret, payload)}"


def read_link(secret: str, value: str, now: dt.datetime) -> SigningLink:
    payload, _, mac = value.partition(".")
    # Compared as bytes: a link of any text is refused, never an error (compare_digest
    # takes no str with non-ASCII characters).
    given = mac.encode("utf-8", "surrogatepass")
    if not payload or not mac or not hmac.compare_digest(given, _mac(secret, payload).encode()):
        raise LinkError("The link is not valid.", "link-invalid")
    try:
        link = SigningLink.model_validate(json.loads(_unb64(payload)))
    except (ValueError, ValidationError):
        raise LinkError("The link is not valid.", "link-invalid") from None
    if now.timestamp() >= link.expires:
        raise LinkError(
            "The link has expired: signing is closed. Contact the coordinator.", "link-expired"
        )
    return link
