"""Gallring: the signers' IP addresses and user agents (`signer_trace`) pseudonymised once
they are older than the retention period (AGREEMENTS_RETENTION_DAYS). The `Weeding`
workflow (workflows/weeding.py) runs the activity daily, on a Temporal schedule the worker
creates.

An address becomes "pseud:" and the first 16 hex digits of HMAC-SHA256(signing secret,
address): two rows of the same address still match each other, the address itself is gone
(and cannot be found again by trying addresses without the secret). A user agent is
removed. Idempotent: a row weeded once is never touched again.

The same daily run clears the kept messages of sent emails (`outbox.message`) once they
are older than AGREEMENTS_MESSAGE_RETENTION_DAYS (`MessageWeeder`); each row keeps the
SHA-256 of its message and says when the message was weeded (`message_weeded_at`), so the
archive can still show that it was sent and which message it was.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import Session, col, select
from temporalio import activity

from models.config import Settings
from models.db import ready, write_lock
from models.records import OutboxRecord, SignerTrace, utcnow

PSEUDONYM = "pseud:"
BATCH = 500  # rows per transaction: a long backlog never holds the database for long


def pseudonym(secret: bytes, ip: str) -> str:
    digest = hmac.new(secret, ip.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM + digest[:16]


class Weeder:
    """The weeding activity, bound to one database URL and the signing secret."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret.encode()

    @activity.defn(name="weed_signer_traces")
    async def weed_signer_traces(self, before: dt.datetime) -> int:
        """Pseudonymise the traces of events before `before` not weeded yet; how many."""
        return await asyncio.to_thread(self.weed, before)

    def weed(self, before: dt.datetime) -> int:
        before = before.astimezone(dt.UTC)

        def batch(session: Session) -> int:
            rows = session.exec(
                select(SignerTrace)
                .where(col(SignerTrace.at) < before, col(SignerTrace.weeded_at).is_(None))
                .order_by(col(SignerTrace.id))
                .limit(BATCH)
            ).all()
            now = utcnow()
            for row in rows:
                if row.ip and not row.ip.startswith(PSEUDONYM):
                    row.ip = pseudonym(self.secret, row.ip)
                row.user_agent = None
                row.weeded_at = now
                session.add(row)
            return len(rows)

        return in_batches(self.url, batch)


def in_batches(url: str, batch: Callable[[Session], int]) -> int:
    """Run `batch` (which weeds at most BATCH rows and says how many) in a transaction of
    its own, again and again until one weeds fewer: how many in all."""
    db = ready(url)
    done = 0
    while True:
        with write_lock(db), Session(db) as session:
            weeded = batch(session)
            session.commit()
        done += weeded
        if weeded < BATCH:
            return done


class MessageWeeder:
    """The weeding of the messages that sent emails keep, by the configured retention."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.db_url()
        self.days = settings.message_retention_days

    @activity.defn(name="weed_outbox_messages")
    async def weed_outbox_messages(self, now: dt.datetime) -> int:
        """Clear the messages of emails sent more than the retention before `now` (the
        workflow's time); how many. A retention of 0 keeps them for ever."""
        if self.days <= 0:
            return 0
        return await asyncio.to_thread(self.weed, now - dt.timedelta(days=self.days))

    def weed(self, before: dt.datetime) -> int:
        before = before.astimezone(dt.UTC)

        def batch(session: Session) -> int:
            keys = session.exec(
                select(OutboxRecord.key)
                .where(
                    col(OutboxRecord.sent_at) < before,
                    col(OutboxRecord.message).is_not(None),
                )
                .order_by(col(OutboxRecord.key))
                .limit(BATCH)
            ).all()
            if keys:
                session.execute(
                    update(OutboxRecord)
                    .where(col(OutboxRecord.key).in_(keys))
                    .values(message=None, message_weeded_at=utcnow())
                )
            return len(keys)

        return in_batches(self.url, batch)
