"""The finance export written to a folder for an ERP to pick up (activities/finance_export.py,
workflows/finance_export.py, worker.py `finance_export_schedule`): every day the instalments
from the first of the month to AGREEMENTS_FINANCE_EXPORT_DAYS ahead, for all agreements and
for each organisation that owns some, as the same CSV and JSON the API answers; written
whole or not at all, mode 0640; the same day again leaves the same files.

Against the real service: a worker process, the web application and the SQLite read model
(tests/conftest.py `web`) for the files, and the worker as `agreements up` builds it on the
test's namespace of the dev server for the schedule."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import finance_export
from activities.finance_export import FinanceExporter, export, folder_name, write_atomically
from agreements import access
from agreements.cli import shifted
from agreements.ops import stockholm_today
from agreements.simulate import free_port
from models.config import Settings
from models.db import migrate
from models.loader import loads_agreement
from models.plan import MilestoneKind
from models.schedule.engine import plan
from tests.conftest import Temporal
from tests.reliability.harness import schedule_exists, until
from tests.test_web import AUTH, ROOT, milestone_rows
from tests.test_web import until as until_state
from worker import (
    DIGEST_SCHEDULE,
    FINANCE_EXPORT_SCHEDULE,
    build_worker,
    connect,
    finance_export_schedule,
)
from workflows.finance_export import FinanceExportInput

DAYS = 730  # two years ahead: each example's coming instalments fall inside
KULTUR = "kultur"  # a plain id: the subfolder is named by it
SOCIAL = "SOF/Helsingborg"  # not a plain id: a cleaned name and a hash, inside the folder
SOCIAL_FOLDER = "sof_helsingborg-" + hashlib.sha256(SOCIAL.encode()).hexdigest()[:8]


def running_with_instalments(name: str) -> tuple[str, str]:
    """An example moved whole years so that it has started and has an instalment in the
    coming year (whatever day the test runs), and the day it was signed (its start)."""
    source = (ROOT / "examples" / f"{name}.toml").read_text(encoding="utf-8")
    now = dt.datetime.now(dt.UTC)
    today = stockholm_today()
    for years in range(60):
        moved = loads_agreement(shifted(source, years))
        coming = [
            m
            for m in plan(moved, now).milestones
            if m.kind is MilestoneKind.invoice
            and today < m.effective_date <= today + dt.timedelta(days=365)
        ]
        if moved.term.start < today and coming:
            return shifted(source, years), moved.term.start.isoformat()
    raise AssertionError(f"{name} cannot be moved to run with an instalment ahead")


def take_on(client: TestClient, name: str, organisation: str) -> None:
    """An example taken on under way (as signed) for the organisation, running."""
    text_, signed = running_with_instalments(name)
    taken = client.post(
        "/api/agreements",
        params={"signed": signed, "organisation": organisation},
        content=text_,
        headers=AUTH,
    )
    assert taken.status_code == 201, taken.text
    until_state(client, name, "active")


def invoice_one(client: TestClient, name: str, start: dt.date, end: dt.date) -> str:
    """The agreement's first instalment to invoice in the period, recorded as invoiced with
    an invoice number a spreadsheet would take for a formula; its id."""
    rows = milestone_rows(client, name)
    invoice = next(
        m
        for m in rows
        if m["kind"] == "invoice"
        and m["status"] == "to_invoice"
        and start.isoformat() <= m["effective_date"] <= end.isoformat()
    )
    marked = client.post(
        f"/api/agreements/{name}/milestones/{invoice['id']}",
        json={"status": "invoiced", "number": "=HYPERLINK(1)"},
        headers=AUTH,
    )
    assert marked.status_code == 200, marked.text
    return str(invoice["id"])


def api(client: TestClient, start: dt.date, end: dt.date, organisation: str, form: str) -> Any:
    answer = client.get(
        "/api/finance/instalments",
        params={
            "from": start.isoformat(),
            "to": end.isoformat(),
            "organisation": organisation,
            "format": form,
        },
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.text
    return answer.content if form == "csv" else answer.json()


def tree(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under the folder, hidden ones too: (bytes, mode, mtime in ns) by path."""
    return {
        path.relative_to(folder).as_posix(): (
            path.read_bytes(),
            path.stat().st_mode & 0o777,
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_export_writes_what_the_api_answers_for_all_and_for_each_organisation(
    web: tuple[TestClient, Path], service_env: dict[str, str], tmp_path: Path
) -> None:
    """Two organisations' agreements (one with organisation numbers), one instalment
    invoiced: the day's export is a CSV and a JSON for all agreements and for each
    organisation, the CSV byte for byte what the API answers for the same period and
    organisation and the JSON its rows; files 0640, no temporary file left, nothing else in
    the folder. Run again the same day, it leaves every file as it was."""
    client, _ = web
    data_dir = Path(service_env["AGREEMENTS_DATA_DIR"])
    db = migrate(Settings(data_dir=data_dir).db_url())
    access.add_organisation(db, KULTUR, "Kultur- och fritidsnämnden")
    access.add_organisation(db, SOCIAL, "Socialförvaltningen")
    take_on(client, "lund-radrum", KULTUR)
    take_on(client, "helsingborg-inva-sam", SOCIAL)
    folder = tmp_path / "erp"
    folder.mkdir()
    config = Settings(data_dir=data_dir, finance_export_dir=folder, finance_export_days=DAYS)
    day = stockholm_today()
    start, end = day.replace(day=1), day + dt.timedelta(days=DAYS)
    invoiced = invoice_one(client, "lund-radrum", start, end)
    for _ in range(200):  # the invoice mark reaches the read model a moment later
        found = api(client, start, end, "", "json")
        if any(r["status"] == "invoiced" for r in found):
            break
        time.sleep(0.05)
    assert any(r["status"] == "invoiced" and r["invoice_number"] for r in found), invoiced

    files = asyncio.run(ActivityEnvironment().run(FinanceExporter(config).export_finance, day))

    name = f"utbetalningar-{day.isoformat()}"
    expected = [
        f"{name}.csv",
        f"{name}.json",
        f"{SOCIAL_FOLDER}/{name}.csv",
        f"{SOCIAL_FOLDER}/{name}.json",
        f"{KULTUR}/{name}.csv",
        f"{KULTUR}/{name}.json",
    ]
    assert files == expected
    first = tree(folder)
    assert sorted(first) == sorted(expected)  # no temporary file, nothing else
    assert {mode for _, mode, _ in first.values()} == {0o640}
    for organisation, sub in (("", ""), (KULTUR, f"{KULTUR}/"), (SOCIAL, f"{SOCIAL_FOLDER}/")):
        assert first[f"{sub}{name}.csv"][0] == api(client, start, end, organisation, "csv")
        assert json.loads(first[f"{sub}{name}.json"][0]) == api(
            client, start, end, organisation, "json"
        )
    # Not empty files that agree trivially: each organisation's instalments, by name and
    # organisation number, in Swedish, the invoiced one as text; all = both organisations'.
    kultur = json.loads(first[f"{KULTUR}/{name}.json"][0])
    social = json.loads(first[f"{SOCIAL_FOLDER}/{name}.json"][0])
    everyone = json.loads(first[f"{name}.json"][0])
    assert kultur and {r["agreement"] for r in kultur} == {"lund-radrum"}
    assert social and {r["agreement"] for r in social} == {"helsingborg-inva-sam"}
    assert sorted(map(str, everyone)) == sorted(map(str, kultur + social))
    assert {(r["payee"], r["payee_org_number"]) for r in social} == {("INVA-SAM", "846005-8327")}
    csv_text = first[f"{KULTUR}/{name}.csv"][0]
    assert csv_text.startswith(b"\xef\xbb\xbfAvtal;Diarienummer;Titel;")
    assert b";fakturerad;'=HYPERLINK(1);" in csv_text

    again = asyncio.run(ActivityEnvironment().run(FinanceExporter(config).export_finance, day))
    assert again == files
    assert tree(folder) == first  # the same bytes, modes and times: not even rewritten


def empty_service(tmp_path: Path, **changes: Any) -> Settings:
    """A migrated database with no agreement, and an export folder."""
    config = Settings(data_dir=tmp_path / "data", **changes)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(config.db_url())
    return config


def test_a_write_that_fails_leaves_the_old_file_whole_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ERP sees yesterday's whole file or today's, never part of one: a write that
    fails before its rename leaves the file as it was and removes its temporary file."""
    path = tmp_path / "utbetalningar-2026-11-26.csv"
    assert write_atomically(path, b"old")
    assert path.stat().st_mode & 0o777 == 0o640

    def broken(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, b"new and longer")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.read_bytes() == b"old"
    assert write_atomically(path, b"new") and path.read_bytes() == b"new"
    assert not write_atomically(path, b"new")  # the same bytes: left alone


def test_a_dead_runs_temporary_files_are_removed_and_a_running_ones_kept(tmp_path: Path) -> None:
    folder = tmp_path / "erp"
    folder.mkdir()
    config = empty_service(tmp_path, finance_export_dir=folder)
    dead = folder / ".utbetalningar-2026-11-25.csv.x1y2.tmp"
    running = folder / ".utbetalningar-2026-11-26.csv.a3b4.tmp"
    dead.write_bytes(b"half")
    running.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(dead, (two_hours_ago, two_hours_ago))
    day = dt.date(2026, 11, 26)
    assert export(config, day) == ["utbetalningar-2026-11-26.csv", "utbetalningar-2026-11-26.json"]
    assert sorted(p.name for p in folder.iterdir()) == [
        running.name,
        "utbetalningar-2026-11-26.csv",
        "utbetalningar-2026-11-26.json",
    ]
    # No agreement: the headings only, and an empty list.
    assert (folder / "utbetalningar-2026-11-26.csv").read_bytes().count(b"\r\n") == 1
    assert json.loads((folder / "utbetalningar-2026-11-26.json").read_bytes()) == []


def test_a_folder_that_is_not_there_is_not_made(tmp_path: Path) -> None:
    """An unmounted share is not written over: the run fails (and is retried), and
    the folder is not created."""
    folder = tmp_path / "share" / "erp"
    config = empty_service(tmp_path, finance_export_dir=folder)
    with pytest.raises(ApplicationError, match="is not there"):
        export(config, dt.date(2026, 11, 26))
    assert not folder.exists() and not folder.parent.exists()


def test_an_organisations_folder_is_its_id_when_plain_and_never_outside_the_export() -> None:
    assert folder_name("kultur") == "kultur"
    assert folder_name("kultur.2") == "kultur.2"
    for odd in ("Kultur", "..", ".", "a/../b", "con", "AUX.txt", "/etc", "a b"):
        name = folder_name(odd)
        assert name != odd and "/" not in name and not name.startswith("."), (odd, name)
        assert name.endswith("-" + hashlib.sha256(odd.encode()).hexdigest()[:8])
    assert folder_name("Kultur") != folder_name("KULTUR")  # apart on any file system


@asynccontextmanager
async def service(
    temporal: Temporal, tmp_path: Path, **changes: Any
) -> AsyncIterator[tuple[Settings, Client]]:
    """The worker as `agreements up` builds it, in this process, on the test's namespace."""
    config = empty_service(
        tmp_path,
        temporal_address=temporal.address,
        temporal_namespace=temporal.namespace,
        smtp_port=free_port(),
        **changes,
    )
    client = await connect(config)
    async with build_worker(client, config):
        yield config, client


async def test_the_worker_creates_the_export_schedule_at_0600_stockholm_when_a_folder_is_set(
    temporal: Temporal, tmp_path: Path
) -> None:
    """With AGREEMENTS_FINANCE_EXPORT_DIR set, a worker that starts creates the schedule
    `agreements-finance-export`: `FinanceExport` on the task queue daily at 06:00
    Europe/Stockholm; triggered, it writes the day's files. Another start changes nothing,
    another hour updates it; a worker without the folder deletes it, and makes none."""
    folder = tmp_path / "erp"
    folder.mkdir()
    async with service(temporal, tmp_path, finance_export_dir=folder) as (config, client):
        handle = client.get_schedule_handle(FINANCE_EXPORT_SCHEDULE)
        await until(lambda: schedule_exists(handle), 30, "the worker to create the schedule")
        description = await handle.describe()
        schedule = description.schedule
        [calendar] = schedule.spec.calendars
        assert [(r.start, r.end) for r in calendar.hour] == [(6, 6)]
        assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]
        assert schedule.spec.time_zone_name == "Europe/Stockholm"
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue) == ("FinanceExport", config.task_queue)
        [data] = await client.data_converter.decode(list(action.args), [FinanceExportInput])
        assert data == FinanceExportInput()
        coming = description.info.next_action_times
        assert coming
        for moment in coming:
            local = moment.astimezone(ZoneInfo("Europe/Stockholm"))
            assert (local.hour, local.minute) == (6, 0), local

        # Triggered now (as at 06:00), the scheduled run writes the day's files.
        await handle.trigger()
        name = f"utbetalningar-{stockholm_today().isoformat()}"
        await until(
            lambda: sorted(p.name for p in folder.iterdir()) == [f"{name}.csv", f"{name}.json"],
            30,
            "the scheduled run to write the files",
        )

        assert await finance_export_schedule(client, config) == "unchanged"
        earlier = config.model_copy(update={"finance_export_hour": 5})
        assert await finance_export_schedule(client, earlier) == "updated"
        [calendar] = (await handle.describe()).schedule.spec.calendars
        assert [(r.start, r.end) for r in calendar.hour] == [(5, 5)]

    # The folder no longer set: the next worker to start deletes the schedule; the others
    # it sets as before.
    async with service(temporal, tmp_path / "again") as (config, client):
        digest = client.get_schedule_handle(DIGEST_SCHEDULE)
        await until(lambda: schedule_exists(digest), 30, "the worker to set its schedules")
        await until(
            lambda: not_exists(client, FINANCE_EXPORT_SCHEDULE), 30, "the schedule's deletion"
        )
        assert config.finance_export_dir is None
        assert await finance_export_schedule(client, config) == "off"
        assert not await schedule_exists(client.get_schedule_handle(FINANCE_EXPORT_SCHEDULE))


async def not_exists(client: Client, schedule_id: str) -> bool:
    return not await schedule_exists(client.get_schedule_handle(schedule_id))


def test_the_export_module_names_its_files_by_day() -> None:
    """The names sort by day and are not translated (the ERP's contract)."""
    assert finance_export.file_names(dt.date(2026, 1, 5)) == (
        "utbetalningar-2026-01-05.csv",
        "utbetalningar-2026-01-05.json",
    )
    assert finance_export.period(dt.date(2026, 11, 26), 90) == (
        dt.date(2026, 11, 1),
        dt.date(2027, 2, 24),
    )


def test_an_empty_folder_setting_turns_the_export_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """AGREEMENTS_FINANCE_EXPORT_DIR= in a .env file is no export, not the working folder."""
    monkeypatch.setenv("AGREEMENTS_FINANCE_EXPORT_DIR", "")
    assert Settings().finance_export_dir is None
    monkeypatch.setenv("AGREEMENTS_FINANCE_EXPORT_DIR", "/srv/erp/avtal")
    assert Settings().finance_export_dir == Path("/srv/erp/avtal")
