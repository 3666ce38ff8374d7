"""Mail-server faults, injected for real: a scripted aiosmtpd server on loopback answers
421 then accepts, refuses one recipient with 550, or is not there for a while. The
workflows run on the time-skipping server, so retry backoff passes in virtual time."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlmodel import Session, select

from agreements.simulate import free_port, simulate
from emails.sink import MaildirHandler, read_mail
from models.db import engine
from models.loader import load_agreement
from models.plan import Scenario
from models.records import OutboxRecord
from models.schedule.engine import plan
from tests.mail import Scripted
from tests.reliability.harness import tally

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
