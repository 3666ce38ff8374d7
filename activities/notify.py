"""The notification activity: render one email and send it exactly once per outbox key.

The outbox row is written before the message goes out; a second attempt for the same key
finds it and never sends twice. SMTP failures are classified: a connection error, a
timeout or a 4xx answer is retried by Temporal with backoff; a 5xx answer or a refused
recipient is permanent, recorded as failed, and reported back so the workflow can tell the
coordinator once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
from functools import lru_cache

import aiosmtplib
from jinja2 import TemplateError
from sqlalchemy import Engine, and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from emails.message import build, message_id, sender_address
from emails.render import render_email
from models.agreement import Agreement
from models.db import ready
from models.lifecycle import EmailSpec, SendOutcome, SendResult
from models.records import OutboxRecord, TermsRecord, utcnow
from service.links import make_link

TRANSIENT = "SmtpTransient"


class Notifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = ready(settings.db_url())

    @activity.defn(name="send_email")
    async def send_email(self, spec: EmailSpec) -> SendResult:
        agreement = await asyncio.to_thread(_terms, self.db, spec.terms_sha256)
        try:
            rendered = render_email(agreement, spec, self._link(spec))
        except TemplateError as error:  # a defect, not a passing fault: retrying cannot help
            raise ApplicationError(
                f"cannot render {spec.template}: {error}", type="RenderFailed", non_retryable=True
            ) from None
        mid = message_id(spec.key, self.settings.mail_from)
        row, claimed = await asyncio.to_thread(self._claim, spec, rendered.subject, mid)
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
        message = build(agreement, spec, rendered, self.settings.mail_from, dt.datetime.now(dt.UTC))
        try:
            await aiosmtplib.send(
                message,
                sender=sender_address(self.settings.mail_from),
                recipients=[spec.to.email],
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                username=self.settings.smtp_user,
                password=(
                    self.settings.smtp_password.get_secret_value()
                    if self.settings.smtp_password
                    else None
                ),
                use_tls=self.settings.smtp_security == "tls",
                start_tls=self.settings.smtp_security == "starttls",
                timeout=self.settings.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            reason = "; ".join(f"{r.code} {r.message}" for r in error.recipients)
            return await self._failed(spec, mid, rendered.subject, reason)
        except aiosmtplib.SMTPResponseException as error:
            if error.code >= 500:
                return await self._failed(
                    spec, mid, rendered.subject, f"{error.code} {error.message}"
                )
            await asyncio.to_thread(
                self._mark, spec.key, "pending", f"{error.code} {error.message}"
            )
            raise ApplicationError(f"SMTP {error.code}: {error.message}", type=TRANSIENT) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            text = f"{type(error).__name__}: {error}"
            await asyncio.to_thread(self._mark, spec.key, "pending", text)
            raise ApplicationError(f"mail server unreachable: {text}", type=TRANSIENT) from None
        await asyncio.to_thread(self._mark, spec.key, "sent", None)
        return SendResult(
            key=spec.key, outcome=SendOutcome.sent, message_id=mid, subject=rendered.subject
        )

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
        now = utcnow()
        with Session(self.db) as session:
            if session.get(OutboxRecord, spec.key) is None:
                session.add(
                    OutboxRecord(
                        key=spec.key,
                        agreement_id=spec.agreement_id,
                        template=spec.template,
                        recipient=spec.to.email,
                        subject=subject,
                        message_id=mid,
                        status="pending",
                        planned_at=spec.planned_at,
                    )
                )
                try:
                    session.commit()
                except IntegrityError:  # another worker wrote it first
                    session.rollback()
        free = or_(
            col(OutboxRecord.status) == "pending",
            and_(
                col(OutboxRecord.status) == "sending",
                or_(col(OutboxRecord.lease_until).is_(None), col(OutboxRecord.lease_until) < now),
            ),
        )
        with self.db.begin() as connection:
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
        with Session(self.db) as session:
            row = session.get(OutboxRecord, spec.key)
            assert row is not None
            session.expunge(row)
            return row, taken.rowcount == 1

    def _mark(self, key: str, status: str, error: str | None) -> None:
        with Session(self.db) as session:
            row = session.get(OutboxRecord, key)
            if row is None:
                return
            row.status = status
            row.error = error
            row.lease_until = None
            if status == "sent":
                row.sent_at = utcnow()
            session.add(row)
            session.commit()

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


@lru_cache(maxsize=256)
def _cached_terms(db: Engine, sha256: str) -> Agreement:
    with Session(db) as session:
        row = session.get(TermsRecord, sha256)
        if row is None:
            raise ApplicationError(f"terms {sha256} are not stored", type="TermsMissing")
        return Agreement.model_validate_json(row.terms_json)


def _terms(db: Engine, sha256: str) -> Agreement:
    return _cached_terms(db, sha256)
