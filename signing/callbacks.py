"""The address a signing provider calls back when a round's document changes: it names the
agreement and the round with a MAC made with the signing secret, so a forged callback is
refused. A true one only says "ask again": the round fetches the document's state from
the provider itself."""

from __future__ import annotations

import hashlib
import hmac


def _mac(secret: str, agreement_id: str, number: int) -> str:
    message = f"provider-callback:{agreement_id}:{number}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def callback_path(secret: str, agreement_id: str, number: int) -> str:
    return f"/callbacks/signing/{agreement_id}/{number}/{_mac(secret, agreement_id, number)}"


def callback_ok(secret: str, agreement_id: str, number: int, mac: str) -> bool:
    expected = _mac(secret, agreement_id, number)
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))
