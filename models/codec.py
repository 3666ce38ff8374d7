"""Encryption of what the service stores in Temporal: every payload (workflow inputs, the
agreement's state carried between runs, activity arguments and results, queries and
updates) leaves this process sealed with AES-256-GCM, so Temporal's database, its
backups and its Web UI hold no name, address or amount in clear.

The keys come from the settings (`AGREEMENTS_PAYLOAD_KEYS`: base64 keys of 32 bytes,
comma-separated). The first one seals; every one opens, each payload naming the key that
sealed it by a short fingerprint, so a key is rotated by putting a new one first and
dropping the old once nothing sealed with it is running any more. A payload that is not
sealed (written before the keys were set) is read as it is.

On the embedded default (`agreements up` with its own dev server) without the setting,
`up` makes a key of its own under the data folder, beside the database it seals, so a
trial is sealed too; every command on that machine reads it from there.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec

from models.config import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE = 12


class PayloadKeyError(ValueError):
    """A key in the settings that is not a base64 key of 32 bytes."""


def read_keys(text: str) -> list[bytes]:
    """The keys of `AGREEMENTS_PAYLOAD_KEYS`, first the one that seals."""
    keys = []
    for n, part in enumerate((p.strip() for p in text.split(",")), start=1):
        if not part:
            continue
        try:
            key = base64.b64decode(part, validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise PayloadKeyError(
                f"AGREEMENTS_PAYLOAD_KEYS: key {n} is not 32 bytes in base64 "
                "(make one with: python3 -c 'import os, base64; "
                "print(base64.b64encode(os.urandom(32)).decode())')"
            )
        keys.append(key)
    return keys


def fingerprint(key: bytes) -> bytes:
    return hashlib.sha256(b"agreements payload key:" + key).hexdigest()[:16].encode()


class Sealed(PayloadCodec):
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("no payload key")
        self.sealing = fingerprint(keys[0])
        self.keys = {fingerprint(k): AESGCM(k) for k in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        sealed = []
        key = self.keys[self.sealing]
        for payload in payloads:
            nonce = os.urandom(NONCE)
            data = nonce + key.encrypt(nonce, payload.SerializeToString(), None)
            sealed.append(Payload(metadata={"encoding": ENCODING, KEY_ID: self.sealing}, data=data))
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        opened = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                opened.append(payload)  # from before the keys were set
                continue
            name = payload.metadata.get(KEY_ID, b"")
            key = self.keys.get(name)
            if key is None:
                raise ValueError(
                    f"a payload sealed with key {name.decode(errors='replace')}, which is not "
                    "among AGREEMENTS_PAYLOAD_KEYS"
                )
            data = payload.data
            opened.append(Payload.FromString(key.decrypt(data[:NONCE], data[NONCE:], None)))
        return opened


def data_converter(base: DataConverter, keys: Sequence[bytes]) -> DataConverter:
    """`base`, sealing its payloads with `keys` when there are any."""
    if not keys:
        return base
    return dataclasses.replace(base, payload_codec=Sealed(keys))


KEY_FILE = "payload.key"  # under the data folder: the embedded default's own key


def keys_for(config: Settings) -> list[bytes]:
    """The keys that seal what this service stores in Temporal: AGREEMENTS_PAYLOAD_KEYS
    when set; on the embedded default, the key `agreements up` made under the data folder
    (beside the dev server's database it seals); otherwise none."""
    if config.payload_keys is not None:
        return read_keys(config.payload_keys.get_secret_value())
    file = config.data_dir / KEY_FILE
    if config.embedded_temporal() and file.exists():
        return read_keys(file.read_text(encoding="ascii").strip())
    return []


def make_key_file(config: Settings) -> Path | None:
    """On the embedded default without AGREEMENTS_PAYLOAD_KEYS: a key of its own, made once
    and readable by the service's user only. Returns the file when it made one."""
    file = config.data_dir / KEY_FILE
    if config.payload_keys is not None or not config.embedded_temporal() or file.exists():
        return None
    descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return file
