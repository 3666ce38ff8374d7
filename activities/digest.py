"""The weekly digest's activities: who gets one, and one person's digest gathered, rendered
and sent exactly once per ISO week.

Who: active people who are coordinator or finance in an organisation that owns agreements.
An administrator or a reader there gets none (an administrator who also coordinates is a
coordinator there: one role per organisation). What: the lines of "Att göra"
(agreements/attention.py, the same queries and rules) that are overdue or fall due within
the digest's days: decisions with a deadline, reports not in, instalments not invoiced or
not paid, and what else is due. Finance sees the money only, by the pages' own rule
(`Who.money_only`). Signature rounds, failed emails and reports to approve stay on the page.

Once: each digest is a `digest_sent` row under `digest:<person id>:<ISO week>`, written
before it is sent and held by one attempt at a time, as the outbox holds an email
(activities/notify.py); it goes to the relay through the notifier's own connections, rate
limit and `handed` mark, so a retried activity, a second worker or a second run in the same
week never sends it again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy import Connection, Engine, Update, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col
from sqlmodel import select as select_rows
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import DigestActivities
from activities.notify import TRANSIENT, UNCONFIRMED, Notifier, lease, worker_name
from agreements.access import PersonRole, Who
from agreements.attention import Why, attention
from emails.message import build_for_person, message_id
from emails.render import DIGEST, render_digest
from i18n import language_of
from models.agreement import Language
from models.config import Settings
from models.db import ready, write_lock
from models.digest import (
    Digest,
    DigestDay,
    DigestGroup,
    DigestLine,
    DigestOutcome,
    DigestRequest,
    DigestResult,
    Recipients,
    digest_key,
)
from models.people import Membership, Ownership, Person
from models.records import DigestRecord, utcnow

ROLES = (PersonRole.coordinator.value, PersonRole.finance.value)
# The lines of "Att göra" a digest lists, in the page's order.
LISTED = (Why.deadline, Why.overdue_report, Why.overdue_invoice, Why.unpaid, Why.due)


def recipients(db: Engine) -> list[int]:
    """The ids of the active people who are coordinator or finance in an organisation that
    owns at least one agreement, in id order."""
    owning = select(col(Ownership.organisation_id)).distinct()
    with Session(db) as session:
        rows = session.exec(
            select_rows(Person.id)
            .join(Membership, col(Membership.person_id) == col(Person.id))
            .where(
                col(Person.active).is_(True),
                col(Membership.role).in_(ROLES),
                col(Membership.organisation_id).in_(owning),
            )
            .distinct()
            .order_by(col(Person.id))
        ).all()
    return [person_id for person_id in rows if person_id is not None]


def gather(db: Engine, request: DigestRequest) -> Digest | None:
    """One person's digest for `request.day`: what is overdue or due within `request.days`
    in the agreements of the organisations where they are coordinator or finance, grouped
    by agreement (the most urgent agreement first, each line in date order). None for a
    person who is gone, inactive, or neither coordinator nor finance anywhere; a digest
    without groups when there is nothing to say."""
    with Session(db) as session:
        person = session.get(Person, request.person_id)
        if person is None or not person.active:
            return None
        memberships = session.exec(
            select_rows(Membership).where(
                Membership.person_id == request.person_id, col(Membership.role).in_(ROLES)
            )
        ).all()
        roles = {m.organisation_id: PersonRole(m.role) for m in memberships}
        owned = {
            o.agreement_id: o.organisation_id
            for o in session.exec(
                select_rows(Ownership).where(col(Ownership.organisation_id).in_(list(roles)))
            )
        }
    if not roles:
        return None
    reader = Who(person_id=person.id, email=person.email, name=person.name, roles=roles)
    money_only = {a for a, organisation in owned.items() if reader.money_only(organisation)}
    items = [
        i
        for i in attention(db, set(owned), request.day, money_only=money_only, days=request.days)
        if i.why in LISTED and i.milestone is not None
    ]
    groups: dict[str, list[DigestLine]] = {}
    titles: dict[str, tuple[str, str | None]] = {}
    for item in sorted(items, key=lambda i: (i.date or dt.date.min, LISTED.index(i.why))):
        m = item.milestone
        assert m is not None
        titles[item.agreement.id] = (item.agreement.title, item.agreement.reference)
        groups.setdefault(item.agreement.id, []).append(
            DigestLine(
                why=item.why.value,
                id=m.id,
                kind=m.kind,
                title=m.title,
                date=m.effective_date,
                days=(m.effective_date - request.day).days,
                status=m.status,
                amount=m.amount,
                number=m.number,
            )
        )
    ordered = sorted(groups, key=lambda a: (groups[a][0].date, titles[a][0].casefold(), a))
    return Digest(
        person_id=request.person_id,
        email=person.email,
        name=person.name or person.email,
        language=Language(language_of(person.language)),
        day=request.day,
        days=request.days,
        groups=[
            DigestGroup(agreement_id=a, title=titles[a][0], reference=titles[a][1], lines=groups[a])
            for a in ordered
        ],
        money_only=bool(owned) and money_only == set(owned),
    )


class Held(NamedTuple):
    """A digest's row as a claim finds it, and whether this attempt holds it."""

    status: str
    error: str | None
    ours: bool


class DigestLog:
    """The `digest_sent` rows: claimed before sending, marked after."""

    def __init__(self, db: Engine) -> None:
        self.db = db
        self.table = DigestRecord.__table__  # type: ignore[attr-defined]
        self.dialect = postgresql if db.dialect.name == "postgresql" else sqlite

    def find(self, key: str) -> str | None:
        """The status of the digest under `key`, if one was written."""
        with Session(self.db) as session:
            row = session.get(DigestRecord, key)
            return row.status if row is not None else None

    def claim(self, digest: Digest, subject: str, mid: str, hold: dt.timedelta) -> Held:
        """Write the digest's row and hold it, or find it: held by this attempt when it is
        new, was left pending by a passing fault, or its last attempt's lease lapsed before
        the message was handed over. A message handed over by an attempt that never heard
        the relay's answer counts as sent (unconfirmed), as in the outbox."""
        t = self.table
        now = utcnow()
        worker = worker_name()
        with write_lock(self.db), self.db.begin() as connection:
            new = connection.execute(
                self.dialect.insert(t)
                .values(
                    key=digest.key,
                    person_id=digest.person_id,
                    week=digest.week,
                    recipient=digest.email,
                    subject=subject,
                    message_id=mid,
                    lines=digest.count,
                    status="sending",
                    attempts=1,
                    lease_until=now + hold,
                    worker=worker,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(t.c.key)
            ).first()
            if new is not None:
                return Held("sending", None, True)
            free = or_(
                t.c.status == "pending",
                and_(
                    t.c.status == "sending", or_(t.c.lease_until.is_(None), t.c.lease_until < now)
                ),
            )
            taken = connection.execute(
                update(t)
                .where(t.c.key == digest.key, free)
                .values(
                    status="sending",
                    attempts=t.c.attempts + 1,
                    lease_until=now + hold,
                    worker=worker,
                    subject=subject,
                    recipient=digest.email,
                    lines=digest.count,
                )
            )
            if taken.rowcount:
                return Held("sending", None, True)
            connection.execute(
                update(t)
                .where(t.c.key == digest.key, t.c.status == "handed", t.c.lease_until < now)
                .values(status="sent", sent_at=now, lease_until=None, error=UNCONFIRMED)
            )
            row = connection.execute(
                select(t.c.status, t.c.error).where(t.c.key == digest.key)
            ).one()
            return Held(row.status, row.error, False)

    def handed(self, key: str) -> None:
        """The content is going to the relay: no later attempt sends it again."""
        self._write(lambda c: c.execute(self._set(key, status="handed", error=None)))

    def mark(self, key: str, status: str, error: str | None) -> None:
        values: dict[str, object] = {"status": status, "error": error, "lease_until": None}
        if status == "sent":
            values["sent_at"] = utcnow()
        self._write(lambda c: c.execute(self._set(key, **values)))

    def _set(self, key: str, **values: object) -> Update:
        return update(self.table).where(self.table.c.key == key).values(**values)

    def _write(self, job: Callable[[Connection], object]) -> None:
        with write_lock(self.db), self.db.begin() as connection:
            job(connection)


class Digester(DigestActivities):
    """The digest's activities, given the settings (the pages' address, the sender) and the
    worker's notifier (its SMTP connections and rate limit) when the worker starts."""

    def __init__(self, settings: Settings, notifier: Notifier) -> None:
        self.settings = settings
        self.notifier = notifier
        self.db = ready(settings.db_url())
        self.log = DigestLog(self.db)

    @activity.defn(name="digest_recipients")
    async def digest_recipients(self, data: DigestDay) -> Recipients:
        return Recipients(person_ids=await asyncio.to_thread(recipients, self.db))

    @activity.defn(name="send_digest")
    async def send_digest(self, request: DigestRequest) -> DigestResult:
        """One person's digest for the week of `request.day`: sent, sent before, nothing
        to say, or failed for good. A passing fault of the mail server raises (retried)."""
        person = request.person_id
        key = digest_key(person, request.day)
        done = await asyncio.to_thread(self.log.find, key)
        if done is not None and done in ("sent", "handed", "failed"):
            # This week's went out already (or was refused for good): nothing is gathered.
            outcome = DigestOutcome.failed if done == "failed" else DigestOutcome.already_sent
            return DigestResult(person_id=person, outcome=outcome)
        digest = await asyncio.to_thread(gather, self.db, request)
        if digest is None or not digest.groups:
            return DigestResult(person_id=person, outcome=DigestOutcome.nothing)
        try:
            rendered = render_digest(digest, self.settings.public_base_url)
        except Exception as error:  # a defect in a template: no retry mends it
            raise ApplicationError(
                f"cannot render the digest: {type(error).__name__}: {error}", non_retryable=True
            ) from None
        mail_from = self.settings.mail_from
        mid = message_id(key, mail_from)
        held = await asyncio.to_thread(self.log.claim, digest, rendered.subject, mid, lease())
        if not held.ours:
            if held.status == "sent":
                return DigestResult(person_id=person, outcome=DigestOutcome.already_sent)
            if held.status == "failed":
                return DigestResult(person_id=person, outcome=DigestOutcome.failed)
            raise ApplicationError("another attempt is sending this digest", type=TRANSIENT)
        language = digest.language.value
        message = build_for_person(
            (digest.name, digest.email),
            key,
            DIGEST,
            language,
            rendered,
            mail_from,
            dt.datetime.now(dt.UTC),
        )
        handover = await self.notifier.hand_over(
            digest.email, message, lambda: self.log.handed(key)
        )
        await asyncio.to_thread(self.log.mark, key, handover.status, handover.error)
        if handover.retry is not None:
            raise handover.retry
        if handover.status == "failed":
            return DigestResult(
                person_id=person,
                outcome=DigestOutcome.failed,
                lines=digest.count,
                error=handover.error,
            )
        activity.logger.info("digest %s sent to person %s (%s lines)", key, person, digest.count)
        return DigestResult(person_id=person, outcome=DigestOutcome.sent, lines=digest.count)
