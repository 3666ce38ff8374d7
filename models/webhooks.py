"""Outgoing webhooks (tables): the endpoints an organisation registers, each delivery of an
event to one endpoint, and every attempt at it with the answer.

A delivery is written in the same transaction as the event it announces (activities/store.py),
with its body fixed there: every attempt, and a delivery sent again by hand, sends the same
bytes under the same `webhook-id`. The worker starts one `WebhookDelivery` workflow per
delivery (workflows/webhook.py), which makes the attempts on its schedule.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.records import utcnow


class WebhookEndpoint(SQLModel, table=True):
    """Where one organisation wants events sent, which ones, and the secret they are signed
    with (`whsec_` and base64, as the Standard Webhooks libraries read it). The secret is
    shown once, when made; it is kept here because every delivery is signed with it."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(primary_key=True, max_length=32)  # ep_<random>
    organisation_id: str = Field(max_length=64, foreign_key="organisation.id", index=True)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=200)
    types_json: str = Field(sa_column=Column(Text, nullable=False))  # a JSON list of types
    secret: str = Field(max_length=100)
    enabled: bool = True
    # Why it is off: "gone" (the receiver answered 410 Gone) or "by_person"
    disabled_why: str | None = Field(default=None, max_length=32)
    disabled_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    created_by: str | None = Field(default=None, max_length=400)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint. `event_key` is what announced it (an event's key in the
    log, or `<agreement>:<milestone>:<type>` for a milestone's moment): one delivery per
    endpoint and key, however often the writing is retried."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_key", name="uq_webhook_delivery"),)

    id: str = Field(primary_key=True, max_length=40)  # msg_<random>: the webhook-id header
    endpoint_id: str = Field(max_length=32, foreign_key="webhook_endpoint.id", index=True)
    event_key: str = Field(max_length=400)
    agreement_id: str = Field(max_length=64, index=True)
    type: str = Field(max_length=40)
    body: str = Field(sa_column=Column(Text, nullable=False))
    # pending (attempts to come), delivered (a 2xx), gone (410: the endpoint is off),
    # stopped (the endpoint was turned off or removed), failed (no 2xx in three days)
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    # How many times it was sent again by hand: each starts one more delivery workflow.
    resends: int = 0
    started: bool = Field(default=False, index=True)  # its workflow is started
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_attempt_at: dt.datetime | None = None
    next_attempt_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None


class WebhookAttempt(SQLModel, table=True):
    """One try at a delivery: when, what came back (status and the answer's first
    characters), or why nothing did, and how long it took."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (UniqueConstraint("delivery_id", "number", name="uq_webhook_attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=40, foreign_key="webhook_delivery.id", index=True)
    number: int
    at: dt.datetime = Field(default_factory=utcnow)
    status_code: int | None = None
    answer: str | None = Field(default=None, max_length=1000)
    error: str | None = Field(default=None, max_length=500)
    milliseconds: int = 0
