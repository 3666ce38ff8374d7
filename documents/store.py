"""Where the agreements' documents are kept: by their SHA-256, so a document is stored once
however many agreements, drafts and amendments name it, and what a hash names cannot change.

`DocumentStore` is what the service needs of a store; `FolderStore` keeps the files under the
data folder (`documents/ab/abcdef….pdf`). Object storage (S3, Azure Blob) is another class
with the same three methods. Every process that serves or signs documents (the web service,
the workers) must see the same store: on one machine the data folder, on several a shared
volume or object storage.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol


class DocumentStore(Protocol):
    def put(self, data: bytes) -> str:
        """Keep `data`; its SHA-256 (kept once however often it is put)."""

    def get(self, sha256: str) -> bytes:
        """The document's bytes; KeyError when the store has none by that hash."""

    def has(self, sha256: str) -> bool: ...


class FolderStore:
    """Documents as files in a folder, named by their hash, written whole or not at all."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise KeyError(sha256)
        return self.root / sha256[:2] / f"{sha256}.pdf"

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        if path.exists():
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return sha256

    def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None
        if hashlib.sha256(data).hexdigest() != sha256:  # changed on disk: not this document
            raise KeyError(sha256)
        return data

    def has(self, sha256: str) -> bool:
        try:
            return self._path(sha256).is_file()
        except KeyError:
            return False


def store_for(data_dir: Path) -> FolderStore:
    """The deployment's store: the documents folder under the data folder."""
    return FolderStore(data_dir / "documents")
