"""Webhook activities: one attempt at a delivery, recorded with its answer, and giving up
on one after the last attempt (workflows/webhook.py calls them).

An attempt reads the delivery and its endpoint fresh each time, so an endpoint turned off
meanwhile stops its deliveries, and a 410 Gone turns the endpoint off.
"""

from __future__ import annotations

import asyncio

from sqlmodel import Session
from temporalio import activity

from agreements import telemetry
from models.db import ready, write_lock
from models.records import utcnow
from models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks import send
from workflows.webhook import AttemptJob


class WebhookActivities:
    def __init__(self, url: str, allow_private: bool) -> None:
        self.url = url
        self.allow_private = allow_private

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, job: AttemptJob) -> str:
        """One attempt: `delivered`, `gone`, `retry`, or why none was made (`stopped`,
        `missing`, or the delivery's status if another run has settled it)."""
        found = await asyncio.to_thread(self._read, job.delivery_id)
        if isinstance(found, str):
            return found
        point, delivery = found
        answer = await send.attempt(
            point.url, point.secret, delivery.id, delivery.body, self.allow_private
        )
        return await asyncio.to_thread(self._write, job, answer)

    def _read(self, delivery_id: str) -> tuple[WebhookEndpoint, WebhookDelivery] | str:
        db = ready(self.url)
        with write_lock(db), Session(db) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                return "missing"
            point = session.get(WebhookEndpoint, delivery.endpoint_id)
            if point is None or not point.enabled:
                delivery.status = "stopped"
                delivery.next_attempt_at = None
                session.add(delivery)
                session.commit()
                return "stopped"
            if delivery.status != "pending":
                return delivery.status
            session.expunge(point)
            session.expunge(delivery)
            return point, delivery

    def _write(self, job: AttemptJob, answer: send.Answer) -> str:
        db = ready(self.url)
        with write_lock(db), Session(db) as session:
            delivery = session.get(WebhookDelivery, job.delivery_id)
            if delivery is None:
                return "missing"
            delivery.attempts += 1
            delivery.last_attempt_at = job.at
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    number=delivery.attempts,
                    at=job.at,
                    status_code=answer.status_code,
                    answer=answer.text,
                    error=answer.error,
                    milliseconds=answer.milliseconds,
                )
            )
            if answer.delivered:
                outcome = "delivered"
                delivery.delivered_at = utcnow()
                delivery.next_attempt_at = None
            elif answer.gone:
                outcome = "gone"
                delivery.next_attempt_at = None
                point = session.get(WebhookEndpoint, delivery.endpoint_id)
                if point is not None and point.enabled:
                    point.enabled = False
                    point.disabled_why = "gone"
                    point.disabled_at = utcnow()
                    session.add(point)
            else:
                outcome = "retry"
                delivery.next_attempt_at = job.next_at
            delivery.status = "pending" if outcome == "retry" else outcome
            session.add(delivery)
            session.commit()
            telemetry.count(
                "agreements_webhook_deliveries", {"type": delivery.type, "outcome": outcome}
            )
            activity.logger.info(
                "webhook %s attempt %s: %s",
                delivery.id,
                delivery.attempts,
                answer.status_code or answer.error,
            )
            return outcome

    @activity.defn(name="webhook_gave_up")
    async def webhook_gave_up(self, delivery_id: str) -> str:
        """The last attempt has failed: the delivery is `failed` (it can be sent again by
        hand)."""
        return await asyncio.to_thread(self._gave_up, delivery_id)

    def _gave_up(self, delivery_id: str) -> str:
        db = ready(self.url)
        with write_lock(db), Session(db) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                return "missing"
            if delivery.status == "pending":
                delivery.status = "failed"
                delivery.next_attempt_at = None
                session.add(delivery)
                session.commit()
                telemetry.count(
                    "agreements_webhook_deliveries", {"type": delivery.type, "outcome": "failed"}
                )
            return delivery.status
