"""Outgoing webhooks: where they may go (SSRF), what is announced, each delivery signed as
Standard Webhooks says and verified by a real receiver on loopback with the same package,
the retry schedule on the time-skipping test server, a 410 that turns the endpoint off, a
receiver too slow to answer, and deliveries sent again by hand.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.store import Store
from activities.webhooks import WebhookActivities
from agreements import access
from agreements.web.app import create_app
from models.agreement import DateRule
from models.config import binary
from models.db import migrate, ready
from models.effects import EventIn, Step
from models.lifecycle import EmailSpec
from models.people import Ownership
from models.plan import MilestoneKind, PlannedMilestone, Recipient
from models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.conftest import TOKEN, eventually, service_settings
from tests.receiver import Receiver, receiving
from tests.test_people import csrf_of
from tests.test_web import PLANTERINGEN
from webhooks import registry, send, targets
from webhooks.events import of_events
from workflows.webhook import (
    JITTER,
    WINDOW,
    AttemptJob,
    DeliveryJob,
    WebhookDeliveryWorkflow,
    nominal_delay,
    workflow_id,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.5/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest/meta-data",  # a cloud's metadata
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://100.64.0.1/hook",  # shared address space
        "https://0.0.0.0/hook",
    ],
)
def test_a_private_or_loopback_target_is_refused(url: str) -> None:
    with pytest.raises(targets.TargetRefused) as refused:
        targets.check(url, allow_private=False)
    assert refused.value.code == "webhook-url-private"
    assert targets.check(url, allow_private=True) == url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://93.184.216.34/hook", "webhook-url-scheme"),
        ("ftp://93.184.216.34/hook", "webhook-url-scheme"),
        ("https://user:pw@93.184.216.34/hook", "webhook-url-invalid"),
        ("https:///hook", "webhook-url-invalid"),
        ("https://exa mple.se/hook", "webhook-url-invalid"),
        ("", "webhook-url-invalid"),
        ("https://" + "a" * 2000 + ".se/", "webhook-url-invalid"),
        ("https://no-such-host.invalid/hook", "webhook-url-unknown"),
    ],
)
def test_a_target_that_is_not_an_https_address_is_refused(url: str, code: str) -> None:
    with pytest.raises(targets.TargetRefused) as refused:
        targets.check(url, allow_private=False)
    assert refused.value.code == code


def test_a_public_https_target_is_taken() -> None:
    assert targets.check(" https://93.184.216.34/hook ", allow_private=False) == (
        "https://93.184.216.34/hook"
    )


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    migrate(url)
    engine = ready(url)
    access.add_organisation(engine, "kultur", "Kultur- och fritidsnämnden")
    access.add_organisation(engine, "social", "Socialnämnden")
    with Session(engine) as session:
        session.add(Ownership(agreement_id="planteringen", organisation_id="kultur"))
        session.commit()
    return engine


def announce(db: Engine, kind: str, key: str, **data: str) -> int:
    """An event of planteringen's log, announced as the store announces it."""
    event = EventIn(
        event_key=key,
        agreement_id="planteringen",
        at=dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC),
        kind=kind,
        actor="Anna Berg",
        summary=f"{kind} happened",
        data={"round": 1, "ip": "203.0.113.9", "user_agent": "Firefox", **data},
    )
    with Session(db) as session:
        made = registry.enqueue(session, of_events([event]))
        session.commit()
    return made


def test_an_event_is_announced_to_its_organisations_endpoints_that_asked_for_it_once(
    db: Engine,
) -> None:
    wanted = registry.add_endpoint(
        db, "kultur", "https://93.184.216.34/a", ["agreement.signed"], "ERP", "anna", False
    )
    registry.add_endpoint(
        db, "kultur", "https://93.184.216.34/b", ["report.received"], "", "anna", False
    )
    registry.add_endpoint(
        db, "social", "https://93.184.216.34/c", ["agreement.signed"], "", "bo", False
    )
    assert announce(db, "signed", "planteringen:7", signed_on="2026-11-26") == 1
    assert announce(db, "signed", "planteringen:7") == 0  # written again: no second
    assert announce(db, "signature.opened", "planteringen:8") == 0  # not announced
    [delivery] = registry.deliveries(db, wanted.id)
    assert delivery.id.startswith("msg_") and delivery.type == "agreement.signed"
    body = json.loads(delivery.body)
    assert body["type"] == "agreement.signed"
    assert body["timestamp"] == "2026-11-26T09:00:00Z"
    assert body["data"]["agreement"]["id"] == "planteringen"
    assert body["data"]["agreement"]["organisation"] == "kultur"
    assert body["data"]["event"]["data"] == {"round": 1, "signed_on": "2026-11-26"}
    assert "203.0.113.9" not in delivery.body and "Firefox" not in delivery.body


def test_an_endpoint_is_refused_with_a_reason(db: Engine) -> None:
    def refused(url: str, types: list[str], description: str = "") -> str:
        with pytest.raises((registry.EndpointRefused, targets.TargetRefused)) as error:
            registry.add_endpoint(db, "kultur", url, types, description, "anna", False)
        return str(getattr(error.value, "code", ""))

    assert refused("https://93.184.216.34/", []) == "webhook-no-types"
    assert refused("https://93.184.216.34/", ["agreement.signed", "x.y"]) == "webhook-type-unknown"
    assert refused("https://93.184.216.34/", ["agreement.signed"], "x" * 201) == (
        "webhook-description-long"
    )
    assert refused("https://127.0.0.1/", ["agreement.signed"]) == "webhook-url-private"
    assert registry.endpoints(db) == []


@asynccontextmanager
async def skipping(db: Engine) -> AsyncIterator[tuple[Client, str]]:
    """The time-skipping test server with a worker of the delivery workflow and its real
    activities on this database; loopback targets allowed (the receiver is on loopback)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    async with env:
        queue = f"hooks-{uuid.uuid4().hex[:8]}"
        hooks = WebhookActivities(str(db.url), allow_private=True)
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[WebhookDeliveryWorkflow],
            activities=[hooks.deliver_webhook, hooks.webhook_gave_up],
        ):
            yield env.client, queue


def endpoint_for(db: Engine, receiver: Receiver, *types: str) -> WebhookEndpoint:
    point = registry.add_endpoint(
        db, "kultur", receiver.url, list(types or ["agreement.signed"]), "", "anna", True
    )
    receiver.secret = point.secret
    return point


async def run(client: Client, queue: str, delivery_id: str, resend: int = 0) -> str:
    outcome: str = await client.execute_workflow(
        WebhookDeliveryWorkflow.run,
        DeliveryJob(delivery_id=delivery_id, resend=resend),
        id=workflow_id(delivery_id, resend),
        task_queue=queue,
    )
    return outcome


def tries(db: Engine, delivery_id: str) -> list[WebhookAttempt]:
    return registry.attempts(db, [delivery_id])[delivery_id]


def one(db: Engine, model: type[WebhookDelivery], key: str) -> WebhookDelivery:
    with Session(db) as session:
        found = session.get(model, key)
        assert found is not None
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as listening:
        yield listening


async def test_a_receiver_that_never_takes_it_is_tried_for_three_days_with_jitter(
    db: Engine, receiver: Receiver
) -> None:
    point = endpoint_for(db, receiver)
    announce(db, "signed", "planteringen:7")
    [delivery] = registry.deliveries(db, point.id)
    receiver.answers = [500] * 100
    async with skipping(db) as (client, queue):
        assert await run(client, queue, delivery.id) == "failed"
    attempts = tries(db, delivery.id)
    # Every attempt came, signed, with the same id and the same body.
    assert len(receiver.received) == len(attempts)
    assert all(r.error is None for r in receiver.received), receiver.received[0].error
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery.id}
    assert {r.body for r in receiver.received} == {delivery.body.encode()}
    assert [a.status_code for a in attempts] == [500] * len(attempts)
    # Each wait is its nominal length within the jitter, and they differ from the nominal
    # ones (jitter is there); the last attempt falls within three days of the first.
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    for number, gap in enumerate(gaps, start=1):
        nominal = nominal_delay(number)
        assert nominal * (1 - JITTER) <= gap <= nominal * (1 + JITTER), (number, gap)
    assert any(gap != nominal_delay(n) for n, gap in enumerate(gaps, start=1))
    span = attempts[-1].at - attempts[0].at
    assert dt.timedelta(days=2, hours=12) < span <= WINDOW
    assert len(attempts) >= 10
    row = one(db, WebhookDelivery, delivery.id)
    assert row.status == "failed" and row.attempts == len(attempts)
    assert row.next_attempt_at is None


async def test_a_failing_receiver_that_recovers_gets_it_and_a_410_turns_the_endpoint_off(
    db: Engine, receiver: Receiver
) -> None:
    point = endpoint_for(db, receiver)
    announce(db, "signed", "planteringen:7")
    announce(db, "signed", "planteringen:9")
    first, second = sorted(registry.deliveries(db, point.id), key=lambda d: d.event_key)
    receiver.answers = [503, 500]
    async with skipping(db) as (client, queue):
        assert await run(client, queue, first.id) == "delivered"
        assert [a.status_code for a in tries(db, first.id)] == [503, 500, 200]
        delivered = one(db, WebhookDelivery, first.id)
        assert delivered.status == "delivered" and delivered.delivered_at is not None

        receiver.answers = [410]
        assert await run(client, queue, second.id) == "gone"
        off = registry.endpoint(db, point.id)
        assert off is not None and not off.enabled and off.disabled_why == "gone"
        with pytest.raises(registry.EndpointRefused) as refused:
            registry.resend(db, first.id, ["kultur"])
        assert refused.value.code == "webhook-endpoint-off"
    assert len(receiver.received) == 4


async def test_a_receiver_too_slow_to_answer_is_a_failed_attempt(
    db: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(send, "WHOLE", 1.0)
    point = endpoint_for(db, receiver)
    announce(db, "signed", "planteringen:7")
    [delivery] = registry.deliveries(db, point.id)
    receiver.delays = [3.0]
    async with skipping(db) as (client, queue):
        assert await run(client, queue, delivery.id) == "delivered"
    first, second = tries(db, delivery.id)
    assert first.status_code is None and first.error == "no answer within 1 s"
    assert 1000 <= first.milliseconds < 2500
    assert second.status_code == 200


async def test_a_delivery_is_sent_again_by_hand_with_the_same_id_and_body(
    db: Engine, receiver: Receiver
) -> None:
    point = endpoint_for(db, receiver)
    announce(db, "signed", "planteringen:7")
    [delivery] = registry.deliveries(db, point.id)
    async with skipping(db) as (client, queue):
        assert await run(client, queue, delivery.id) == "delivered"
        with pytest.raises(registry.EndpointRefused) as foreign:
            registry.resend(db, delivery.id, ["social"])
        assert foreign.value.code == "webhook-no-delivery"
        again = registry.resend(db, delivery.id, ["kultur"])
        assert again.status == "pending" and again.resends == 1 and not again.started
        with pytest.raises(registry.EndpointRefused) as busy:
            registry.resend(db, delivery.id, ["kultur"])
        assert busy.value.code == "webhook-still-trying"
        assert await run(client, queue, delivery.id, resend=1) == "delivered"
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.id] * 2
    assert receiver.received[0].body == receiver.received[1].body
    assert len(receiver.verified()) == 2
    assert [a.number for a in tries(db, delivery.id)] == [1, 2]


async def test_an_endpoint_turned_off_stops_its_deliveries_unsent(
    db: Engine, receiver: Receiver
) -> None:
    point = endpoint_for(db, receiver)
    announce(db, "signed", "planteringen:7")
    [delivery] = registry.deliveries(db, point.id)
    registry.set_enabled(db, point.id, False)
    assert announce(db, "signed", "planteringen:9") == 0  # nothing new for an endpoint off
    async with skipping(db) as (client, queue):
        assert await run(client, queue, delivery.id) == "stopped"
    assert receiver.received == []
    assert one(db, WebhookDelivery, delivery.id).status == "stopped"
    with Session(db) as session:
        assert session.exec(select(WebhookAttempt)).all() == []


def test_a_moments_emails_announce_each_milestone_once(db: Engine, tmp_path: Path) -> None:
    """Two finance people get the invoice reminder: the step announces the instalment once,
    and a retried step writes no second delivery."""
    point = registry.add_endpoint(
        db, "kultur", "https://93.184.216.34/erp", ["invoice.due"], "ERP", "anna", False
    )
    milestone = PlannedMilestone(
        id="invoice:2027-01",
        kind=MilestoneKind.invoice,
        date=dt.date(2027, 1, 15),
        effective_date=dt.date(2027, 1, 15),
        rule=DateRule.none,
        title="Utbetalning 1",
        payer="kommunen",
        payee="foreningen",
        amount=125000,
    )

    def email(to: str) -> EmailSpec:
        return EmailSpec(
            key=f"planteringen:invoice:2027-01:invoice_reminder:14:{to}",
            agreement_id="planteringen",
            terms_sha256="0" * 64,
            template="invoice_reminder",
            to=Recipient(email=to, name=to, party="kommunen", role="finance", language="sv"),
            milestone=milestone,
            days_before=14,
        )

    step = Step(emails=[email("ekonomi@lund.se"), email("kassa@lund.se")])
    store = Store(str(db.url))
    store.write_step(step)
    store.write_step(step)
    [delivery] = registry.deliveries(db, point.id)
    body = json.loads(delivery.body)
    assert body["type"] == "invoice.due"
    assert body["data"]["milestone"] == {
        "id": "invoice:2027-01",
        "kind": "invoice",
        "title": "Utbetalning 1",
        "date": "2027-01-15",
        "payer": "kommunen",
        "payee": "foreningen",
        "amount_sek": 125000,
    }


@pytest.fixture
def loopback_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks to loopback allowed, for the worker the next fixture starts (the receiver is
    on loopback) and for the web application."""
    monkeypatch.setenv("AGREEMENTS_WEBHOOKS_ALLOW_PRIVATE", "1")


def test_endpoints_through_the_api_deliver_signed_events_listed_with_their_answers(
    loopback_hooks: None, receiver: Receiver, service_env: dict[str, str]
) -> None:
    """The real service and worker: an administrator's endpoint gets 'agreement.created'
    signed, verified by the receiver; the deliveries and answers are listed, one is sent
    again by hand; what is wrong with an endpoint is said, and another organisation's
    endpoint cannot be seen or changed."""
    config = service_settings(service_env)
    assert config.webhooks_allow_private
    db = ready(config.db_url())
    access.add_organisation(db, "kultur", "Kultur- och fritidsnämnden")
    access.add_organisation(db, "social", "Socialnämnden")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(config), client=("127.0.0.1", 50000)) as client:
        bad = client.post(
            "/api/webhooks",
            json={"organisation": "kultur", "url": receiver.url, "types": ["agreement.made"]},
            headers={**auth, "Accept-Language": "sv"},
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["code"] == "webhook-type-unknown"
        assert bad.json()["detail"] == "agreement.made är ingen händelse som kan skickas"
        made = client.post(
            "/api/webhooks",
            json={
                "organisation": "kultur",
                "url": receiver.url,
                "types": ["agreement.created", "agreement.signed"],
                "description": "Diariet",
            },
            headers=auth,
        )
        assert made.status_code == 201, made.text
        point = made.json()
        assert point["secret"].startswith("whsec_")
        receiver.secret = point["secret"]
        listed = client.get("/api/webhooks", headers=auth).json()
        assert "secret" not in json.dumps(listed["endpoints"])  # shown once, when made
        assert listed["types"][0] == "agreement.created"
        other = client.post(
            "/api/webhooks",
            json={"organisation": "social", "url": receiver.url, "types": ["agreement.created"]},
            headers=auth,
        ).json()

        created = client.post(
            "/api/agreements?organisation=kultur", content=PLANTERINGEN, headers=auth
        )
        assert created.status_code == 201, created.text

        def delivered() -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = client.get(
                f"/api/webhooks/{point['id']}/deliveries", headers=auth
            ).json()
            return [r for r in rows if r["status"] == "delivered"]

        eventually(lambda: delivered(), "the delivery of agreement.created", 30)
        [row] = delivered()
        assert row["type"] == "agreement.created"
        assert row["body"]["data"]["agreement"]["id"] == "planteringen"
        assert row["body"]["data"]["agreement"]["title"]
        assert [a["status_code"] for a in row["attempts"]] == [200]
        [got] = receiver.received
        assert got.error is None and got.verified == row["body"]
        assert got.headers["webhook-id"] == row["id"]
        # Social's endpoint is not told about Kultur's agreement.
        assert client.get(f"/api/webhooks/{other['id']}/deliveries", headers=auth).json() == []

        again = client.post(f"/api/webhooks/deliveries/{row['id']}/resend", headers=auth)
        assert again.status_code == 202, again.text
        eventually(lambda: len(receiver.received) == 2, "the delivery sent again", 30)
        assert receiver.received[1].headers["webhook-id"] == row["id"]
        assert receiver.received[1].error is None

        off = client.post(
            f"/api/webhooks/{point['id']}/enabled", json={"enabled": False}, headers=auth
        )
        assert off.status_code == 200 and off.json()["enabled"] is False
        assert client.get("/api/webhooks/ep_nosuch/deliveries", headers=auth).status_code == 404

        # The pages, in Swedish: the list, a refusal said next to the form with what was
        # typed kept, the secret shown once, the deliveries with their answers, send again.
        assert client.post("/login", data={"token": TOKEN}).status_code in (200, 303)
        listing = client.get("/webhooks", headers={"Accept-Language": "sv"})
        assert listing.status_code == 200 and "Diariet" in listing.text
        assert "avstängd av en person" in listing.text  # turned off above
        form = {"csrf": csrf_of(listing.text), "organisation": "kultur"}
        wrong = client.post(
            "/webhooks/add",
            data={**form, "url": "ftp://arkiv.kommun.se/in", "types": ["agreement.ended"]},
        )
        assert wrong.status_code == 422
        assert "https://" in wrong.text and 'value="ftp://arkiv.kommun.se/in"' in wrong.text
        added = client.post(
            "/webhooks/add",
            data={**form, "url": receiver.url, "types": ["agreement.ended", "invoice.due"]},
        )
        assert added.status_code == 201 and "whsec_" in added.text
        assert "whsec_" not in client.get("/webhooks").text  # shown once
        page = client.get(f"/webhooks/{point['id']}")
        assert page.status_code == 200
        assert "Skapat avtal" in page.text or "avtal skapat" in page.text
        assert page.text.count(">200<") + page.text.count(": 200 (") >= 2  # both attempts
        on = client.post(
            f"/webhooks/{point['id']}/enabled",
            data={"csrf": form["csrf"], "enabled": "1"},
            follow_redirects=False,
        )
        assert on.status_code == 303
        resent = client.post(
            f"/webhooks/deliveries/{row['id']}/resend",
            data={"csrf": form["csrf"]},
            follow_redirects=False,
        )
        assert resent.status_code == 303
        eventually(lambda: len(receiver.received) == 3, "the delivery sent from the page", 30)
        assert client.get(f"/webhooks/{other['id']}").status_code == 200  # local key: all


async def test_an_address_that_comes_to_point_inside_is_not_sent_to(
    db: Engine, receiver: Receiver
) -> None:
    """An endpoint registered while allowed (or whose name pointed outside then) is checked
    again before each attempt: on a worker that does not allow private targets, nothing is
    sent and the attempt says why."""
    point = endpoint_for(db, receiver)
    announce(db, "signed", "planteringen:7")
    [delivery] = registry.deliveries(db, point.id)
    strict = WebhookActivities(str(db.url), allow_private=False)
    job = AttemptJob(delivery_id=delivery.id, at=dt.datetime.now(dt.UTC), next_at=None)
    assert await ActivityEnvironment().run(strict.deliver_webhook, job) == "retry"
    [attempt] = tries(db, delivery.id)
    assert attempt.status_code is None
    assert attempt.error is not None and "webhook-url-scheme" in attempt.error
    assert receiver.received == []
