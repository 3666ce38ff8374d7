"""Mail-server faults, injected for real: a scripted aiosmtpd server on loopback answers
421 then accepts, refuses one recipient with 550, or is not there for a while. The
workflows run on the time-skipping server, so retry backoff passes in virtual time. Also
the worker's pooled connections: one the server closed while idle, and a burst that keeps
to the pool's few."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.notify import Notifier
from activities.store import Store
from agreements.simulate import free_port, simulate
from emails.sink import MaildirHandler, read_mail
from models.config import Settings
from models.db import engine, migrate
from models.lifecycle import EmailSpec, SendOutcome
from models.loader import load_agreement
from models.plan import Scenario
from models.records import OutboxRecord
from models.schedule.engine import plan
from tests.mail import Scripted
from tests.reliability.harness import tally, until
from tests.test_outbox import specs

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "kristianstad-gamlegarden.toml"
COORDINATOR = "lena.hagerman@kristianstad.example.se"
LISA = "lisa.bjorck@quinnorunited.example.se"


def minute(value: str) -> str:
    return dt.datetime.fromisoformat(value).isoformat()[:16]


def planned() -> list[tuple[str, str, str]]:
    agreement = load_agreement(EXAMPLE)
    promised = plan(agreement, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    return sorted((e.send_at.isoformat()[:16], e.template, e.to.email) for e in promised.emails)


def outbox(folder: Path) -> list[OutboxRecord]:
    with Session(engine(f"sqlite:///{folder / 'simulate.db'}")) as session:
        return list(session.exec(select(OutboxRecord)).all())


def outbox_rows(folder: Path) -> list[OutboxRecord]:
    with Session(engine(f"sqlite:///{folder / 'agreements.db'}")) as session:
        return list(session.exec(select(OutboxRecord)).all())


async def test_busy_server_delivers_once_after_retry(tmp_path: Path) -> None:
    handler = Scripted(tmp_path / "mail", busy=2)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sent, _ = await simulate(load_agreement(EXAMPLE), workdir=tmp_path, smtp_port=port)
    finally:
        controller.stop()
    assert handler.answers["421"] == 2
    got = sorted(
        (dt.datetime.fromisoformat(e.send_at).isoformat()[:16], e.template, e.to) for e in sent
    )
    assert got == planned()  # every email once: none lost, none doubled
    rows = outbox(tmp_path)
    assert {r.status for r in rows} == {"sent"}
    assert sum(r.attempts - 1 for r in rows) == 2  # each 421 cost one more attempt, no more
    tally("421 twice, then accepted (a whole life)", tmp_path / "mail", len(planned()))


async def test_refused_recipient_is_recorded_and_the_coordinator_told_once(
    tmp_path: Path,
) -> None:
    handler = Scripted(tmp_path / "mail", refuse=LISA)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sent, state = await simulate(load_agreement(EXAMPLE), workdir=tmp_path, smtp_port=port)
    finally:
        controller.stop()
    assert state.state.value == "ended"  # the workflow went on
    assert not [e for e in sent if e.to == LISA]
    failed = [r for r in outbox(tmp_path) if r.status == "failed"]
    assert failed and {r.recipient for r in failed} == {LISA}
    assert all(r.attempts == 1 for r in failed)  # a 550 is not retried
    told = [e for e in sent if e.template == "send_failed"]
    assert [e.to for e in told] == [COORDINATOR]
    # Everyone else got everything.
    others = [p for p in planned() if p[2] != LISA]
    got = sorted((minute(e.send_at), e.template, e.to) for e in sent if e.template != "send_failed")
    assert got == others
    tally(
        "550 for one recipient through a whole life",
        tmp_path / "mail",
        len(others) + len(told),  # everyone else's emails and the coordinator's notice
        failed_and_recorded=len(failed),
        coordinator_told=len(told),
    )


class Outage(Controller):
    """A mail server that is down for the first `down` connections: each is closed at once,
    before the greeting, as when the server is restarting."""

    down = 0
    dropped = 0

    def factory(self) -> SMTP:
        outage = self

        class Dropping(SMTP):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                if outage.dropped < outage.down:
                    outage.dropped += 1
                    transport.close()
                    return
                super().connection_made(transport)

        return Dropping(self.handler, **self.SMTP_kwargs)


async def test_server_down_for_a_while_then_back(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    port = free_port()
    controller = Outage(MaildirHandler(folder), hostname="127.0.0.1", port=port)
    controller.start()
    controller.down = 12  # after the controller's own start-up check
    try:
        sent, _ = await simulate(load_agreement(EXAMPLE), workdir=tmp_path, smtp_port=port)
    finally:
        controller.stop()
    assert controller.dropped == 12
    got = sorted((minute(e.send_at), e.template, e.to) for e in sent)
    assert got == planned()
    assert len(read_mail(folder)) == len(planned())
    rows = outbox(tmp_path)
    assert {r.status for r in rows} == {"sent"}
    assert sum(r.attempts - 1 for r in rows) == 12
    tally("mail server drops 12 connections, then back", folder, len(planned()))


class Counted(Controller):
    """The sink, counting the connections open at once (the most of them) and those the
    server has closed."""

    def __init__(self, folder: Path, port: int, timeout: float = 300) -> None:
        super().__init__(MaildirHandler(folder), hostname="127.0.0.1", port=port, timeout=timeout)
        self.open = self.most = self.closed = 0

    def factory(self) -> SMTP:
        sink = self

        class Counting(SMTP):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sink.open += 1
                sink.most = max(sink.most, sink.open)
                super().connection_made(transport)

            def connection_lost(self, error: Exception | None) -> None:
                sink.open -= 1
                sink.closed += 1
                super().connection_lost(error)

        return Counting(self.handler, **self.SMTP_kwargs)


def notifier_for(folder: Path, port: int, count: int) -> tuple[Notifier, list[EmailSpec]]:
    url = f"sqlite:///{folder / 'agreements.db'}"
    migrate(url)
    terms, emails = specs(count)
    Store(url)._save_terms(terms)
    return Notifier(Settings(database_url=url, smtp_port=port, data_dir=folder)), emails


async def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    tmp_path: Path,
) -> None:
    """A worker keeps its connections to the mail server open between emails. A server
    that closes an idle one (after half a second here) costs nothing: the next email goes
    on a new connection, at its first attempt."""
    port = free_port()
    sink = Counted(tmp_path / "mail", port, timeout=0.5)
    sink.start()
    notifier, (first, second) = notifier_for(tmp_path, port, 2)
    try:
        sent = await ActivityEnvironment().run(notifier.send_email, first)
        ((_, _, kept),) = notifier.pool.idle
        await until(lambda: not kept.is_connected, 10, "the server closing the idle connection")
        again = await ActivityEnvironment().run(notifier.send_email, second)
    finally:
        await notifier.close()
        sink.stop()
    assert (sent.outcome, again.outcome) == (SendOutcome.sent, SendOutcome.sent)
    assert [r.attempts for r in outbox_rows(tmp_path)] == [1, 1]
    assert len(read_mail(tmp_path / "mail")) == 2


async def test_a_burst_keeps_to_a_few_connections(tmp_path: Path) -> None:
    """The emails of a moment go at once, but over at most eight connections of the
    worker's: a burst does not open one connection per email to the mail server."""
    port = free_port()
    sink = Counted(tmp_path / "mail", port)
    sink.start()
    notifier, emails = notifier_for(tmp_path, port, 24)
    try:
        results = await ActivityEnvironment().run(notifier.send_emails, emails)
    finally:
        await notifier.close()
        sink.stop()
    assert [r.outcome for r in results] == [SendOutcome.sent] * len(emails)
    assert len(read_mail(tmp_path / "mail")) == len(emails)
    assert 1 < sink.most <= notifier.pool.size < len(emails), sink.most
