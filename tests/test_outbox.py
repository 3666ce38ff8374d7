"""The outbox and the persistence activities on every supported database: several attempts
racing on one outbox key (as two workers would after a timeout) send one message, and a
retried event or terms write leaves one row."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import TRANSIENT, Notifier
from activities.store import EventIn, SaveTerms, Store
from agreements.simulate import free_port
from emails.sink import read_mail, start_sink
from models.config import Settings
from models.db import engine, migrate
from models.lifecycle import EmailSpec, SendOutcome, terms_json, terms_sha256
from models.loader import load_agreement
from models.plan import Scenario
from models.records import EventRecord, OutboxRecord, TermsRecord
from models.schedule.engine import plan

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "kristianstad-gamlegarden.toml"


def specs(count: int) -> tuple[SaveTerms, list[EmailSpec]]:
    agreement = load_agreement(EXAMPLE)
    sha = terms_sha256(agreement)
    promised = plan(agreement, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    milestones = {m.id: m for m in promised.milestones}
    emails = [
        EmailSpec(
            key=email.key,
            agreement_id=agreement.id,
            terms_sha256=sha,
            template=email.template,
            to=email.to,
            milestone=milestones[email.milestone_id],
            days_before=email.days_before,
            planned_at=email.send_at,
        )
        for email in promised.emails[:count]
    ]
    terms = SaveTerms(agreement_id=agreement.id, sha256=sha, terms_json=terms_json(agreement))
    return terms, emails


async def test_racing_attempts_send_each_email_once(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    sink = start_sink(tmp_path / "mail", port=port)
    settings = Settings(database_url=database_url, smtp_port=port, data_dir=tmp_path)
    terms, emails = specs(6)
    migrate(database_url)
    await Store(database_url).save_terms(terms)
    # Two notifiers, as two workers have; eight attempts at each email at once.
    notifiers = [Notifier(settings), Notifier(settings)]
    attempts = [
        ActivityEnvironment().run(notifiers[i % 2].send_email, spec)
        for spec in emails
        for i in range(8)
    ]
    try:
        results = await asyncio.gather(*attempts, return_exceptions=True)
        # Whoever found the email in flight is retried by Temporal; the retry finds it sent.
        retried = [
            await ActivityEnvironment().run(notifiers[0].send_email, spec) for spec in emails
        ]
    finally:
        sink.stop()
    outcomes = Counter(
        r.type if isinstance(r, ApplicationError) else r.outcome  # type: ignore[union-attr]
        for r in results
    )
    assert set(outcomes) <= {SendOutcome.sent, SendOutcome.already_sent, TRANSIENT}, outcomes
    assert outcomes[SendOutcome.sent] == len(emails)
    assert all(r.outcome == SendOutcome.already_sent for r in retried)
    delivered = Counter(m["Message-ID"] for m in read_mail(tmp_path / "mail"))
    assert len(delivered) == len(emails) and set(delivered.values()) == {1}, delivered
    with Session(engine(database_url)) as session:
        rows = session.exec(select(OutboxRecord)).all()
    assert [(r.status, r.attempts, r.lease_until) for r in rows] == [("sent", 1, None)] * len(
        emails
    )
    assert {r.message_id for r in rows} == set(delivered)


async def test_an_abandoned_claim_lapses_and_is_taken_over(
    database_url: str, tmp_path: Path
) -> None:
    """A worker that died while sending leaves a claim; once its lease is over, a retry may
    send (the mail server never got the message: it is not in the sink)."""
    port = free_port()
    sink = start_sink(tmp_path / "mail", port=port)
    settings = Settings(database_url=database_url, smtp_port=port, data_dir=tmp_path)
    terms, (spec,) = specs(1)
    migrate(database_url)
    await Store(database_url).save_terms(terms)
    notifier = Notifier(settings)
    lease = dt.timedelta(seconds=90)
    claim = notifier.outbox.claim([(spec, "subject", "<id@example.se>")], lease)
    ((row, claimed),) = notifier.outbox.write(claim)
    assert claimed and row.status == "sending" and row.worker
    ((_, again),) = notifier.outbox.write(claim)
    assert not again  # the lease holds
    with Session(engine(database_url)) as session:
        held = session.get(OutboxRecord, spec.key)
        assert held is not None
        held.lease_until = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.add(held)
        session.commit()
    try:
        result = await ActivityEnvironment().run(notifier.send_email, spec)
    finally:
        sink.stop()
    assert result.outcome == SendOutcome.sent
    assert len(read_mail(tmp_path / "mail")) == 1
    with Session(engine(database_url)) as session:
        done = session.get(OutboxRecord, spec.key)
    assert done is not None and (done.status, done.attempts) == ("sent", 2)


class Transactions:
    """The writing statements on an engine, by the transaction they ran in."""

    def __init__(self, db: Engine) -> None:
        self.db = db
        self.count = 0
        self.writes: dict[int, list[tuple[str, Any]]] = {}
        event.listen(db, "begin", self.begin)
        event.listen(db, "before_cursor_execute", self.execute)

    def begin(self, connection: Connection) -> None:
        self.count += 1
        connection.info["transaction"] = self.count

    def execute(self, connection: Connection, _: Any, sql: str, parameters: Any, *__: Any) -> None:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            number = connection.info["transaction"]
            self.writes.setdefault(number, []).append((sql, parameters))

    def close(self) -> None:
        event.remove(self.db, "begin", self.begin)
        event.remove(self.db, "before_cursor_execute", self.execute)


async def test_the_emails_of_a_moment_are_claimed_in_one_transaction(
    database_url: str, tmp_path: Path
) -> None:
    """A batch writes its outbox rows, claimed, in one transaction and its results in
    another; in between, each email's `handed` mark is a transaction of its own, right
    before its content goes. Three transactions per email before."""
    port = free_port()
    sink = start_sink(tmp_path / "mail", port=port)
    settings = Settings(database_url=database_url, smtp_port=port, data_dir=tmp_path)
    terms, emails = specs(6)
    migrate(database_url)
    await Store(database_url).save_terms(terms)
    notifier = Notifier(settings)
    seen = Transactions(engine(database_url))
    try:
        results = await ActivityEnvironment().run(notifier.send_emails, emails)
    finally:
        seen.close()
        sink.stop()
    assert [r.outcome for r in results] == [SendOutcome.sent] * len(emails)
    assert len(read_mail(tmp_path / "mail")) == len(emails)
    keys = {spec.key for spec in emails}
    claims = [w for w in seen.writes.values() if any("INSERT" in sql for sql, _ in w)]
    assert len(claims) == 1  # every row written, claimed, in one transaction
    ((sql, parameters),) = claims[0]  # one statement, with every row's values
    values = parameters.values() if isinstance(parameters, dict) else parameters
    assert "outbox" in sql and keys <= set(values)
    handed = [w for w in seen.writes.values() if len(w) == 1 and "'handed'" in str(w)]
    assert len(handed) == len(emails)  # one each, as the content goes
    assert len(seen.writes) == len(emails) + 2  # the claim, the marks, the results
    with Session(engine(database_url)) as session:
        rows = session.exec(select(OutboxRecord)).all()
    assert {(r.key, r.status, r.attempts, r.lease_until) for r in rows} == {
        (key, "sent", 1, None) for key in keys
    }


async def test_a_claim_the_database_refuses_holds_back_no_other(
    database_url: str, tmp_path: Path
) -> None:
    """Claims asked for at the same instant (by the worker's activities) share one
    transaction; one that the database refuses (a row without its subject) fails alone,
    and the other is made as if it had been on its own."""
    migrate(database_url)
    settings = Settings(database_url=database_url, smtp_port=free_port(), data_dir=tmp_path)
    notifier = Notifier(settings)
    _, (fine, refused) = specs(2)
    lease = dt.timedelta(seconds=90)
    good = notifier.outbox.claim([(fine, "subject", "<a@example.se>")], lease)
    bad = notifier.outbox.claim([(refused, None, "<b@example.se>")], lease)  # type: ignore[list-item]
    seen = Transactions(engine(database_url))
    try:
        made, failed = await asyncio.gather(
            notifier.writes.write(good), notifier.writes.write(bad), return_exceptions=True
        )
    finally:
        seen.close()
    assert isinstance(failed, IntegrityError), failed
    assert isinstance(made, list) and [claimed for _, claimed in made] == [True]
    assert seen.count == 3  # tried together, then each on its own
    with Session(engine(database_url)) as session:
        rows = session.exec(select(OutboxRecord)).all()
    assert [(r.key, r.status) for r in rows] == [(fine.key, "sending")]


async def test_store_writes_are_idempotent(database_url: str) -> None:
    migrate(database_url)
    store = Store(database_url)
    terms, _ = specs(0)
    event = EventIn(
        event_key="gamlegarden:1",
        agreement_id="gamlegarden",
        at=dt.datetime(2024, 1, 1, 9, tzinfo=dt.UTC),
        kind="created",
        actor="coordinator",
        summary="Skapat – ”åäö”",
        data={"n": 1},
    )
    await asyncio.gather(*(store.record_event(event) for _ in range(4)))
    await asyncio.gather(*(store.save_terms(terms) for _ in range(4)))
    with Session(engine(database_url)) as session:
        events = session.exec(select(EventRecord)).all()
        stored = session.exec(select(TermsRecord)).all()
    assert [(e.event_key, e.summary, e.at) for e in events] == [
        ("gamlegarden:1", "Skapat – ”åäö”", event.at)
    ]
    assert [t.sha256 for t in stored] == [terms.sha256]


async def test_a_batch_of_events_is_written_once_in_order(database_url: str) -> None:
    migrate(database_url)
    store = Store(database_url)
    events = [
        EventIn(
            event_key=f"planteringen:{n}",
            agreement_id="planteringen",
            at=dt.datetime(2024, 1, 1, 9, n, tzinfo=dt.UTC),
            kind="step",
            summary=f"steg {n}",
        )
        for n in range(1, 6)
    ]
    await store.record_events(events[:2])  # an earlier attempt got this far
    # Retried attempts, two at once, write the rest once each.
    await asyncio.gather(store.record_events(events), store.record_events(events))
    with Session(engine(database_url)) as session:
        written = session.exec(select(EventRecord).order_by(col(EventRecord.id))).all()
    assert [e.event_key for e in written] == [e.event_key for e in events]
