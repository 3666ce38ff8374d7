"""Mail-server faults at the notification activity, each on a real socket on loopback: a
server that accepts the connection and never answers (the wait is bounded), 451 then
success, and 550 for one recipient among several. The lifecycle-level faults (421 then
success, refused recipient, server down for a while) are in tests/test_smtp_faults.py."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlmodel import Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import TRANSIENT, Notifier
from activities.store import Store
from agreements.simulate import free_port
from emails.sink import MaildirHandler, read_mail
from models.config import Settings
from models.db import engine, migrate
from models.lifecycle import EmailSpec, SendOutcome
from models.records import OutboxRecord
from tests.mail import Scripted
from tests.reliability.harness import report
from tests.test_outbox import specs


class Silent:
    """Accepts connections and never says a word."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def prepared(tmp_path: Path, port: int, timeout: float = 30.0) -> tuple[Notifier, list[EmailSpec]]:
    url = f"sqlite:///{tmp_path / 'agreements.db'}"
    migrate(url)
    terms, emails = specs(4)
    Store(url)._save_terms(terms)
    settings = Settings(
        database_url=url, smtp_port=port, data_dir=tmp_path, smtp_timeout_seconds=timeout
    )
    return Notifier(settings), emails


def row(tmp_path: Path, key: str) -> OutboxRecord:
    with Session(engine(f"sqlite:///{tmp_path / 'agreements.db'}")) as session:
        found = session.get(OutboxRecord, key)
        assert found is not None
        return found


async def test_a_server_that_never_answers_costs_a_bounded_wait_then_a_retry(
    tmp_path: Path,
) -> None:
    silent = Silent()
    notifier, (spec, *_) = prepared(tmp_path, silent.port, timeout=1.0)
    began = time.monotonic()
    try:
        await ActivityEnvironment().run(notifier.send_email, spec)
    except ApplicationError as error:
        assert error.type == TRANSIENT and "Timeout" in str(error), str(error)
    else:
        raise AssertionError("a silent server cannot have taken the email")
    finally:
        silent.close()
    waited = time.monotonic() - began
    assert waited < 10, f"waited {waited:.1f} s for a silent server"
    assert row(tmp_path, spec.key).status == "pending"  # free for the retry
    # The retry, once a real server answers, sends it once.
    port = free_port()
    controller = Controller(MaildirHandler(tmp_path / "mail"), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        notifier.settings = notifier.settings.model_copy(update={"smtp_port": port})
        result = await ActivityEnvironment().run(notifier.send_email, spec)
    finally:
        controller.stop()
    assert result.outcome == SendOutcome.sent
    assert len(read_mail(tmp_path / "mail")) == 1
    report("mail server accepts and never answers", planned=1, delivered=1, duplicated=0, lost=0)


async def test_451_then_success_and_550_for_one_recipient_among_several(tmp_path: Path) -> None:
    port = free_port()
    notifier, emails = prepared(tmp_path, port)
    refused = emails[1].to.email
    handler = Scripted(
        tmp_path / "mail", busy=2, refuse=refused, busy_answer="451 4.3.0 Try again later"
    )
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    outcomes: dict[str, SendOutcome] = {}
    retries = 0
    try:
        for spec in emails:
            for _ in range(5):  # Temporal's retries, one after another
                try:
                    result = await ActivityEnvironment().run(notifier.send_email, spec)
                except ApplicationError as error:
                    assert error.type == TRANSIENT
                    retries += 1
                    continue
                outcomes[spec.key] = result.outcome
                break
    finally:
        controller.stop()
    assert handler.answers == Counter({"451": 2, "550": 1, "250": 3})
    assert retries == 2
    delivered = Counter(str(m["X-Sink-Recipient"]) for m in read_mail(tmp_path / "mail"))
    others = [s for s in emails if s.to.email != refused]
    assert all(outcomes[s.key] == SendOutcome.sent for s in others)
    assert sum(delivered.values()) == len(others) and refused not in delivered
    failed = row(tmp_path, emails[1].key)
    assert failed.status == "failed" and failed.error and "550" in failed.error
    report(
        "451 twice, then 550 for one recipient of four",
        planned=len(emails),
        delivered=sum(delivered.values()),
        duplicated=0,
        lost=0,
        failed_and_recorded=1,
    )


async def test_connection_refused_for_a_while_then_a_server_appears(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: every connection is refused
    notifier, (spec, *_) = prepared(tmp_path, port)
    refused = 0
    for _ in range(3):
        try:
            await ActivityEnvironment().run(notifier.send_email, spec)
        except ApplicationError as error:
            assert error.type == TRANSIENT and "unreachable" in str(error), str(error)
            refused += 1
        assert row(tmp_path, spec.key).status == "pending"  # nothing claimed for good
    controller = Controller(MaildirHandler(tmp_path / "mail"), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = await ActivityEnvironment().run(notifier.send_email, spec)
        again = await ActivityEnvironment().run(notifier.send_email, spec)  # a late retry
    finally:
        controller.stop()
    assert result.outcome == SendOutcome.sent and again.outcome == SendOutcome.already_sent
    assert refused == 3 and row(tmp_path, spec.key).attempts == 4
    copies = len(read_mail(tmp_path / "mail"))
    report(
        "connection refused three times, then the server is there",
        planned=1,
        delivered=copies,
        duplicated=max(0, copies - 1),
        lost=1 - min(copies, 1),
    )
    assert copies == 1
