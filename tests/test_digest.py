"""The weekly digest: each coordinator and finance person gets one email on Mondays of what
is overdue and what falls due within 14 days in their organisations' agreements, grouped
by agreement; nobody with nothing to do gets one, and nobody gets one twice in a week.

The `Digest` workflow on the real Temporal dev server (tests/conftest.py) with the worker
as `build_worker` builds it, a real SQLite database holding the read model the pages read,
and a real SMTP sink on loopback. The words that come from the catalog (how a line stands:
"Försenad", "Om 5 dagar") are looked up through `i18n` here too, so these tests follow the
catalog as it is translated."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, select
from temporalio.client import Client, ScheduleActionStartWorkflow
from typer.testing import CliRunner

import i18n
from agreements import access
from agreements.access import PersonRole
from agreements.cli import app
from agreements.simulate import free_port
from emails.message import message_id
from emails.render import render_digest
from emails.sink import MaildirHandler, read_mail
from models.agreement import Language
from models.config import Settings, settings
from models.db import migrate
from models.digest import Digest, DigestGroup, DigestInput, DigestLine, DigestSummary, digest_key
from models.people import Person
from models.plan import MilestoneKind, MilestoneStatus
from models.records import AgreementRecord, DigestRecord, MilestoneRecord
from tests.conftest import Temporal
from tests.language import Reader
from tests.mail import Scripted
from tests.reliability.harness import schedule_exists, until
from worker import DIGEST_SCHEDULE, build_worker, connect, digest_schedule
from workflows.digest import DigestWorkflow

DAY = dt.date(2025, 3, 10)  # a Monday; the week 2025-W11
BASE = "https://avtal.kommun.example.se"

MALIN = "malin.berg@kultur.example.se"  # coordinator, kultur
ERIK = "erik.ek@kultur.example.se"  # finance, kultur
ANNA = "anna.admin@kultur.example.se"  # administrator, kultur: no digest
ROLF = "rolf.reader@kultur.example.se"  # reader, kultur: no digest
GONE = "gone@kultur.example.se"  # coordinator, kultur, deactivated
SARA = "sara.social@social.example.se"  # coordinator, social; English
OLLE = "olle.lugn@fritid.example.se"  # coordinator, fritid: nothing due


def days(n: int) -> dt.date:
    return DAY + dt.timedelta(days=n)


# agreement id -> (title, reference, owner)
AGREEMENTS = {
    "radrum": ("IOP RådRum", "KFN 2019/12", "kultur"),
    "planteringen": ("IOP Planteringen", None, "kultur"),
    "gamlegarden": ("Gamlegården", "SN 2022/7", "social"),
    "lugnt": ("Lugna avtalet", None, "fritid"),
    "slut": ("Avslutat avtal", None, "kultur"),  # ended: nothing from it
}
K, S = MilestoneKind, MilestoneStatus


class Row(NamedTuple):
    """A milestone of the read model: its date is DAY + `offset` days."""

    agreement: str
    id: str
    kind: MilestoneKind
    title: str
    offset: int
    status: MilestoneStatus
    amount: int | None = None
    number: str | None = None


ROWS = [
    Row("radrum", "report:1", K.report_due, "Årsrapport 2024 ska lämnas", -10, S.due),
    Row("radrum", "invoice:1", K.invoice, "Fakturering: SOF, period 1", -3, S.to_invoice, 260_000),
    Row("radrum", "meeting:3", K.meeting, "Styrgruppens sammanträde", 5, S.planned),
    Row("radrum", "report:3", K.report_due, "Halvårsrapport ska lämnas", 20, S.due),
    Row("radrum", "report:2", K.report_due, "Mottagen halvårsrapport", -30, S.received),
    Row("radrum", "invoice:0", K.invoice, "Betald faktura", -40, S.paid, 100_000, "F-1"),
    Row(
        "planteringen", "invoice:1", K.invoice, "Fakturering: AMF", -7, S.invoiced, 150_000, "F-17"
    ),
    Row("planteringen", "extension:1", K.extension_deadline, "Förlängning: godkänn", 13, S.open),
    Row("planteringen", "invoice:2", K.invoice, "Fakturering: SOF", 14, S.to_invoice, 150_000),
    Row("planteringen", "invoice:3", K.invoice, "Fakturering: SFF", 15, S.to_invoice, 150_000),
    Row("gamlegarden", "report:1", K.report_due, "Gemensam utvärdering", 2, S.due),
    Row("lugnt", "invoice:1", K.invoice, "Fakturering långt fram", 40, S.to_invoice, 1_000),
    Row("slut", "report:1", K.report_due, "Rapport i ett avslutat avtal", -5, S.due),
]


def seed(url: str) -> dict[str, int]:
    """Organisations, people with their roles, agreements owned by organisations, and their
    milestones in the read model, as the workflows and the people pages write them. The
    people's ids by email."""
    db = migrate(url)
    for org, name in (
        ("kultur", "Kulturnämnden"),
        ("social", "Socialnämnden"),
        ("fritid", "Fritid"),
    ):
        access.add_organisation(db, org, name)
    people = [
        (MALIN, "kultur", PersonRole.coordinator, None),
        (ERIK, "kultur", PersonRole.finance, None),
        (ANNA, "kultur", PersonRole.administrator, None),
        (ROLF, "kultur", PersonRole.reader, None),
        (GONE, "kultur", PersonRole.coordinator, None),
        (SARA, "social", PersonRole.coordinator, "en"),
        (OLLE, "fritid", PersonRole.coordinator, None),
    ]
    ids = {}
    for email, org, role, language in people:
        name = email.split("@")[0].replace(".", " ").title()
        person = access.grant(db, email, org, role, name=name, language=language)
        assert person.id is not None
        ids[email] = person.id
    access.deactivate(db, GONE)
    with Session(db) as session:
        for agreement_id, (title, reference, _) in AGREEMENTS.items():
            session.add(
                AgreementRecord(
                    id=agreement_id,
                    title=title,
                    reference=reference,
                    state="ended" if agreement_id == "slut" else "active",
                    terms_sha256="ab" * 32,
                    workflow_id=f"agreement-{agreement_id}",
                    start=days(-400),
                    end=days(400),
                )
            )
        for row in ROWS:
            session.add(
                MilestoneRecord(
                    agreement_id=row.agreement,
                    id=row.id,
                    kind=row.kind.value,
                    date=days(row.offset),
                    effective_date=days(row.offset),
                    rule="none",
                    title=row.title,
                    status=row.status.value,
                    amount=row.amount,
                    number=row.number,
                )
            )
        session.commit()
    for agreement_id, (_, _, owner) in AGREEMENTS.items():
        access.assign(db, agreement_id, owner, by="test")
    return ids


@asynccontextmanager
async def service(
    temporal: Temporal, tmp_path: Path, handler: MaildirHandler | None = None, **changes: Any
) -> AsyncIterator[tuple[Settings, Client, dict[str, int]]]:
    """The worker as `agreements up` builds it, in this process, on the test's namespace of
    the dev server; the seeded database; a mail sink (or the given scripted one)."""
    config = Settings(
        temporal_address=temporal.address,
        temporal_namespace=temporal.namespace,
        data_dir=tmp_path / "data",
        smtp_port=free_port(),
        public_base_url=BASE,
        **changes,
    )
    ids = seed(config.db_url())
    sink = Controller(
        handler or MaildirHandler(config.data_dir / "mail"),
        hostname="127.0.0.1",
        port=config.smtp_port,
    )
    sink.start()
    try:
        client = await connect(config)
        async with build_worker(client, config):
            yield config, client, ids
    finally:
        sink.stop()


async def run(
    client: Client, config: Settings, day: dt.date = DAY, run_id: str = "1"
) -> DigestSummary:
    return await client.execute_workflow(
        DigestWorkflow.run,
        DigestInput(day=day),
        id=f"digest-test-{run_id}",
        task_queue=config.task_queue,
        execution_timeout=dt.timedelta(seconds=60),  # bounded: a stuck run fails the test
    )


def mails(config: Settings) -> dict[str, EmailMessage]:
    """The digests in the sink, by recipient; each recipient once."""
    found: dict[str, EmailMessage] = {}
    for message in read_mail(config.data_dir / "mail"):
        assert isinstance(message, EmailMessage)
        to = str(message["X-Sink-Recipient"])
        assert to not in found, f"{to} got two digests"
        found[to] = message
    return found


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def sections(text: str, titles: list[str]) -> dict[str, str]:
    """The text under each agreement's heading, up to the next heading (or the end)."""
    starts = sorted((text.index(title + " ("), title) for title in titles)
    out = {}
    for (start, title), (end, _) in zip(starts, [*starts[1:], (len(text), "")], strict=True):
        out[title] = text[start:end]
    return out


def overdue(language: str) -> str:
    return i18n.text(language, "Overdue")


def due_in(language: str, n: int) -> str:
    return i18n.plural(language, "In %(num)d day", "In %(num)d days", n)


async def test_a_coordinator_gets_what_is_overdue_and_due_in_14_days_grouped_by_agreement(
    temporal: Temporal, tmp_path: Path
) -> None:
    """Malin coordinates kultur's agreements: one email, "Veckans avtal: 6 att göra", with
    RådRum first (its report is the most overdue), then Planteringen; under each heading
    (a link to the agreement's page) its lines in date order, each with its date, what it
    is and how it stands. Nothing beyond 14 days, nothing done, nothing of an ended
    agreement; links to /todo and /me, and no key or token anywhere."""
    async with service(temporal, tmp_path) as (config, client, ids):
        summary = await run(client, config)
    got = mails(config)
    malin = got[MALIN]
    assert str(malin["Subject"]) == "Veckans avtal: 6 att göra"
    assert malin["Content-Language"] == "sv"
    assert malin["Message-ID"] == message_id(digest_key(ids[MALIN], DAY), config.mail_from)
    assert malin["X-Agreement-Template"] == "weekly_digest"
    text, html = parts(malin)
    assert text.startswith(i18n.text("sv", "Hello %(name)s,", name="Malin Berg"))
    radrum, planteringen = "IOP RådRum", "IOP Planteringen"
    assert text.index(radrum) < text.index(planteringen)
    under = sections(text, [radrum, planteringen])
    assert (
        f"{radrum} ({BASE}/a/radrum) "
        + i18n.text("sv", "(ref. %(reference)s)", reference="KFN 2019/12")
        in under[radrum]
    )
    lines = {
        title: [line for line in body.splitlines() if line.startswith("- ")]
        for title, body in under.items()
    }
    late, kr = overdue("sv"), "150\u00a0000\u00a0kr"
    assert lines[radrum] == [
        f"- 2025-02-28 (fredag): Årsrapport 2024 ska lämnas – {late}: rapporten har inte kommit in",
        f"- 2025-03-07 (fredag): Fakturering: SOF, period 1, 260\u00a0000\u00a0kr – {late}: "
        "inte fakturerad",
        f"- 2025-03-15 (lördag): Styrgruppens sammanträde – {due_in('sv', 5)}",
    ]
    assert lines[planteringen] == [
        f"- 2025-03-03 (måndag): Fakturering: AMF, {kr} – {late}: fakturerad (F-17), inte betald",
        f"- 2025-03-23 (söndag): Förlängning: godkänn – {due_in('sv', 13)}: beslut senast den "
        "dagen",
        f"- 2025-03-24 (måndag): Fakturering: SOF, {kr} – {due_in('sv', 14)}",
    ]
    for absent in (
        "Halvårsrapport",
        "Mottagen",
        "Betald faktura",
        "SFF",
        "avslutat",
        "Gamlegården",
    ):
        assert absent not in text, absent
    for agreement_id, title in (("radrum", radrum), ("planteringen", planteringen)):
        heading = rf'<h2[^>]*><a href="{re.escape(BASE)}/a/{agreement_id}"[^>]*>{title}</a>'
        assert re.search(heading, html), agreement_id
    assert f'href="{BASE}/todo"' in html and f'href="{BASE}/me"' in html
    assert f"({BASE}/todo)" in text and f"({BASE}/me)" in text
    raw = malin.as_string()
    assert "key=" not in raw and "calendar.ics" not in raw and "avt_" not in raw
    assert summary.sent == 3 and summary.failed == 0 and summary.week == "2025-W11"


async def test_finance_gets_only_the_instalments(temporal: Temporal, tmp_path: Path) -> None:
    """Erik is finance in kultur (`Who.money_only`, the pages' rule): his digest lists the
    instalments of the same agreements, and nothing else: no report, meeting or decision.
    Planteringen first now, whose unpaid invoice is his most overdue."""
    async with service(temporal, tmp_path) as (config, client, _):
        await run(client, config)
    erik = mails(config)[ERIK]
    assert str(erik["Subject"]) == "Veckans avtal: 3 att göra"
    text, _ = parts(erik)
    under = sections(text, ["IOP Planteringen", "IOP RådRum"])
    assert text.index("IOP Planteringen") < text.index("IOP RådRum")
    listed = [
        line for body in under.values() for line in body.splitlines() if line.startswith("- ")
    ]
    assert len(listed) == 3 and all("Fakturering" in line for line in listed), listed
    assert "fakturerad (F-17), inte betald" in under["IOP Planteringen"]
    for absent in ("Årsrapport", "Styrgruppens", "Förlängning", "rapporten"):
        assert absent not in text, absent


async def test_a_person_of_another_organisation_gets_nothing_of_this_one(
    temporal: Temporal, tmp_path: Path
) -> None:
    """Sara coordinates social's agreement only, and reads English: her digest has
    Gamlegården and no word of kultur's agreements, in English."""
    async with service(temporal, tmp_path) as (config, client, _):
        await run(client, config)
    sara = mails(config)[SARA]
    assert str(sara["Subject"]) == "This week's agreements: 1 to do"
    assert sara["Content-Language"] == "en"
    text, html = parts(sara)
    assert "Gamlegården" in text and f"{BASE}/a/gamlegarden" in html
    assert f"- 2025-03-12 (Wednesday): Gemensam utvärdering – {due_in('en', 2)}" in text
    for other in ("RådRum", "Planteringen", "radrum", "planteringen", "Fakturering"):
        assert other not in text and other not in html, other


async def test_nobody_with_nothing_to_do_gets_an_email(temporal: Temporal, tmp_path: Path) -> None:
    """Olle's agreement has nothing within 14 days: no email. An administrator or a reader
    who is neither coordinator nor finance gets none, nor does a deactivated coordinator.
    The run says so: four people may get one (active, coordinator or finance where
    agreements are owned), three did, one had nothing; `digest_sent` holds the three."""
    async with service(temporal, tmp_path) as (config, client, ids):
        summary = await run(client, config)
    assert sorted(mails(config)) == sorted([MALIN, ERIK, SARA])
    assert (summary.people, summary.sent, summary.nothing, summary.failed) == (4, 3, 1, 0)
    with Session(migrate(config.db_url())) as session:
        rows = session.exec(select(DigestRecord)).all()
    assert sorted((r.person_id, r.status, r.week) for r in rows) == sorted(
        (ids[email], "sent", "2025-W11") for email in (MALIN, ERIK, SARA)
    )


async def test_running_twice_in_the_same_week_sends_once(
    temporal: Temporal, tmp_path: Path
) -> None:
    """A second run on Monday and one on Wednesday of the same week send nothing again
    (`digest:<person>:<ISO week>`); the next Monday's is a new week and goes."""
    async with service(temporal, tmp_path) as (config, client, _):
        first = await run(client, config, DAY, "first")
        again = await run(client, config, DAY, "again")
        wednesday = await run(client, config, days(2), "wednesday")
        assert len(read_mail(config.data_dir / "mail")) == 3
        next_week = await run(client, config, days(7), "next-week")
    assert (first.sent, first.already_sent) == (3, 0)
    assert (again.sent, again.already_sent) == (0, 3)
    assert (wednesday.sent, wednesday.already_sent) == (0, 3)
    assert next_week.week == "2025-W12" and next_week.sent >= 1
    assert len(read_mail(config.data_dir / "mail")) == 3 + next_week.sent


async def test_a_refused_address_is_recorded_and_the_run_completes(
    temporal: Temporal, tmp_path: Path
) -> None:
    """The mail server refuses Erik's address for good (550): his digest is failed and
    recorded with the reason, the others go, the run completes (never FAILED: the fixture
    checks), and a second run does not try him again that week."""
    handler = Scripted(tmp_path / "data" / "mail", refuse=ERIK)
    async with service(temporal, tmp_path, handler) as (config, client, ids):
        summary = await run(client, config)
        again = await run(client, config, DAY, "again")
    assert (summary.sent, summary.failed) == (2, 1)
    assert (again.sent, again.failed, again.already_sent) == (0, 1, 2)
    assert sorted(mails(config)) == sorted([MALIN, SARA])
    with Session(migrate(config.db_url())) as session:
        row = session.get(DigestRecord, digest_key(ids[ERIK], DAY))
    assert row is not None and row.status == "failed" and row.error and "550" in row.error


async def test_the_worker_creates_the_digest_schedule_monday_0700_stockholm(
    temporal: Temporal, tmp_path: Path
) -> None:
    """A worker that starts creates the schedule `agreements-digest`: `Digest` on the task
    queue every Monday at 07:00 Europe/Stockholm, looking 14 days ahead; its next run is a
    Monday at 07:00 in Stockholm. Another start changes nothing, another number of days
    updates it, and AGREEMENTS_DIGEST_DAYS=0 deletes it."""
    async with service(temporal, tmp_path) as (config, client, _):
        handle = client.get_schedule_handle(DIGEST_SCHEDULE)

        await until(lambda: schedule_exists(handle), 30, "the worker to create the digest schedule")
        description = await handle.describe()
        schedule = description.schedule
        [calendar] = schedule.spec.calendars
        assert [(r.start, r.end) for r in calendar.day_of_week] == [(1, 1)]  # Monday
        assert [(r.start, r.end) for r in calendar.hour] == [(7, 7)]
        assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]
        assert schedule.spec.time_zone_name == "Europe/Stockholm"
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue) == ("Digest", config.task_queue)
        [data] = await client.data_converter.decode(list(action.args), [DigestInput])
        assert data == DigestInput(days=14)
        coming = description.info.next_action_times
        assert coming
        for moment in coming:
            local = moment.astimezone(ZoneInfo("Europe/Stockholm"))
            assert (local.weekday(), local.hour, local.minute) == (0, 7, 0), local

        assert await digest_schedule(client, config) == "unchanged"
        wider = config.model_copy(update={"digest_days": 21})
        assert await digest_schedule(client, wider) == "updated"
        schedule = (await handle.describe()).schedule
        assert isinstance(schedule.action, ScheduleActionStartWorkflow)
        [data] = await client.data_converter.decode(list(schedule.action.args), [DigestInput])
        assert data == DigestInput(days=21)
        off = config.model_copy(update={"digest_days": 0})
        assert await digest_schedule(client, off) == "deleted"
        assert await digest_schedule(client, off) == "off"
        assert not await schedule_exists(handle)


def test_a_persons_language_is_swedish_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person added without a language reads Swedish; `agreements people grant … --language
    en` makes it English, and a later grant without one keeps it."""
    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(tmp_path))
    settings.cache_clear()
    db = migrate(settings().db_url())
    access.add_organisation(db, "kultur", "Kulturnämnden")
    try:
        for args in (
            ["a@example.se", "kultur", "coordinator"],
            ["b@example.se", "kultur", "finance", "--language", "en"],
            ["b@example.se", "kultur", "coordinator"],
        ):
            done = CliRunner().invoke(app, ["people", "grant", *args])
            assert done.exit_code == 0, done.output
    finally:
        settings.cache_clear()
    with Session(db) as session:
        found = {p.email: p.language for p in session.exec(select(Person))}
    assert found == {"a@example.se": None, "b@example.se": "en"}


def sample(language: Language = Language.sv, title: str = "IOP RådRum") -> Digest:
    """A digest with a line of every kind, as `gather` makes them."""
    lines = [
        DigestLine(
            why=why,
            id=f"m:{n}",
            kind=kind,
            title=f"{what} {n}",
            date=days(offset),
            days=offset,
            status=status,
            amount=amount,
            number=number,
        )
        for n, (why, kind, what, offset, status, amount, number) in enumerate(
            [
                ("overdue_report", K.report_due, "Årsrapport", -10, S.overdue, None, None),
                ("overdue_invoice", K.invoice, "Fakturering", -3, S.to_invoice, 1_492_049, None),
                ("unpaid", K.invoice, "Fakturering", -1, S.invoiced, 150_000, "F-2025-0017"),
                ("due", K.meeting, "Styrgruppens sammanträde", 0, S.planned, None, None),
                ("deadline", K.notice_deadline, "Uppsägning", 1, S.open, None, None),
                ("due", K.invoice, "Fakturering", 14, S.to_invoice, 650_000, None),
            ]
        )
    ]
    return Digest(
        person_id=7,
        email="malin.berg@kultur.example.se",
        name="Malin Berg",
        language=language,
        day=DAY,
        groups=[
            DigestGroup(agreement_id="radrum", title=title, reference="KFN 2019/12", lines=lines),
            DigestGroup(agreement_id="other", title="Gamlegården", lines=lines[:1]),
        ],
    )


def test_the_swedish_digest_reads_swedish_and_the_english_english() -> None:
    """Every kind of line, rendered: a Swedish reader finds no English message, prose or
    internal key in the subject, the text or the HTML (tests/language.py, as every other
    email is read); the English one has no Swedish of the service's own."""
    found = Reader(allowed={"IOP"})
    swedish = render_digest(sample(Language.sv), BASE)
    found.read("digest subject", swedish.subject)
    found.read("digest text", swedish.text)
    found.read_html("digest html", swedish.html)
    assert not found.found, found.found
    assert swedish.subject == "Veckans avtal: 7 att göra"
    english = render_digest(sample(Language.en), BASE)
    assert english.subject == "This week's agreements: 7 to do"
    for word in ("Hej", "senast", "inte ", "Försenad", "dagar", "Idag", "Veckans"):
        assert word not in english.text, word
    assert i18n.text("en", "Today") in english.text
