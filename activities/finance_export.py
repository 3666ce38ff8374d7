"""The finance export written to a folder for an ERP (Raindance, Unit4, Visma) to pick up:
the same rows, as the same CSV and JSON, as the pages, the API and `agreements finance`
give (agreements/finance.py). The `FinanceExport` workflow (workflows/finance_export.py)
runs the activity daily on the Temporal schedule `agreements-finance-export` that the worker
creates when AGREEMENTS_FINANCE_EXPORT_DIR is set.

What: the instalments whose effective date lies from the first day of the day's month to
AGREEMENTS_FINANCE_EXPORT_DAYS after the day, each with its status as of the day. Where,
under the folder (which must exist; it is never created, so an unmounted share is not
written over):

    utbetalningar-2026-11-26.csv          every agreement's
    utbetalningar-2026-11-26.json
    kultur/utbetalningar-2026-11-26.csv   those the organisation `kultur` owns
    kultur/utbetalningar-2026-11-26.json

one subfolder for each organisation that owns an agreement, named by the organisation's
id when that is a plain lower-case name (`[a-z0-9][a-z0-9._-]*`), else by a cleaned
lower-case form of it and the first 8 hex digits of its SHA-256 (`SOF/Helsingborg`
becomes `sof_helsingborg-305d5d4e`), so that no id reaches outside the folder and no two
meet on a file system that ignores case. The date is the export's day, so the names sort
by day.
The CSV is in Swedish (headings and statuses), byte for byte what the API answers for the
same period and organisation; the JSON has the API's English keys.

How: each file is written to a hidden temporary file in its own folder
(`.utbetalningar-….tmp`), flushed to disk, given mode 0640 and then renamed over the name
(`os.replace`), so the ERP sees either yesterday's whole file or today's, never part of
one. A file that already holds the same bytes is left alone: the same day run twice leaves
the same files, untouched. Temporary files left by a run that died are removed after an
hour. Files are never deleted: the ERP moves or removes what it has read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agreements import access, finance, ops
from agreements.files import whole_file
from models.config import Settings

log = logging.getLogger("agreements.finance_export")

LANGUAGE = "sv"  # the files' words: Swedish, as the pages' and the API's default
STEM = "utbetalningar"  # part of the ERP's contract: not translated, never changed
MODE = 0o640  # the worker's user writes, the folder's group (the ERP's) reads
FOLDER_MODE = 0o750
STALE_SECONDS = 3600  # a temporary file this old is a dead run's, not a running one's
PLAIN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Names Windows will not give a file or folder (an SMB share to a Windows ERP server)
RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{n}" for p in ("com", "lpt") for n in range(10)}


def period(day: dt.date, days: int) -> tuple[dt.date, dt.date]:
    """The export's period: the first day of the day's month to `days` after the day."""
    return day.replace(day=1), day + dt.timedelta(days=days)


def folder_name(organisation_id: str) -> str:
    """The organisation's subfolder: its id when plain, else a cleaned form and a hash."""
    if PLAIN.fullmatch(organisation_id) and organisation_id.split(".")[0] not in RESERVED:
        return organisation_id
    cleaned = re.sub(r"[^a-z0-9]+", "_", organisation_id.lower()).strip("_")[:40] or "org"
    digest = hashlib.sha256(organisation_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{cleaned}-{digest[:8]}"


def file_names(day: dt.date) -> tuple[str, str]:
    """The CSV's and the JSON's names for the day's export."""
    return f"{STEM}-{day.isoformat()}.csv", f"{STEM}-{day.isoformat()}.json"


def write_atomically(path: Path, data: bytes) -> bool:
    """Put `data` at `path` whole or not at all (a hidden temporary file in the same folder,
    synced, mode 0640, renamed over it); False when the file already held these bytes."""
    with suppress(FileNotFoundError):
        if path.read_bytes() == data:
            if path.stat().st_mode & 0o777 != MODE:
                path.chmod(MODE)
            return False
    with whole_file(path, MODE) as file:
        file.write(data)
    return True


def _remove_stale(folder: Path, now: float) -> None:
    """Temporary files a run that died left behind (never those of a run under way)."""
    for leftover in folder.glob(f".{STEM}-*.tmp"):
        with suppress(FileNotFoundError):
            if now - leftover.stat().st_mtime > STALE_SECONDS:
                leftover.unlink()


def _subfolder(root: Path, name: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        folder.mkdir(mode=FOLDER_MODE, exist_ok=True)
        # As 0750 whatever the umask, keeping the set-group-id bit the folder passes down
        # (so that the files take the ERP's group).
        folder.chmod(FOLDER_MODE | (root.stat().st_mode & 0o2000))
    return folder


def export(config: Settings, day: dt.date) -> list[str]:
    """Write the day's export under AGREEMENTS_FINANCE_EXPORT_DIR; the files it consists of,
    relative to that folder (all agreements first, then each organisation's). Nothing when
    no folder is set."""
    root = config.finance_export_dir
    if root is None:
        log.warning("finance export on %s: no AGREEMENTS_FINANCE_EXPORT_DIR here", day)
        return []
    if not root.is_dir():
        raise ApplicationError(
            f"the finance export folder {root} is not there (or not a folder): create it, "
            "with the group the ERP reads as",
            type="finance-export-folder",
        )
    start, end = period(day, config.finance_export_days)
    items = ops.instalments_between(config, start, end, today=day)
    found = finance.rows(items, ops.terms_of(config, items))
    owned = access.owners(ops.database(config))
    parts: list[tuple[Path, list[dict[str, Any]]]] = [(root, found)]
    for organisation in sorted(set(owned.values())):
        mine = [row for row in found if owned.get(row["agreement"]) == organisation]
        parts.append((_subfolder(root, folder_name(organisation)), mine))
    csv_name, json_name = file_names(day)
    written: list[str] = []
    now = time.time()
    for folder, rows in parts:
        _remove_stale(folder, now)
        for name, data in (
            (csv_name, finance.as_csv(rows, LANGUAGE)),
            (json_name, finance.as_json(rows)),
        ):
            write_atomically(folder / name, data)
            written.append((folder / name).relative_to(root).as_posix())
    return written


class FinanceExporter:
    """The finance export's activity, bound to the worker's settings."""

    def __init__(self, config: Settings) -> None:
        self.config = config

    @activity.defn(name="export_finance")
    async def export_finance(self, day: dt.date) -> list[str]:
        """Write the day's export (idempotent: the same day again leaves the same files);
        the files it consists of, relative to the folder."""
        files = await asyncio.to_thread(export, self.config, day)
        log.info(
            "finance export for %s: %d files in %s", day, len(files), self.config.finance_export_dir
        )
        return files
