"""The notification activity: render one email and send it exactly once per outbox key.

The outbox row is written before the message goes out, and one attempt at a time holds it
(a lease), so a second attempt or a second worker never sends it again. The row moves
pending -> sending -> handed (the content is going to the relay) -> sent or failed. The
emails of one moment (`send_emails`) are claimed in one transaction and their results
written in another (shared with the claims and results of the worker's other activities
of the same instant); each `handed` mark is one UPDATE of its own, right before the
content goes.

What was sent is kept: the `handed` mark writes the SHA-256 of the exact bytes that go to
the relay, and the results write keeps those bytes with each sent row (`outbox.message`,
cleared by the weeding after AGREEMENTS_MESSAGE_RETENTION_DAYS; the hash stays). A worker
that dies between the two leaves the hash without the message.

SMTP failures are classified: a connection error, a timeout or a 4xx answer is retried by
Temporal with backoff; a 5xx answer or a refused recipient is permanent, recorded as
failed, and reported back so the workflow can tell the coordinator once. So is an email
that cannot be rendered, built or encoded (a defect in the terms or a template, which no
retry can mend): it is failed with its reason, never left `sending` to be retried for days.

Addresses go to the relay with their domain in its ASCII (IDNA) form, so an international
domain needs nothing of the relay. Only an address with non-ASCII characters before the @
needs SMTPUTF8: it is used when the relay offers it, and the email fails when it does not
(`agreements check` refuses such addresses; older terms may still hold one).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

import aiosmtplib
from aiolimiter import AsyncLimiter
from aiosmtplib.protocol import normalize_message_line_endings
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import BindParameter, Connection, Engine, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import smtp
from activities.contracts import EmailActivities
from agreements import telemetry
from documents.store import store_for
from emails.links import make_link
from emails.message import as_bytes, build, message_id, sender_address
from emails.render import Rendered, render_email, warm
from models.agreement import Agreement
from models.config import Settings
from models.db import ready, write_lock
from models.lifecycle import EmailSpec, SendOutcome, SendResult
from models.records import OutboxRecord, TermsRecord, utcnow

T = TypeVar("T")

TRANSIENT = "SmtpTransient"
UNCONFIRMED = "handed to the mail server by a worker that stopped before its answer: not sent again"


class Unsendable(Exception):
    """An email that can never go as it is: no retry helps, so it is failed with this reason."""


class SmtpPool:
    """Open connections to the relay, reused from one email to the next (connecting and
    EHLO cost more than sending a reminder), at most `size` in use at once: an email waits
    for a free one rather than opening one more, so a burst never opens hundreds of
    connections to the relay. A connection goes back to the pool only after a whole
    transaction succeeded; after any error it is closed, so the next email starts on a
    fresh one. One that the relay closed is not used again (the closing is seen on the
    event loop as it happens), one left idle for a while is first checked with a NOOP,
    and one opened with other settings (another relay) is not used again."""

    CHECK_AFTER = 5.0  # seconds idle before a NOOP asks whether the relay still listens

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.idle: list[tuple[tuple[object, ...], float, aiosmtplib.SMTP]] = []
        self._slots = asyncio.Semaphore(size)
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _key(config: Settings) -> tuple[object, ...]:
        return (
            config.smtp_host,
            config.smtp_port,
            config.smtp_user,
            config.smtp_password,
            config.smtp_security,
            config.smtp_timeout_seconds,
        )

    async def _open(self, config: Settings) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=config.smtp_host,
            port=config.smtp_port,
            username=config.smtp_user,
            password=config.smtp_password.get_secret_value() if config.smtp_password else None,
            use_tls=config.smtp_security == "tls",
            start_tls=config.smtp_security == "starttls",
            timeout=config.smtp_timeout_seconds,
        )
        await client.connect()
        # What the relay offers is known after EHLO, which connecting alone does not send
        # (without TLS or a login): ask now, before the envelope and the content's form are
        # chosen. aiosmtplib's own step, with its HELO fallback (pinned below 6).
        await client._ehlo_or_helo_if_needed()
        return client

    async def _reused(self, key: tuple[object, ...]) -> aiosmtplib.SMTP | None:
        while self.idle:
            opened_for, since, client = self.idle.pop()
            if opened_for != key:
                await _quit(client)
                continue
            if not client.is_connected:
                _close(client)
                continue
            if time.monotonic() - since < self.CHECK_AFTER:
                return client
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                _close(client)
        return None

    @contextlib.asynccontextmanager
    async def connection(self, config: Settings) -> AsyncIterator[aiosmtplib.SMTP]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections and waiting belong to one event loop
            for _, _, client in self.idle:
                _close(client)
            self.idle, self._slots, self._loop = [], asyncio.Semaphore(self.size), loop
        async with self._slots:
            key = self._key(config)
            client = await self._reused(key) or await self._open(config)
            try:
                yield client
            except BaseException:
                _close(client)
                raise
            if client.is_connected and len(self.idle) < self.size:
                self.idle.append((key, time.monotonic(), client))
            else:
                await _quit(client)

    async def close(self) -> None:
        """QUIT to every idle connection (the worker stops)."""
        idle, self.idle = self.idle, []
        for _, _, client in idle:
            await _quit(client)


def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except Exception:
        _close(client)


class Notifier(EmailActivities):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        rate = settings.smtp_max_per_second
        self.limiter = AsyncLimiter(1, 1 / rate) if rate > 0 else None  # evenly paced
        self.db = ready(settings.db_url())
        self.pool = SmtpPool()
        self.outbox = Outbox(self.db)
        self.writes = Together(self.outbox)
        # The terms of each version, read once: they never change under their hash.
        self.terms: dict[str, Agreement] = {}
        warm()  # the templates, compiled before the first email rather than during it

    async def close(self) -> None:
        """When the worker stops: QUIT to the pooled SMTP connections, and the outbox's own
        database connection closed."""
        await self.pool.close()
        self.outbox.close()

    @activity.defn(name="send_email")
    async def send_email(self, spec: EmailSpec) -> SendResult:
        (result,) = await self._send([spec])
        if isinstance(result, ApplicationError):
            raise result
        return result

    @activity.defn(name="send_emails")
    async def send_emails(self, specs: list[EmailSpec]) -> list[SendResult]:
        """The emails an agreement sends at one moment, in one activity (one for the lot in
        the agreement's history instead of one each), their outbox rows claimed in one
        transaction and their results written in another. Each goes as `send_email` sends
        it; one that meets a passing fault comes back as `retry`, and the workflow then
        sends it on its own with the whole retry policy."""
        results: list[SendResult] = []
        for spec, result in zip(specs, await self._send(specs), strict=True):
            if isinstance(result, ApplicationError):
                if result.non_retryable:
                    raise result
                result = SendResult(
                    key=spec.key,
                    outcome=SendOutcome.retry,
                    message_id="",
                    subject=spec.template,
                    error=str(result),
                )
            results.append(result)
        return results

    async def _send(self, specs: list[EmailSpec]) -> list[SendResult | ApplicationError]:
        """Each email's result, or the passing fault that a retry may get past."""
        results: list[SendResult | ApplicationError | None] = [None] * len(specs)
        mail: list[Mail] = []
        for index, spec in enumerate(specs):
            agreement = await self._terms(spec.terms_sha256)
            if isinstance(agreement, ApplicationError):
                results[index] = agreement
                continue
            mid = message_id(spec.key, self.settings.mail_from)
            # An email that cannot be rendered now never can be: it is claimed like any
            # other, and its outbox row says failed, with the reason (below).
            try:
                rendered = render_email(agreement, spec, self._link(spec))
            except Exception as error:  # a defect in the terms or a template
                reason = f"cannot render {spec.template}: {_why(error)}"
                mail.append(Mail(index, spec, agreement, mid, spec.template, None, reason))
            else:
                mail.append(Mail(index, spec, agreement, mid, rendered.subject, rendered, ""))
        if not mail:
            return _every(results)
        rows = await self.writes.write(
            self.outbox.claim([(m.spec, m.subject, m.mid) for m in mail], lease())
        )
        ours: list[Mail] = []
        for m, (row, claimed) in zip(mail, rows, strict=True):
            if row.status == "sent":
                results[m.at] = SendResult(
                    key=m.spec.key,
                    outcome=SendOutcome.already_sent,
                    message_id=m.mid,
                    subject=row.subject,
                )
            elif row.status == "failed":
                results[m.at] = SendResult(
                    key=m.spec.key,
                    outcome=SendOutcome.failed,
                    message_id=m.mid,
                    subject=row.subject,
                    error=row.error,
                )
            elif not claimed:  # another attempt is sending it right now: ask again later
                results[m.at] = ApplicationError(
                    f"another attempt ({row.worker}) is sending this email", type=TRANSIENT
                )
            else:
                ours.append(m)
        # What each claimed email came to, written down in one transaction when all are
        # done (or the activity is cancelled): until then a row says `sending` under its
        # lease, or `handed`, which no later attempt sends again.
        marks: dict[str, Mark] = {}

        async def deliver(m: Mail) -> None:
            kept = Kept()
            status, error, result = await self._deliver(m, kept)
            marks[m.spec.key] = Mark(status, error, kept if status == "sent" else None)
            results[m.at] = result
            outcome = "retried" if status == "pending" else status
            telemetry.count("agreements_emails", {"template": m.spec.template, "outcome": outcome})

        try:
            # Every one to its end, also when another meets an error no SMTP answer explains
            # (the database failing at the `handed` mark): that error fails the activity
            # once the others are written down.
            done = await asyncio.gather(*(deliver(m) for m in ours), return_exceptions=True)
        finally:
            if marks:
                await self.writes.write(self.outbox.mark(marks))
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return _every(results)

    async def _deliver(
        self, m: Mail, kept: Kept
    ) -> tuple[str, str | None, SendResult | ApplicationError]:
        """One claimed email, built and handed to the relay: the status its outbox row
        takes, with the error, and the result. `kept` gets the bytes that went."""
        spec, mid, subject = m.spec, m.mid, m.subject

        def failed(reason: str) -> tuple[str, str | None, SendResult]:
            result = SendResult(
                key=spec.key,
                outcome=SendOutcome.failed,
                message_id=mid,
                subject=subject,
                error=reason,
            )
            return "failed", reason, result

        if m.rendered is None:
            return failed(m.unrendered)
        # The To line carries the address as it goes to the relay (its domain in IDNA form).
        to = spec
        if not spec.to.email.isascii():
            address = ascii_domain(spec.to.email)
            to = spec.model_copy(update={"to": spec.to.model_copy(update={"email": address})})
        try:
            message = build(
                m.agreement, to, m.rendered, self.settings.mail_from, dt.datetime.now(dt.UTC)
            )
        except Exception as error:  # a header the data makes impossible, and the like
            return failed(f"cannot build the email: {_why(error)}")
        if spec.attachment is not None and spec.attachment.attachable:
            try:
                data = await asyncio.to_thread(
                    store_for(self.settings.data_dir).get, spec.attachment.sha256
                )
            except KeyError:  # the store lost it: the email goes without (the page has it)
                data = None
            if data is not None:
                message.add_attachment(
                    data, maintype="application", subtype="pdf", filename=spec.attachment.filename
                )
        handover = await self.hand_over(
            spec.to.email, message, lambda: self.outbox.handed(spec.key, kept.sha256), kept.keep
        )
        if handover.status == "failed":
            return failed(handover.error or "")
        if handover.retry is not None:
            return "pending", handover.error, handover.retry
        sent = SendResult(key=spec.key, outcome=SendOutcome.sent, message_id=mid, subject=subject)
        return "sent", None, sent

    async def hand_over(
        self,
        to: str,
        message: EmailMessage,
        handed: Callable[[], None],
        keep: Callable[[bytes], None] | None = None,
    ) -> Handover:
        """One message to the relay (`transmit`), and what came of it: sent; failed for good
        (a 5xx answer, a refused recipient, a message that cannot go), with the reason; or
        a passing fault (a connection error, a timeout, a 4xx answer), with the error to
        raise so that Temporal retries. The weekly digest sends through this too."""
        try:
            await self.transmit(to, message, handed, keep)
        except Unsendable as error:
            return Handover("failed", str(error))
        except aiosmtplib.SMTPResponseException as error:
            if error.code >= 500:
                return Handover("failed", f"{error.code} {error.message}")
            retry = ApplicationError(f"SMTP {error.code}: {error.message}", type=TRANSIENT)
            return Handover("pending", f"{error.code} {error.message}", retry)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            text = f"{type(error).__name__}: {error}"
            retry = ApplicationError(f"mail server unreachable: {text}", type=TRANSIENT)
            return Handover("pending", text, retry)
        return Handover("sent")

    async def transmit(
        self,
        to: str,
        message: EmailMessage,
        handed: Callable[[], None],
        keep: Callable[[bytes], None] | None = None,
    ) -> None:
        """Hand the message to the relay, one step at a time: after the relay's go-ahead and
        just before the content goes, `handed()` marks it (the outbox says `handed`). A
        worker that dies from then on has delivered it, so a later attempt does not send it
        again (`claim`). `keep` is given the content as the relay will receive it, once it
        is encoded for this relay and before the envelope is sent."""
        if self.limiter is not None:
            await self.limiter.acquire()
        sender = _sender(self.settings.mail_from)
        recipient = ascii_domain(to)
        async with self.pool.connection(self.settings) as client:
            utf8 = not (sender + recipient).isascii()
            if utf8 and not client.supports_extension("SMTPUTF8"):
                raise Unsendable(
                    f"{recipient if not recipient.isascii() else sender} has non-ASCII "
                    "characters before the @, and the mail server does not offer SMTPUTF8, "
                    "which such an address needs"
                )
            eight_bit = client.supports_extension("8BITMIME")
            try:
                content = as_bytes(message, utf8=utf8, cte_type="8bit" if eight_bit else "7bit")
            except Exception as error:  # an encoding the message cannot have: no retry helps
                raise Unsendable(f"cannot encode the email: {_why(error)}") from None
            if keep is not None:
                # As the relay receives it: the transfer's own line endings (CRLF) applied,
                # which `smtp.data` applies too, so the hash is the message's at the relay.
                keep(normalize_message_line_endings(content))
            options = ["SMTPUTF8"] if utf8 else []
            if eight_bit:
                options.append("BODY=8BITMIME")
            encoding = "utf-8" if utf8 else "ascii"
            await client.mail(sender, options=options, encoding=encoding)
            await client.rcpt(recipient, encoding=encoding)
            # `handed` runs on the event loop, not in a thread: an await between the mark and
            # the write of the content would let a worker killed in between leave a message
            # marked handed that never went (it would then never be sent).
            await smtp.data(client, content, handed)

    def _link(self, spec: EmailSpec) -> str | None:
        """The signer's personal link, signed with the configured secret."""
        if spec.link_token is None or spec.round is None:
            return None
        value = make_link(
            self.settings.signing_secret.get_secret_value(),
            spec.agreement_id,
            spec.round.number,
            spec.to.email,
            spec.link_token,
            spec.round.expires_at,
        )
        return f"{self.settings.public_base_url.rstrip('/')}/sign/{value}"

    async def _terms(self, sha256: str) -> Agreement | ApplicationError:
        """The terms under their hash: read from the database once (in a thread), then
        from memory, without a trip to a thread for each email."""
        agreement = self.terms.get(sha256)
        if agreement is None:
            try:
                agreement = await asyncio.to_thread(stored_terms, self.db, sha256)
            except ApplicationError as error:
                return error
            if len(self.terms) >= TERMS_KEPT:
                del self.terms[next(iter(self.terms))]  # the oldest
            self.terms[sha256] = agreement
        return agreement


TERMS_KEPT = 256


class Mail(NamedTuple):
    """One email of a batch, rendered (or with the reason it could not be)."""

    at: int  # its place in the batch
    spec: EmailSpec
    agreement: Agreement
    mid: str
    subject: str
    rendered: Rendered | None
    unrendered: str


class Kept:
    """The message of one email as it went to the relay, and its SHA-256."""

    __slots__ = ("content", "sha256")

    def __init__(self) -> None:
        self.content: bytes | None = None
        self.sha256: str | None = None

    def keep(self, content: bytes) -> None:
        self.content = content
        self.sha256 = hashlib.sha256(content).hexdigest()


class Mark(NamedTuple):
    """What one email came to, for the results write: its status and error, and for a sent
    one the message that went."""

    status: str
    error: str | None
    kept: Kept | None = None


class Handover(NamedTuple):
    """What came of handing one message to the relay."""

    status: str  # sent, failed (for good), pending (a passing fault: `retry` is raised)
    error: str | None = None
    retry: ApplicationError | None = None


class Held(NamedTuple):
    """An outbox row as a claim finds it."""

    status: str
    subject: str
    error: str | None
    worker: str | None


class Outbox:
    """The outbox rows of the emails being sent, in SQLAlchemy Core statements made once
    (the ORM's unit of work, and building each statement anew, cost more than the SQL)."""

    def __init__(self, db: Engine) -> None:
        self.db = db
        self._loop: Connection | None = None  # for `handed`, on the event loop
        self._loop_lock = threading.Lock()
        dialect = postgresql if db.dialect.name == "postgresql" else sqlite
        table = OutboxRecord.__table__  # type: ignore[attr-defined]
        self.table = table
        keys: BindParameter[list[str]] = bindparam("keys", expanding=True)
        now = bindparam("now", type_=table.c.lease_until.type)
        # A new row is written as claimed: in the first attempt at a batch (nearly always
        # all new) this one statement is the whole claim. The rows it returns are the ones
        # this statement wrote; a row another attempt wrote first is not among them.
        self.insert = (
            dialect.insert(table)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(table.c.key)
        )
        free = or_(
            table.c.status == "pending",
            and_(
                table.c.status == "sending",
                or_(table.c.lease_until.is_(None), table.c.lease_until < now),
            ),
        )
        self.take = (
            update(table)
            .where(table.c.key.in_(keys), free)
            .values(
                status="sending",
                attempts=table.c.attempts + 1,
                lease_until=bindparam("lease", type_=table.c.lease_until.type),
                worker=bindparam("worker"),
            )
            .returning(table.c.key)
        )
        # The attempt that handed the message over died before the relay's answer was
        # written down. The relay most likely has it: sending again could deliver it twice,
        # so it counts as sent, and the row says it is unconfirmed.
        self.unconfirmed = (
            update(table)
            .where(
                table.c.key.in_(keys),
                table.c.status == "handed",
                table.c.lease_until < now,
            )
            .values(status="sent", sent_at=now, lease_until=None, error=UNCONFIRMED)
        )
        self.read = select(
            table.c.key, table.c.status, table.c.subject, table.c.error, table.c.worker
        ).where(table.c.key.in_(keys))
        # handed: still this attempt's, until the answer; with the hash of what goes, so a
        # worker that dies before the answer leaves the message's hash written down.
        self.hand = (
            update(table)
            .where(table.c.key == bindparam("the_key"))
            .values(status="handed", error=None, sha256=bindparam("the_sha256"))
        )
        # Sent: with the message that went (one statement, a row of values for each).
        self.sent = (
            update(table)
            .where(table.c.key == bindparam("the_key"))
            .values(
                status="sent",
                error=None,
                lease_until=None,
                sent_at=now,
                sha256=bindparam("the_sha256"),
                message=bindparam("the_message", type_=table.c.message.type),
                message_weeded_at=None,
            )
        )
        self.other = (
            update(table)
            .where(table.c.key == bindparam("the_key"))
            .values(status=bindparam("the_status"), error=bindparam("the_error"), lease_until=None)
        )

    def write(self, job: Callable[[Connection], T]) -> T:
        """One job (a claim, a mark) in a transaction of its own."""
        with write_lock(self.db), self.db.begin() as connection:
            return job(connection)

    def write_all(self, jobs: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        """Several jobs in one transaction (one commit, one turn at SQLite's lock), each
        job's result (True, result) or error (False, error) in its place. When the shared
        transaction fails, each job is done again in one of its own: a write that cannot be
        made holds back no other."""
        if len(jobs) > 1:
            try:
                with write_lock(self.db), self.db.begin() as connection:
                    return [(True, job(connection)) for job in jobs]
            except Exception:
                pass  # rolled back: one by one below
        done: list[tuple[bool, Any]] = []
        for job in jobs:
            try:
                done.append((True, self.write(job)))
            except Exception as error:
                done.append((False, error))
        return done

    def claim(
        self, emails: list[tuple[EmailSpec, str, str]], lease: dt.timedelta
    ) -> Callable[[Connection], list[tuple[Held, bool]]]:
        """The outbox row of each email (spec, subject, Message-ID), written now if it is
        new, and whether this attempt holds it: a job for `write`. In one transaction: the
        new rows are written, claimed; one conditional UPDATE takes those of the others
        that are free, so of two workers racing on one key exactly one wins, and a claim
        left by a crashed attempt lapses with its lease. Keys go in sorted order, so two
        batches that share rows take their locks in the same order (PostgreSQL), and a key
        twice in a batch is claimed once."""
        return lambda connection: self._claim(connection, emails, lease)

    def _claim(
        self, connection: Connection, emails: list[tuple[EmailSpec, str, str]], lease: dt.timedelta
    ) -> list[tuple[Held, bool]]:
        now = utcnow()
        worker = worker_name()
        new: dict[str, dict[str, Any]] = {}
        for spec, subject, mid in emails:
            new.setdefault(
                spec.key,
                {
                    "key": spec.key,
                    "agreement_id": spec.agreement_id,
                    "template": spec.template,
                    "recipient": spec.to.email,
                    "subject": subject,
                    "message_id": mid,
                    "status": "sending",
                    "planned_at": spec.planned_at,
                    "attempts": 1,
                    "lease_until": now + lease,
                    "worker": worker,
                    "created_at": now,
                },
            )
        keys = sorted(new)
        held: dict[str, Held] = {}
        taken = set(connection.execute(self.insert, [new[key] for key in keys]).scalars())
        there = [key for key in keys if key not in taken]
        if there:
            found = connection.execute(
                self.take, {"keys": there, "now": now, "lease": now + lease, "worker": worker}
            )
            taken.update(found.scalars())
            lapsed = [key for key in there if key not in taken]
            if lapsed:
                connection.execute(self.unconfirmed, {"keys": lapsed, "now": now})
                for row in connection.execute(self.read, {"keys": lapsed}):
                    held[row.key] = Held(row.status, row.subject, row.error, row.worker)
        claims: list[tuple[Held, bool]] = []
        for spec, subject, _ in emails:
            if spec.key in taken:
                claims.append((Held("sending", subject, None, worker), True))
                taken.discard(spec.key)  # the same key again in the batch: held by the first
                held[spec.key] = Held("sending", subject, None, worker)
            else:
                claims.append((held[spec.key], False))
        return claims

    def handed(self, key: str, sha256: str | None = None) -> None:
        """One UPDATE: it runs on the event loop, so it is kept short, on a connection of
        its own kept open (taking one from the engine's pool, and giving it back, cost as
        much as the UPDATE). One that fails is replaced, and the UPDATE tried once more
        (PostgreSQL restarted, say): it says the same whether it ran before or not."""
        with write_lock(self.db), self._loop_lock:
            for last in (False, True):
                if self._loop is None:
                    self._loop = self.db.connect()
                try:
                    with self._loop.begin():
                        self._loop.execute(self.hand, {"the_key": key, "the_sha256": sha256})
                    return
                except DBAPIError:
                    self._close_loop()
                    if last:
                        raise

    def _close_loop(self) -> None:
        connection, self._loop = self._loop, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        with self._loop_lock:
            self._close_loop()

    def mark(self, marks: dict[str, Mark]) -> Callable[[Connection], None]:
        """What each email came to, a job for `write`: the sent ones with their messages in
        one statement, the others (failed, or pending again for a retry) in another."""
        sent = [(key, mark.kept) for key, mark in marks.items() if mark.status == "sent"]
        other = [
            {"the_key": key, "the_status": mark.status, "the_error": mark.error}
            for key, mark in marks.items()
            if mark.status != "sent"
        ]

        def job(connection: Connection) -> None:
            if sent:
                now = utcnow()
                connection.execute(
                    self.sent,
                    [
                        {
                            "the_key": key,
                            "now": now,
                            "the_sha256": kept.sha256 if kept else None,
                            "the_message": kept.content if kept else None,
                        }
                        for key, kept in sent
                    ],
                )
            if other:
                connection.execute(self.other, other)

        return job


class Together:
    """The outbox writes of the worker's activities, gathered: while one transaction is
    being written (in a thread), the claims and results asked for meanwhile wait, and go
    together in the next, with one trip to a thread and one commit for them all. Each
    comes back to the activity that asked for it, result or error."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.waiting: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def write(self, job: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.waiting.append((job, future))
        if self.writer is None or self.writer.done() or self.writer.get_loop() is not loop:
            self.writer = loop.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self.waiting:
            jobs, self.waiting = self.waiting, []
            try:
                done = await asyncio.to_thread(self.outbox.write_all, [job for job, _ in jobs])
            except BaseException as error:  # the loop is closing: no job is left waiting
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(error)
                raise
            for (_, future), (ok, value) in zip(jobs, done, strict=True):
                if future.done():  # its activity was cancelled; the write stands
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)


def lease() -> dt.timedelta:
    """As long as Temporal lets this attempt run: its start-to-close timeout."""
    timeout = activity.info().start_to_close_timeout if activity.in_activity() else None
    return timeout or dt.timedelta(seconds=90)


@lru_cache(maxsize=1)
def _host() -> str:
    return socket.gethostname()


def worker_name() -> str:
    return f"{_host()}:{os.getpid()}"


@lru_cache(maxsize=8)
def _sender(mail_from: str) -> str:
    return ascii_domain(sender_address(mail_from))


def ascii_domain(address: str) -> str:
    """The address with its domain in IDNA's ASCII form (åsa@kömmun.se -> åsa@xn--kmmun-jua.se),
    as the relay and the To line need it. An address that is ASCII already, or that
    email_validator cannot read, is given back as it is."""
    if address.isascii():
        return address
    try:
        parts = validate_email(address, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError:
        return address
    return f"{parts.local_part}@{parts.ascii_domain}"


def _every(
    results: list[SendResult | ApplicationError | None],
) -> list[SendResult | ApplicationError]:
    found = [r for r in results if r is not None]
    assert len(found) == len(results), "an email of the batch has no result"
    return found


def _why(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def stored_terms(db: Engine, sha256: str) -> Agreement:
    with Session(db) as session:
        row = session.get(TermsRecord, sha256)
        if row is None:
            raise ApplicationError(f"terms {sha256} are not stored", type="TermsMissing")
        return Agreement.model_validate_json(row.terms_json)
