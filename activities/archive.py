"""The archive package written to a folder when an agreement ends: the E-ARK SIP
(archive/sip.py) as `<AGREEMENTS_ARCHIVE_DIR>/<agreement id>-<last day>.zip`, for the
e-archive to pick up. Nothing is written when the setting is unset.

The file appears whole or not at all (`archive.sip.write_file`: a temporary file beside it,
flushed, renamed over it), readable by its owner and group (0640). A retried activity
writes the same name again: the newer package replaces the older.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agreements import ops
from archive.sip import ArchiveError, ended_on, write_file
from models.config import Settings

MODE = 0o640


class Archiver:
    """The activity that writes an agreement's archive package, given the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="write_archive")
    async def write_archive(self, agreement_id: str) -> str | None:
        """The package's path, or None when no archive folder is set."""
        return await asyncio.to_thread(self.write, agreement_id)

    def write(self, agreement_id: str, created: dt.datetime | None = None) -> str | None:
        folder = self.settings.archive_dir
        if folder is None:
            return None
        try:
            last_day = ended_on(self.settings, agreement_id)
            target = Path(folder) / f"{agreement_id}-{last_day.isoformat()}.zip"
            target.parent.mkdir(parents=True, exist_ok=True)
            made = created or dt.datetime.now(dt.UTC)
            write_file(self.settings, agreement_id, target, made, MODE)
        except ArchiveError as error:  # a document the store lost: no retry brings it back
            raise ApplicationError(
                str(error), type="ArchiveIncomplete", non_retryable=True
            ) from None
        except ops.OperationError as error:
            if error.code == "no-agreement":
                raise ApplicationError(str(error), type="NoAgreement", non_retryable=True) from None
            raise  # the database away, and the like: retried
        return str(target)
