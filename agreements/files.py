"""Files written for another system to pick up (the finance export, the archive package):
whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def whole_file(path: Path, mode: int = 0o640) -> Iterator[BinaryIO]:
    """A file to write `path` through: a hidden temporary file beside it (`.<name>.….tmp`),
    given `mode`, flushed to disk and renamed over `path` when the block ends, so a reader
    sees the old file or the new one, never half of it. An error in the block removes the
    temporary file and leaves `path` as it was."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w+b") as out:
            os.fchmod(out.fileno(), mode)
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk, where the system allows
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
