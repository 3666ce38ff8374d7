"""Emails that can never be sent as they are: a template that does not render, a message
that cannot be built or encoded (a subject with U+0085 could not, before emails/headers.py),
an address with non-ASCII characters before the @ (which `agreements check` now refuses;
older terms may hold one) for a relay without SMTPUTF8. Each is failed in the outbox with
its reason, comes back as a failed result (never an error that Temporal retries for days),
and is not sent; the workflow then tells the coordinator at once. On the real mail sink
(aiosmtpd) and SQLite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import Policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

import activities.notify
import emails.message
from activities.notify import Notifier
from activities.store import SaveTerms, Store
from agreements.simulate import free_port, simulate
from emails.sink import MaildirHandler, read_mail, start_sink
from models.agreement import Agreement
from models.config import Settings
from models.db import engine, migrate
from models.lifecycle import EmailSpec, SendOutcome, SendResult, terms_json, terms_sha256
from models.loader import load_agreement
from models.plan import Scenario
from models.records import OutboxRecord
from models.schedule.engine import plan

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "kristianstad-gamlegarden.toml"
COORDINATOR = "lena.hagerman@kristianstad.example.se"
LISA = "lisa.bjorck@quinnorunited.example.se"


class Mail:
    """The real sink on a free loopback port, a SQLite database and a notifier sending to
    them. The sink offers SMTPUTF8 (aiosmtpd's Controller does by default); with
    `smtputf8=False` it is a relay that does not."""

    def __init__(self, folder: Path, smtputf8: bool = True) -> None:
        self.folder = folder
        self.url = f"sqlite:///{folder / 'agreements.db'}"
        port = free_port()
        if smtputf8:
            self.sink = start_sink(folder / "mail", port=port)
        else:
            self.sink = Controller(
                MaildirHandler(folder / "mail"),
                hostname="127.0.0.1",
                port=port,
                enable_SMTPUTF8=False,
            )
            self.sink.start()
        migrate(self.url)
        self.notifier = Notifier(Settings(database_url=self.url, smtp_port=port, data_dir=folder))

    async def store(self, agreement: Agreement) -> str:
        """Write the terms as they are, past every check (as terms from before it)."""
        sha = terms_sha256(agreement)
        await Store(self.url).save_terms(
            SaveTerms(agreement_id=agreement.id, sha256=sha, terms_json=terms_json(agreement))
        )
        return sha

    async def send(self, spec: EmailSpec) -> SendResult:
        result: SendResult = await ActivityEnvironment().run(self.notifier.send_email, spec)
        return result

    def row(self, key: str) -> OutboxRecord:
        with Session(engine(self.url)) as session:
            row = session.get(OutboxRecord, key)
        assert row is not None, key
        return row

    def delivered(self) -> list[tuple[str, str]]:
        """(envelope recipient, To line) of each message in the sink."""
        return [(str(m["X-Sink-Recipient"]), str(m["To"])) for m in read_mail(self.folder / "mail")]


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[Mail]:
    mail = Mail(tmp_path)
    try:
        yield mail
    finally:
        mail.sink.stop()


@pytest.fixture
def plain_relay(tmp_path: Path) -> Iterator[Mail]:
    """A relay that does not offer SMTPUTF8."""
    mail = Mail(tmp_path, smtputf8=False)
    try:
        yield mail
    finally:
        mail.sink.stop()


def first_email(agreement: Agreement, sha: str, **changes: object) -> EmailSpec:
    """The agreement's first planned email (an instalment reminder to a party)."""
    promised = plan(agreement, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    email = promised.emails[0]
    milestone = next(m for m in promised.milestones if m.id == email.milestone_id)
    spec = EmailSpec(
        key=email.key,
        agreement_id=agreement.id,
        terms_sha256=sha,
        template=email.template,
        to=email.to,
        milestone=milestone,
        days_before=email.days_before,
        planned_at=email.send_at,
    )
    return spec.model_copy(update=changes)


def to(spec: EmailSpec, address: str) -> EmailSpec:
    return spec.model_copy(
        update={"key": f"{spec.key}:{address}", "to": spec.to.model_copy(update={"email": address})}
    )


# What `build` raised for a subject with U+0085 before emails/headers.py folded headers itself.
NO_HEADER = ValueError("Header values may not contain linefeed or carriage return characters")


def build_fails_for(monkeypatch: pytest.MonkeyPatch, template: str) -> None:
    """`build` raises for the emails of one kind, as it did for a subject with U+0085."""
    build = emails.message.build

    def failing(agreement: Agreement, spec: EmailSpec, *args: Any) -> EmailMessage:
        if spec.template == template:
            raise NO_HEADER
        return build(agreement, spec, *args)

    monkeypatch.setattr(activities.notify, "build", failing)


async def test_an_email_that_cannot_be_built_fails_once_with_its_reason(
    mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    agreement = load_agreement(EXAMPLE)
    fine = first_email(agreement, await mail.store(agreement))
    spec = fine.model_copy(update={"key": f"{fine.key}:unbuildable", "template": "agreement_end"})
    build_fails_for(monkeypatch, "agreement_end")

    result = await mail.send(spec)  # used to escape as the ValueError, retried for days
    assert result.outcome is SendOutcome.failed
    assert result.error == f"cannot build the email: ValueError: {NO_HEADER}"
    row = mail.row(spec.key)
    assert (row.status, row.error, row.attempts, row.lease_until) == (
        "failed",
        result.error,
        1,
        None,
    )
    assert row.subject == result.subject and result.subject.endswith("– IOP Gamlegården")

    again = await mail.send(spec)  # a retry (or a second worker) finds it failed: no new try
    assert (again.outcome, again.error) == (SendOutcome.failed, result.error)
    assert mail.row(spec.key).attempts == 1

    # Another email goes: the sink works, and only the one that cannot be built is missing.
    assert (await mail.send(fine)).outcome is SendOutcome.sent
    assert [recipient for recipient, _ in mail.delivered()] == [fine.to.email]


class Unencodable(str):
    """A header that folds to raw UTF-8 whatever the policy: a message with it cannot be
    written for a relay without SMTPUTF8 (the generator encodes headers as ASCII)."""

    name = "X-Unencodable"

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


async def test_an_email_that_cannot_be_encoded_fails_with_its_reason(
    mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = emails.message.build

    def unencodable(*args: Any) -> EmailMessage:
        message = build(*args)
        message["X-Unencodable"] = Unencodable("Gamlegården")
        return message

    monkeypatch.setattr(activities.notify, "build", unencodable)
    agreement = load_agreement(EXAMPLE)
    spec = first_email(agreement, await mail.store(agreement))
    result = await mail.send(spec)  # used to escape as UnicodeEncodeError, retried for days
    assert result.outcome is SendOutcome.failed
    assert result.error is not None
    assert result.error.startswith("cannot encode the email: UnicodeEncodeError"), result.error
    row = mail.row(spec.key)
    assert (row.status, row.error, row.attempts) == ("failed", result.error, 1)
    assert mail.delivered() == []


async def test_a_batch_carries_an_unbuildable_email_as_failed(
    mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`send_emails` used to raise for the whole batch when one email would not build."""
    agreement = load_agreement(EXAMPLE)
    fine = first_email(agreement, await mail.store(agreement))
    spec = fine.model_copy(update={"key": f"{fine.key}:unbuildable", "template": "agreement_end"})
    build_fails_for(monkeypatch, "agreement_end")
    results = await ActivityEnvironment().run(mail.notifier.send_emails, [spec, fine])
    assert [r.outcome for r in results] == [SendOutcome.failed, SendOutcome.sent]
    assert [mail.row(s.key).status for s in (spec, fine)] == ["failed", "sent"]


async def test_a_template_that_does_not_render_fails_with_its_reason(mail: Mail) -> None:
    agreement = load_agreement(EXAMPLE)
    spec = first_email(agreement, await mail.store(agreement), template="no_such_template")
    result = await mail.send(spec)  # used to raise a non-retryable RenderFailed
    assert result.outcome is SendOutcome.failed
    assert result.error is not None
    assert result.error.startswith("cannot render no_such_template: TemplateNotFound")
    row = mail.row(spec.key)
    assert (row.status, row.error, row.subject, row.attempts) == (
        "failed",
        result.error,
        "no_such_template",
        1,
    )
    assert mail.delivered() == []


async def test_a_local_part_that_needs_smtputf8_fails_when_the_relay_lacks_it(
    plain_relay: Mail,
) -> None:
    mail = plain_relay
    agreement = load_agreement(EXAMPLE)
    spec = to(first_email(agreement, await mail.store(agreement)), "åsa@quinnorunited.example.se")
    result = await mail.send(spec)
    assert result.outcome is SendOutcome.failed
    assert result.error is not None
    assert "åsa@quinnorunited.example.se" in result.error and "SMTPUTF8" in result.error
    row = mail.row(spec.key)
    assert (row.status, row.error, row.attempts) == ("failed", result.error, 1)
    assert mail.delivered() == []


async def test_a_local_part_that_needs_smtputf8_goes_when_the_relay_offers_it(
    mail: Mail,
) -> None:
    agreement = load_agreement(EXAMPLE)
    spec = to(first_email(agreement, await mail.store(agreement)), "åsa@föreningen.example.se")
    result = await mail.send(spec)  # used to escape as UnicodeEncodeError, retried for days
    assert result.outcome is SendOutcome.sent, result.error
    assert mail.row(spec.key).status == "sent"
    ((recipient, line),) = mail.delivered()
    assert recipient == "åsa@xn--freningen-07a.example.se"
    assert line.endswith("<åsa@xn--freningen-07a.example.se>"), line


async def test_an_international_domain_goes_in_its_ascii_form(plain_relay: Mail) -> None:
    """IDNA turns the domain into ASCII, so it needs nothing of the relay (no SMTPUTF8)."""
    mail = plain_relay
    agreement = load_agreement(EXAMPLE)
    spec = to(first_email(agreement, await mail.store(agreement)), "asa@föreningen.example.se")
    result = await mail.send(spec)  # used to ask SMTPUTF8 of a relay without it: 555
    assert result.outcome is SendOutcome.sent, result.error
    ((recipient, line),) = mail.delivered()
    assert recipient == "asa@xn--freningen-07a.example.se"
    assert line.endswith("<asa@xn--freningen-07a.example.se>"), line


async def test_the_workflow_is_told_at_once_and_tells_the_coordinator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole life in which no milestone notice can be built: each fails on its first
    attempt, the coordinator is told at once (not after three days of retries), once per
    address, and the agreement lives on."""
    build_fails_for(monkeypatch, "milestone_notice")
    port = free_port()
    sink = start_sink(tmp_path / "mail", port=port)
    try:
        sent, state = await simulate(load_agreement(EXAMPLE), workdir=tmp_path, smtp_port=port)
    finally:
        sink.stop()
    assert state.state.value == "ended"
    with Session(engine(f"sqlite:///{tmp_path / 'simulate.db'}")) as session:
        rows = list(session.exec(select(OutboxRecord)).all())
    failed = [r for r in rows if r.status != "sent"]
    assert failed and failed == [r for r in rows if r.template == "milestone_notice"]
    assert all(r.status == "failed" and r.attempts == 1 for r in failed), failed
    assert {r.error for r in failed} == {f"cannot build the email: ValueError: {NO_HEADER}"}
    told = sorted((e.to, minute(e.send_at)) for e in sent if e.template == "send_failed")
    planned_at = {r.planned_at for r in failed}
    assert len(planned_at) == 1 and None not in planned_at
    when = minute(str(planned_at.pop()))
    assert told == [(COORDINATOR, when)] * len(failed)  # one per address, at once
    assert len(sent) == len([r for r in rows if r.status == "sent"])


def minute(value: str) -> str:
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC).isoformat()[:16]
