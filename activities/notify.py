"""The notification activity: render one email and send it exactly once per outbox key.

The outbox row is written before the message goes out, and one attempt at a time holds it
(a lease), so a second attempt or a second worker never sends it again. The row moves
pending -> sending -> handed (the content is going to the relay) -> sent or failed. SMTP
failures are classified: a connection error, a
timeout or a 4xx answer is retried by Temporal with backoff; a 5xx answer or a refused
recipient is permanent, recorded as failed, and reported back so the workflow can tell the
coordinator once. So is an email that cannot be rendered, built or encoded (a defect in
the terms or a template, which no retry can mend): it is failed with its reason, never
left `sending` to be retried for days.

Addresses go to the relay with their domain in its ASCII (IDNA) form, so an international
domain needs nothing of the relay. Only an address with non-ASCII characters before the @
needs SMTPUTF8: it is used when the relay offers it, and the email fails when it does not
(`agreements check` refuses such addresses; older terms may still hold one).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
from collections.abc import AsyncIterator
from email.message import EmailMessage
from functools import lru_cache

import aiosmtplib
from aiolimiter import AsyncLimiter
from aiosmtplib.email import flatten_message
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import smtp
from activities.contracts import EmailActivities
from emails.links import make_link
from emails.message import build, message_id, sender_address
from emails.render import Rendered, render_email
from models.agreement import Agreement
from models.config import Settings
from models.db import ready, write_lock
from models.lifecycle import EmailSpec, SendOutcome, SendResult
from models.records import OutboxRecord, TermsRecord, utcnow

TRANSIENT = "SmtpTransient"
UNCONFIRMED = "handed to the mail server by a worker that stopped before its answer: not sent again"


class Unsendable(Exception):
    """An email that can never go as it is: no retry helps, so it is failed with this reason."""


class SmtpPool:
    """Open connections to the relay, reused from one email to the next (connecting and
    EHLO cost more than sending a reminder). A connection goes back to the pool only after a
    whole transaction succeeded; after any error it is closed, so the next email starts on a
    fresh one. One that the relay closed while idle is found out by a NOOP before use, and
    one opened with other settings (another relay) is not used again."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.idle: list[tuple[tuple[object, ...], aiosmtplib.SMTP]] = []

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
            opened_for, client = self.idle.pop()
            if opened_for != key:
                await _quit(client)
                continue
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                _close(client)
        return None

    @contextlib.asynccontextmanager
    async def connection(self, config: Settings) -> AsyncIterator[aiosmtplib.SMTP]:
        key = self._key(config)
        client = await self._reused(key) or await self._open(config)
        try:
            yield client
        except BaseException:
            _close(client)
            raise
        if client.is_connected and len(self.idle) < self.size:
            self.idle.append((key, client))
        else:
            await _quit(client)

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for _, client in idle:
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

    @activity.defn(name="send_email")
    async def send_email(self, spec: EmailSpec) -> SendResult:
        agreement = await asyncio.to_thread(_terms, self.db, spec.terms_sha256)
        mid = message_id(spec.key, self.settings.mail_from)
        # An email that cannot be rendered now never can be: it is claimed like any other,
        # and its outbox row says failed, with the reason (below).
        rendered: Rendered | None = None
        subject, unrendered = spec.template, ""
        try:
            rendered = render_email(agreement, spec, self._link(spec))
            subject = rendered.subject
        except Exception as error:  # a defect in the terms or a template, not a passing fault
            unrendered = f"cannot render {spec.template}: {_why(error)}"
        row, claimed = await asyncio.to_thread(self._claim, spec, subject, mid)
        if row.status == "sent":
            return SendResult(
                key=spec.key, outcome=SendOutcome.already_sent, message_id=mid, subject=row.subject
            )
        if row.status == "failed":
            return SendResult(
                key=spec.key,
                outcome=SendOutcome.failed,
                message_id=mid,
                subject=row.subject,
                error=row.error,
            )
        if not claimed:  # another worker is sending it right now: ask again after backoff
            raise ApplicationError(
                f"another attempt ({row.worker}) is sending this email", type=TRANSIENT
            )
        if rendered is None:
            return await self._failed(spec, mid, subject, unrendered)
        # The To line carries the address as it goes to the relay (its domain in IDNA form).
        to = spec.model_copy(
            update={"to": spec.to.model_copy(update={"email": ascii_domain(spec.to.email)})}
        )
        try:
            message = build(
                agreement, to, rendered, self.settings.mail_from, dt.datetime.now(dt.UTC)
            )
        except Exception as error:  # a header the data makes impossible, and the like
            return await self._failed(spec, mid, subject, f"cannot build the email: {_why(error)}")
        try:
            await self._transmit(spec, message)
        except Unsendable as error:
            return await self._failed(spec, mid, subject, str(error))
        except aiosmtplib.SMTPResponseException as error:
            if error.code >= 500:
                return await self._failed(spec, mid, subject, f"{error.code} {error.message}")
            await asyncio.to_thread(
                self._mark, spec.key, "pending", f"{error.code} {error.message}"
            )
            raise ApplicationError(f"SMTP {error.code}: {error.message}", type=TRANSIENT) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            text = f"{type(error).__name__}: {error}"
            await asyncio.to_thread(self._mark, spec.key, "pending", text)
            raise ApplicationError(f"mail server unreachable: {text}", type=TRANSIENT) from None
        await asyncio.to_thread(self._mark, spec.key, "sent", None)
        return SendResult(key=spec.key, outcome=SendOutcome.sent, message_id=mid, subject=subject)

    @activity.defn(name="send_emails")
    async def send_emails(self, specs: list[EmailSpec]) -> list[SendResult]:
        """The emails an agreement sends at one moment, in one activity (one for the lot in
        the agreement's history instead of one each). Each goes as `send_email` sends it; one
        that meets a passing fault comes back as `retry`, and the workflow then sends it on
        its own with the whole retry policy."""

        async def one(spec: EmailSpec) -> SendResult:
            try:
                return await self.send_email(spec)
            except ApplicationError as error:
                if error.non_retryable:
                    raise
                return SendResult(
                    key=spec.key,
                    outcome=SendOutcome.retry,
                    message_id="",
                    subject=spec.template,
                    error=str(error),
                )

        return list(await asyncio.gather(*(one(spec) for spec in specs)))

    async def _transmit(self, spec: EmailSpec, message: EmailMessage) -> None:
        """Hand the message to the relay, one step at a time: after the relay's go-ahead and
        just before the content goes, the outbox says `handed`. A worker that dies from
        then on has delivered it, so a later attempt does not send it again (`_claim`)."""
        if self.limiter is not None:
            await self.limiter.acquire()
        sender = ascii_domain(sender_address(self.settings.mail_from))
        recipient = ascii_domain(spec.to.email)
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
                content = flatten_message(
                    message, utf8=utf8, cte_type="8bit" if eight_bit else "7bit"
                )
            except Exception as error:  # an encoding the message cannot have: no retry helps
                raise Unsendable(f"cannot encode the email: {_why(error)}") from None
            options = ["SMTPUTF8"] if utf8 else []
            if eight_bit:
                options.append("BODY=8BITMIME")
            encoding = "utf-8" if utf8 else "ascii"
            await client.mail(sender, options=options, encoding=encoding)
            await client.rcpt(recipient, encoding=encoding)

            def handed() -> None:
                # On the event loop, not in a thread: an await between this mark and the
                # write of the content would let a worker killed in between leave a message
                # marked handed that never went (it would then never be sent).
                self._mark(spec.key, "handed", None)

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

    def _claim(self, spec: EmailSpec, subject: str, mid: str) -> tuple[OutboxRecord, bool]:
        """The outbox row for this key, written now if it is new, and whether this attempt
        holds it. One conditional UPDATE takes the claim, so of two workers racing on one
        key exactly one wins; a claim left by a crashed attempt lapses with its lease."""
        with write_lock(self.db):
            return self._claim_now(spec, subject, mid)

    def _claim_now(self, spec: EmailSpec, subject: str, mid: str) -> tuple[OutboxRecord, bool]:
        """In one transaction, with SQLAlchemy Core (the ORM's unit of work costs more than
        the three statements): the row is written if it is new, the conditional UPDATE
        takes the claim, and the row is read back as it stands."""
        now = utcnow()
        dialect = postgresql if self.db.dialect.name == "postgresql" else sqlite
        table = OutboxRecord.__table__  # type: ignore[attr-defined]
        new = dialect.insert(table).values(
            key=spec.key,
            agreement_id=spec.agreement_id,
            template=spec.template,
            recipient=spec.to.email,
            subject=subject,
            message_id=mid,
            status="pending",
            planned_at=spec.planned_at,
            attempts=0,
            created_at=now,
        )
        free = or_(
            col(OutboxRecord.status) == "pending",
            and_(
                col(OutboxRecord.status) == "sending",
                or_(col(OutboxRecord.lease_until).is_(None), col(OutboxRecord.lease_until) < now),
            ),
        )
        with self.db.begin() as connection:
            connection.execute(new.on_conflict_do_nothing(index_elements=["key"]))
            taken = connection.execute(
                update(OutboxRecord)
                .where(col(OutboxRecord.key) == spec.key, free)
                .values(
                    status="sending",
                    attempts=col(OutboxRecord.attempts) + 1,
                    lease_until=now + _lease(),
                    worker=_worker(),
                )
            )
            if taken.rowcount == 0:
                # The attempt that handed the message over died before the relay's answer
                # was written down. The relay most likely has it: sending again could
                # deliver it twice, so it counts as sent, and the row says it is unconfirmed.
                connection.execute(
                    update(OutboxRecord)
                    .where(
                        col(OutboxRecord.key) == spec.key,
                        col(OutboxRecord.status) == "handed",
                        col(OutboxRecord.lease_until) < now,
                    )
                    .values(
                        status="sent",
                        sent_at=now,
                        lease_until=None,
                        error=UNCONFIRMED,
                    )
                )
            found = connection.execute(select(table).where(table.c.key == spec.key)).one()
        return OutboxRecord.model_validate(dict(found._mapping)), taken.rowcount == 1

    def _mark(self, key: str, status: str, error: str | None) -> None:
        """One UPDATE (Core): it runs on the event loop for `handed`, so it is kept short."""
        values: dict[str, object] = {"status": status, "error": error}
        if status != "handed":  # handed: still this attempt's, until the answer
            values["lease_until"] = None
        if status == "sent":
            values["sent_at"] = utcnow()
        with write_lock(self.db), self.db.begin() as connection:
            connection.execute(
                update(OutboxRecord).where(col(OutboxRecord.key) == key).values(**values)
            )

    async def _failed(self, spec: EmailSpec, mid: str, subject: str, reason: str) -> SendResult:
        await asyncio.to_thread(self._mark, spec.key, "failed", reason)
        return SendResult(
            key=spec.key, outcome=SendOutcome.failed, message_id=mid, subject=subject, error=reason
        )


def _lease() -> dt.timedelta:
    """As long as Temporal lets this attempt run: its start-to-close timeout."""
    timeout = activity.info().start_to_close_timeout if activity.in_activity() else None
    return timeout or dt.timedelta(seconds=90)


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


def _why(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


@lru_cache(maxsize=256)
def _cached_terms(db: Engine, sha256: str) -> Agreement:
    with Session(db) as session:
        row = session.get(TermsRecord, sha256)
        if row is None:
            raise ApplicationError(f"terms {sha256} are not stored", type="TermsMissing")
        return Agreement.model_validate_json(row.terms_json)


def _terms(db: Engine, sha256: str) -> Agreement:
    return _cached_terms(db, sha256)
