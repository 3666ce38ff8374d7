"""Signers' IP addresses and user agents: kept in `signer_trace` beside the append-only event
log, never in it, and weeded (gallring) after the retention period by the `Weeding`
workflow that the worker's daily schedule starts.

Real databases (SQLite, and PostgreSQL where the store and the migration are concerned),
the real Temporal dev server of tests/conftest.py with the worker as `build_worker` builds
it, and a real SMTP sink on loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session, col, select
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.store import Store
from agreements import ops
from agreements.simulate import free_port
from emails.sink import start_sink
from models.config import Settings, binary
from models.db import engine, migrate
from models.effects import EventIn, Step
from models.lifecycle import RoundOutcome
from models.loader import load_agreement
from models.prerequisites import CHECKLIST
from models.records import EventRecord, SignerTrace
from tests.conftest import Temporal
from tests.reliability.harness import schedule_exists, until
from worker import WEEDING_SCHEDULE, build_worker, connect, weeding_schedule
from workflows.agreement import (
    AgreementInput,
    AgreementWorkflow,
    ConfirmPrerequisites,
    Snapshot,
    StartSigning,
    workflow_id,
)
from workflows.signing import DeclineRequest, SignRequest
from workflows.weeding import WeedingInput, WeedingWorkflow

ROOT = Path(__file__).resolve().parent.parent
SECRET = "weeding-test-secret"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
OTHER_AGENT = "Mozilla/5.0 (iPhone) Safari/605.1"


def pseudonym(ip: str) -> str:
    """What the brief says an address becomes: "pseud:" + 16 hex of HMAC-SHA256."""
    return "pseud:" + hmac.new(SECRET.encode(), ip.encode(), hashlib.sha256).hexdigest()[:16]


@asynccontextmanager
async def service(
    temporal: Temporal, tmp_path: Path, database_url: str | None = None, **changes: Any
) -> AsyncIterator[tuple[Settings, Client]]:
    """The worker as `agreements up` builds it (store, email, weeding, the schedule) in this
    process, on the test's namespace of the dev server, with a mail sink."""
    config = Settings(
        temporal_address=temporal.address,
        temporal_namespace=temporal.namespace,
        data_dir=tmp_path / "data",
        database_url=database_url,
        smtp_port=free_port(),
        signing_secret=SECRET,
        **changes,
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(config.db_url())
    sink = start_sink(config.data_dir / "mail", port=config.smtp_port)
    try:
        client = await connect(config)
        async with build_worker(client, config):
            yield config, client
    finally:
        sink.stop()


async def signing(config: Settings, client: Client) -> tuple[str, dict[str, str]]:
    """Planteringen in its first signature round: (agreement id, signer email -> token)."""
    agreement = load_agreement(ROOT / "examples" / "planteringen.toml")
    handle = await client.start_workflow(
        AgreementWorkflow.run,
        AgreementInput(agreement=agreement),
        id=workflow_id(agreement.id),
        task_queue=config.task_queue,
    )
    await handle.execute_update(
        AgreementWorkflow.confirm_prerequisites, ConfirmPrerequisites(keys=list(CHECKLIST))
    )
    state = await handle.execute_update("start_signing", StartSigning(), result_type=Snapshot)
    assert state.round_workflow_id is not None
    return agreement.id, await ops.round_tokens(client, state.round_workflow_id)


def event_data(config: Settings, agreement_id: str) -> list[tuple[str, dict[str, Any], str]]:
    """(kind, data, the row's whole text) of each event of the agreement."""
    return [
        (r.kind, json.loads(r.data_json), " ".join(str(v) for v in r.model_dump().values()))
        for r in ops.events(config, agreement_id)
    ]


async def test_a_signers_ip_and_user_agent_go_to_the_trace_not_the_event_log(
    temporal: Temporal, tmp_path: Path
) -> None:
    """(a) Opening, signing and declining through a link: each event's IP address and user
    agent are in its `signer_trace` row (written with the event), and no event row of the
    log holds either, by key or by value."""
    async with service(temporal, tmp_path) as (config, client):
        agreement_id, tokens = await signing(config, client)
        first, second = sorted(tokens)[:2]
        for update in ("open", "sign"):
            answer = await ops.round_action(
                client,
                agreement_id,
                update,
                SignRequest(token=tokens[first], ip="192.0.2.10", user_agent=AGENT),
                config,
                round_number=1,
            )
        declined = await ops.round_action(
            client,
            agreement_id,
            "decline",
            DeclineRequest(
                token=tokens[second], reason="Fel belopp", ip="198.51.100.7", user_agent=OTHER_AGENT
            ),
            config,
            round_number=1,
        )
        assert answer.signer == first and declined.outcome is RoundOutcome.declined

        def traced() -> list[SignerTrace]:
            return ops.signer_traces(config, agreement_id)

        await until(lambda: len(traced()) == 3, 30, "three traces")
        await until(
            lambda: any(k == "signature.declined" for k, _, _ in event_data(config, agreement_id)),
            30,
            "the decline in the event log",
        )
        traces = traced()
        events = event_data(config, agreement_id)

    assert [(t.kind, t.signer, t.ip, t.user_agent, t.weeded_at) for t in traces] == [
        ("signature.opened", first, "192.0.2.10", AGENT, None),
        ("signature.signed", first, "192.0.2.10", AGENT, None),
        ("signature.declined", second, "198.51.100.7", OTHER_AGENT, None),
    ]
    keys = {r.event_key for r in ops.events(config, agreement_id)}
    assert {t.event_key for t in traces} <= keys  # each trace names its event
    signed = [d for k, d, _ in events if k == "signature.signed"]
    assert signed and signed[0]["method"] == "link"  # the log still says how it was signed
    for kind, data, row in events:
        assert "ip" not in data and "user_agent" not in data, (kind, data)
        for value in ("192.0.2.10", "198.51.100.7", AGENT, OTHER_AGENT):
            assert value not in row, (kind, row)


async def test_a_refused_link_keeps_its_ip_in_the_trace_only(
    temporal: Temporal, tmp_path: Path
) -> None:
    """(b) A forged signing link is refused and the refusal written to the event log (kind
    `refused`); its IP address and user agent go to the refusal's trace, with no signer."""
    async with service(temporal, tmp_path) as (config, client):
        agreement_id, _ = await signing(config, client)
        with pytest.raises(ops.OperationError) as refused:
            await ops.round_action(
                client,
                agreement_id,
                "sign",
                SignRequest(token="forged-" + "x" * 40, ip="203.0.113.99", user_agent=AGENT),
                config,
                round_number=1,
            )
        assert refused.value.code == "invalid-link"
        events = event_data(config, agreement_id)
        traces = ops.signer_traces(config, agreement_id)
    [(_, data, row)] = [e for e in events if e[0] == "refused"]
    assert data["code"] == "invalid-link" and data["decision"] == "sign"
    assert "ip" not in data and "user_agent" not in data
    assert "203.0.113.99" not in row and AGENT not in row
    [trace] = traces
    assert (trace.kind, trace.signer, trace.ip, trace.user_agent) == (
        "refused",
        None,
        "203.0.113.99",
        AGENT,
    )
    assert trace.event_key in {r.event_key for r in ops.events(config, agreement_id)}


async def test_the_store_moves_the_ip_on_every_path_once(database_url: str) -> None:
    """Each way the store writes an event (a step, a batch, one event) leaves the IP and user
    agent in the trace only, in the same transaction; written again (a retried activity),
    there is still one trace per event. An event with neither gets no trace."""
    migrate(database_url)
    store = Store(database_url)
    at = dt.datetime(2027, 3, 10, 9, 0, tzinfo=dt.UTC)

    def event(n: int, **data: str | None) -> EventIn:
        return EventIn(
            event_key=f"a:{n}",
            agreement_id="a",
            at=at,
            kind="signature.signed",
            actor="sara@example.se",
            summary=f"event {n}",
            data={"method": "link", **data},
        )

    step = Step(events=[event(1, ip="192.0.2.1", user_agent=AGENT), event(2, ip=None)])
    batch = [event(3, ip="192.0.2.3"), event(4, user_agent=AGENT)]
    one = event(5, ip="192.0.2.5", user_agent=AGENT)
    for _ in range(2):
        store.write_step(step)
        store._record_events(batch)
        store._record_event(one)
    with Session(engine(database_url)) as session:
        rows = session.exec(select(EventRecord).order_by(col(EventRecord.event_key))).all()
        traces = session.exec(select(SignerTrace).order_by(col(SignerTrace.event_key))).all()
    assert [json.loads(r.data_json) for r in rows] == [{"method": "link"}] * 5
    assert [(t.event_key, t.signer, t.ip, t.user_agent) for t in traces] == [
        ("a:1", "sara@example.se", "192.0.2.1", AGENT),
        ("a:3", "sara@example.se", "192.0.2.3", None),
        ("a:4", "sara@example.se", None, AGENT),
        ("a:5", "sara@example.se", "192.0.2.5", AGENT),
    ]
    assert all(t.at == at for t in traces)


def test_the_migration_moves_old_ips_out_of_the_event_log(database_url: str) -> None:
    """(c) A database at 0003 whose event log holds IPs (as this service wrote it before):
    upgraded to 0004, each IP is in a trace and out of its event's data, events without an
    IP are as they were, and the log refuses UPDATE and DELETE again. Downgraded, the
    traces are dropped (and the IPs not put back)."""
    db = migrate(database_url, "0003")
    rows = [
        ("r:1", "signature.signed", "sara@example.se", {"method": "link", "ip": "192.0.2.1"}),
        ("r:2", "signature.sent", "sara@example.se", {"method": "link", "ip": None}),
        ("r:3", "refused", "signer link", {"decision": "sign", "ip": "192.0.2.9"}),
        ("r:4", "step", None, {"n": 1}),
    ]
    with db.begin() as connection:
        for key, kind, actor, data in rows:
            connection.execute(
                text(
                    "INSERT INTO event (event_key, agreement_id, at, kind, actor, summary,"
                    " data_json, recorded_at) VALUES (:key, 'old', :at, :kind, :actor, 's',"
                    " :data, :at)"
                ),
                {
                    "key": key,
                    "at": dt.datetime(2025, 5, 1, 8, 0),
                    "kind": kind,
                    "actor": actor,
                    "data": json.dumps(data, sort_keys=True),
                },
            )
    migrate(database_url, "0004")
    with db.connect() as connection:
        data = {
            key: json.loads(value)
            for key, value in connection.execute(text("SELECT event_key, data_json FROM event"))
        }
        traces = connection.execute(
            text("SELECT event_key, kind, signer, ip, user_agent, weeded_at FROM signer_trace")
        ).all()
    assert data == {
        "r:1": {"method": "link"},
        "r:2": {"method": "link"},
        "r:3": {"decision": "sign"},
        "r:4": {"n": 1},
    }
    assert sorted(tuple(t) for t in traces) == [
        ("r:1", "signature.signed", "sara@example.se", "192.0.2.1", None, None),
        ("r:3", "refused", None, "192.0.2.9", None, None),
    ]
    for statement in ("UPDATE event SET summary = 'changed'", "DELETE FROM event"):
        with pytest.raises(DatabaseError, match="append-only"), db.begin() as connection:
            connection.execute(text(statement))
    from models.db import downgrade

    downgrade(database_url, "0003")
    with db.connect() as connection:
        assert "192.0.2.1" not in str(connection.execute(text("SELECT * FROM event")).all())
        with pytest.raises(DatabaseError):
            connection.execute(text("SELECT 1 FROM signer_trace"))


def old_traces(url: str, now: dt.datetime) -> None:
    """Traces of several ages: two old ones of one address, an old one of another, a recent
    one, and an old one weeded before."""
    rows = [
        ("t:1", 800, "192.0.2.1", AGENT, None),
        ("t:2", 731, "192.0.2.1", OTHER_AGENT, None),
        ("t:3", 900, "198.51.100.2", AGENT, None),
        ("t:4", 10, "192.0.2.1", AGENT, None),
        ("t:5", 1000, "pseud:0123456789abcdef", None, now - dt.timedelta(days=200)),
    ]
    with Session(engine(url)) as session:
        for key, days, ip, agent, weeded in rows:
            session.add(
                SignerTrace(
                    event_key=key,
                    agreement_id="a",
                    at=now - dt.timedelta(days=days),
                    kind="signature.signed",
                    signer="sara@example.se",
                    ip=ip,
                    user_agent=agent,
                    weeded_at=weeded,
                )
            )
        session.commit()


def traces_by_key(url: str) -> dict[str, SignerTrace]:
    with Session(engine(url)) as session:
        return {t.event_key: t for t in session.exec(select(SignerTrace))}


async def test_weeding_pseudonymises_what_is_older_than_the_period(
    database_url: str, temporal: Temporal, tmp_path: Path
) -> None:
    """(d) The Weeding workflow on the dev server, with the worker's activity: traces older
    than 730 days get the pseudonym of their address (the same for the same address, the
    address gone) and lose their user agent; a recent one and one weeded before are left
    as they were. A second run finds nothing; 0 days weeds nothing."""
    async with service(temporal, tmp_path, database_url) as (config, client):
        url = config.db_url()
        now = dt.datetime.now(dt.UTC)
        old_traces(url, now)
        before = traces_by_key(url)
        weeded = await client.execute_workflow(
            WeedingWorkflow.run,
            WeedingInput(retention_days=730),
            id="weeding-test",
            task_queue=config.task_queue,
        )
        after = traces_by_key(url)
        again = await client.execute_workflow(
            WeedingWorkflow.run,
            WeedingInput(retention_days=730),
            id="weeding-test-again",
            task_queue=config.task_queue,
        )
        never = await client.execute_workflow(
            WeedingWorkflow.run,
            WeedingInput(retention_days=0),
            id="weeding-test-never",
            task_queue=config.task_queue,
        )
    assert (weeded, again, never) == (3, 0, 0)
    assert after["t:1"].ip == after["t:2"].ip == pseudonym("192.0.2.1")
    assert after["t:3"].ip == pseudonym("198.51.100.2") != after["t:1"].ip
    for key in ("t:1", "t:2", "t:3"):
        weeded_at = after[key].weeded_at
        assert after[key].user_agent is None and weeded_at is not None and weeded_at >= now
        assert (after[key].at, after[key].signer) == (before[key].at, before[key].signer)
    for key in ("t:4", "t:5"):  # 10 days old; weeded before: each kept as it is
        assert after[key].model_dump() == before[key].model_dump()
    assert {k: t.model_dump() for k, t in traces_by_key(url).items()} == {
        k: t.model_dump() for k, t in after.items()
    }


async def test_the_worker_creates_the_weeding_schedule(temporal: Temporal, tmp_path: Path) -> None:
    """(e) A worker that starts creates the schedule `agreements-weeding` on the dev server:
    `Weeding` daily at 03:00 Europe/Stockholm on the task queue, with the configured
    period; triggered, it weeds. Another start changes nothing, a changed period updates
    it, and AGREEMENTS_RETENTION_DAYS=0 deletes it."""
    async with service(temporal, tmp_path) as (config, client):
        handle = client.get_schedule_handle(WEEDING_SCHEDULE)

        await until(lambda: schedule_exists(handle), 30, "the worker to create the schedule")
        schedule = (await handle.describe()).schedule
        [calendar] = schedule.spec.calendars
        assert [(r.start, r.end) for r in calendar.hour] == [(3, 3)]
        assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]
        assert schedule.spec.time_zone_name == "Europe/Stockholm"
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue) == ("Weeding", config.task_queue)
        [data] = await client.data_converter.decode(list(action.args), [WeedingInput])
        assert data == WeedingInput(retention_days=730)

        async def listed() -> bool:
            return WEEDING_SCHEDULE in [s.id async for s in await client.list_schedules()]

        await until(listed, 30, "the schedule in the list")

        # Triggered now (as at 03:00), the scheduled workflow weeds on this worker.
        url = config.db_url()
        old_traces(url, dt.datetime.now(dt.UTC))
        await handle.trigger()
        await until(
            lambda: traces_by_key(url)["t:1"].ip == pseudonym("192.0.2.1"),
            30,
            "the scheduled run to weed",
        )

        assert await weeding_schedule(client, config) == "unchanged"
        shorter = config.model_copy(update={"retention_days": 365})
        assert await weeding_schedule(client, shorter) == "updated"
        schedule = (await handle.describe()).schedule
        assert isinstance(schedule.action, ScheduleActionStartWorkflow)
        [data] = await client.data_converter.decode(list(schedule.action.args), [WeedingInput])
        assert data == WeedingInput(retention_days=365)
        # Traces kept for ever, messages still weeded: the schedule stays.
        messages_only = config.model_copy(update={"retention_days": 0})
        assert await weeding_schedule(client, messages_only) == "updated"
        assert await schedule_exists(handle)
        off = config.model_copy(update={"retention_days": 0, "message_retention_days": 0})
        assert await weeding_schedule(client, off) == "deleted"
        assert await weeding_schedule(client, off) == "off"
        assert not await schedule_exists(handle)


async def test_the_time_skipping_server_has_no_schedules_and_the_worker_runs_on() -> None:
    """The simulations' time-skipping test server has no schedules: the worker says so
    (`unsupported`) instead of failing to start."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    async with env:
        assert await weeding_schedule(env.client, Settings()) == "unsupported"
