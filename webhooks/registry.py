"""Webhook endpoints and their deliveries in the database: registering, listing, turning
on and off, sending again by hand, and writing the deliveries an event announces in the
transaction that records the event.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable, Sequence

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models.db import write_lock
from models.people import Ownership
from models.records import AgreementRecord, utcnow
from models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks import targets
from webhooks.events import TYPES, Announcement, body

__all__ = [
    "EndpointRefused",
    "add_endpoint",
    "attempts",
    "deliveries",
    "endpoint",
    "endpoints",
    "enqueue",
    "mark_started",
    "resend",
    "set_enabled",
    "unstarted",
]


class EndpointRefused(ValueError):
    """What was asked cannot be done: `code` and `params` say why, for the person's language."""

    def __init__(self, code: str, **params: str) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes one: `whsec_` and 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def types_of(endpoint: WebhookEndpoint) -> list[str]:
    return list(json.loads(endpoint.types_json))


def add_endpoint(
    db: Engine,
    organisation_id: str,
    url: str,
    types: Sequence[str],
    description: str,
    by: str | None,
    allow_private: bool,
) -> WebhookEndpoint:
    """A new endpoint for the organisation, with a new secret (the returned row holds it:
    show it once). Raises EndpointRefused or targets.TargetRefused."""
    chosen = [t for t in TYPES if t in set(types)]
    unknown = sorted(set(types) - set(TYPES))
    if unknown:
        raise EndpointRefused("webhook-type-unknown", type=unknown[0][:40])
    if not chosen:
        raise EndpointRefused("webhook-no-types")
    description = " ".join(description.split())
    if len(description) > 200:
        raise EndpointRefused("webhook-description-long")
    checked = targets.check(url, allow_private)
    row = WebhookEndpoint(
        id="ep_" + secrets.token_hex(8),
        organisation_id=organisation_id,
        url=checked,
        description=description,
        types_json=json.dumps(chosen),
        secret=new_secret(),
        created_by=by,
    )
    with write_lock(db), Session(db) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def endpoints(db: Engine, organisations: Iterable[str] | None = None) -> list[WebhookEndpoint]:
    """The endpoints of these organisations (all of them for None), oldest first."""
    with Session(db) as session:
        query = select(WebhookEndpoint).order_by(col(WebhookEndpoint.created_at))
        if organisations is not None:
            query = query.where(col(WebhookEndpoint.organisation_id).in_(list(organisations)))
        return list(session.exec(query))


def endpoint(db: Engine, endpoint_id: str) -> WebhookEndpoint | None:
    with Session(db) as session:
        return session.get(WebhookEndpoint, endpoint_id)


def set_enabled(db: Engine, endpoint_id: str, enabled: bool) -> WebhookEndpoint:
    """Turn an endpoint on or off by hand. Off, its pending deliveries stop at their next
    attempt; on again, new events are delivered (those missed meanwhile are not)."""
    with write_lock(db), Session(db) as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        if row is None:
            raise EndpointRefused("webhook-no-endpoint")
        row.enabled = enabled
        row.disabled_why = None if enabled else "by_person"
        row.disabled_at = None if enabled else utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def deliveries(db: Engine, endpoint_id: str, limit: int = 100) -> list[WebhookDelivery]:
    """The endpoint's deliveries, newest first."""
    with Session(db) as session:
        return list(
            session.exec(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id))
                .limit(limit)
            )
        )


def attempts(db: Engine, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
    """Every attempt at these deliveries, by delivery, in order."""
    found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if not delivery_ids:
        return found
    with Session(db) as session:
        for row in session.exec(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(list(delivery_ids)))
            .order_by(col(WebhookAttempt.number))
        ):
            found[row.delivery_id].append(row)
    return found


def resend(db: Engine, delivery_id: str, organisations: Iterable[str] | None) -> WebhookDelivery:
    """Send a delivery again by hand: the same body under the same id, through a new run
    of attempts. Only a delivery that is not still being tried, to an endpoint that is on."""
    with write_lock(db), Session(db) as session:
        row = session.get(WebhookDelivery, delivery_id)
        point = session.get(WebhookEndpoint, row.endpoint_id) if row else None
        if (
            row is None
            or point is None
            or (organisations is not None and point.organisation_id not in set(organisations))
        ):
            raise EndpointRefused("webhook-no-delivery")
        if row.status == "pending":
            raise EndpointRefused("webhook-still-trying")
        if not point.enabled:
            raise EndpointRefused("webhook-endpoint-off")
        row.status = "pending"
        row.resends += 1
        row.started = False
        row.next_attempt_at = None
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def unstarted(db: Engine, limit: int = 100) -> list[WebhookDelivery]:
    """Deliveries whose attempts have not been started, oldest first."""
    with Session(db) as session:
        return list(
            session.exec(
                select(WebhookDelivery)
                .where(col(WebhookDelivery.started).is_(False))
                .order_by(col(WebhookDelivery.created_at))
                .limit(limit)
            )
        )


def mark_started(db: Engine, started: Sequence[tuple[str, int]]) -> None:
    """These deliveries' attempts are under way (id and the resend they started for)."""
    with write_lock(db), Session(db) as session:
        for delivery_id, resends in started:
            row = session.get(WebhookDelivery, delivery_id)
            if row is not None and row.resends == resends:
                row.started = True
                session.add(row)
        session.commit()


def enqueue(session: Session, announcements: Sequence[Announcement]) -> int:
    """The deliveries these announcements make, added to the session's transaction: one per
    endpoint of the agreement's organisation that is on and asked for the type. One that
    exists already (a retried write) is left as it is. How many were new."""
    if not announcements:
        return 0
    ids = sorted({a.agreement_id for a in announcements})
    owners = dict(
        session.exec(
            select(Ownership.agreement_id, Ownership.organisation_id).where(
                col(Ownership.agreement_id).in_(ids)
            )
        ).all()
    )
    if not owners:
        return 0
    points = list(
        session.exec(
            select(WebhookEndpoint).where(
                col(WebhookEndpoint.organisation_id).in_(set(owners.values())),
                col(WebhookEndpoint.enabled).is_(True),
            )
        )
    )
    if not points:
        return 0
    names = {
        row.id: (row.title, row.reference)
        for row in session.exec(select(AgreementRecord).where(col(AgreementRecord.id).in_(ids)))
    }
    rows = []
    for a in announcements:
        for point in points:
            if point.organisation_id != owners.get(a.agreement_id):
                continue
            if a.type not in types_of(point):
                continue
            title, reference = names.get(a.agreement_id, (None, None))
            rows.append(
                {
                    "id": "msg_" + secrets.token_hex(12),
                    "endpoint_id": point.id,
                    "event_key": a.key[:400],
                    "agreement_id": a.agreement_id,
                    "type": a.type,
                    "body": body(a, title, reference, point.organisation_id),
                    "status": "pending",
                    "attempts": 0,
                    "resends": 0,
                    "started": False,
                    "created_at": utcnow(),
                }
            )
    if not rows:
        return 0
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    result = session.execute(
        dialect.insert(WebhookDelivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["endpoint_id", "event_key"])
    )
    return int(getattr(result, "rowcount", 0) or 0)
