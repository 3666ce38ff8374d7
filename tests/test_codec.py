"""What the service stores in Temporal is sealed (models/codec.py): a history read straight
from the server holds no name, email address or amount of the agreement in clear, while
the service itself reads and decides as before; keys rotate; payloads from before the keys
were set are still read. Real dev server, real worker."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from agreements import ops
from agreements.simulate import free_port
from emails.sink import start_sink
from models.codec import ENCODING, PayloadKeyError, Sealed, read_keys
from models.config import Settings
from models.core import AgreementInput
from models.db import migrate
from models.loader import load_agreement
from tests.conftest import Temporal
from worker import build_worker, connect
from workflows.agreement import AgreementWorkflow, workflow_id

ROOT = Path(__file__).resolve().parent.parent


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def test_keys_rotate_and_unsealed_payloads_are_read() -> None:
    old, new = read_keys(key()), read_keys(key())
    plain = [Payload(metadata={"encoding": b"json/plain"}, data=b'{"name": "Maria"}')]
    sealed_old = await Sealed(old).encode(plain)
    assert b"Maria" not in sealed_old[0].data and sealed_old[0].metadata["encoding"] == ENCODING
    rotated = Sealed(new + old)  # the new key seals, both open
    assert await rotated.decode(sealed_old) == plain
    sealed_new = await rotated.encode(plain)
    assert await Sealed(new).decode(sealed_new) == plain
    assert await Sealed(new).decode(plain) == plain  # written before the keys were set
    with pytest.raises(ValueError, match="not among AGREEMENTS_PAYLOAD_KEYS"):
        await Sealed(new).decode(sealed_old)
    tampered = Payload(metadata=sealed_new[0].metadata, data=sealed_new[0].data[:-1] + b"x")
    with pytest.raises(Exception):  # noqa: B017 (cryptography's InvalidTag)
        await rotated.decode([tampered])
    with pytest.raises(PayloadKeyError, match="key 2 is not 32 bytes"):
        read_keys(f"{key()}, kort")


async def test_a_history_read_from_the_server_holds_no_personal_data_in_clear(
    temporal: Temporal, tmp_path: Path
) -> None:
    agreement = load_agreement(ROOT / "examples" / "planteringen.toml")
    port = free_port()
    config = Settings(
        temporal_address=temporal.address,
        temporal_namespace=temporal.namespace,
        data_dir=tmp_path,
        smtp_port=port,
        task_queue="sealed",
        payload_keys=key(),
    )
    migrate(config.db_url())
    sink = start_sink(tmp_path / "mail", port=port)
    client = await connect(config)
    try:
        async with build_worker(client, config):
            await client.start_workflow(
                AgreementWorkflow.run,
                AgreementInput(agreement=agreement),
                id=workflow_id(agreement.id),
                task_queue=config.task_queue,
            )
            for _ in range(200):  # until its first step is written (the agreement list)
                if ops.agreements(config):
                    break
                await asyncio.sleep(0.05)
            state = await ops.state(client, agreement.id)  # the service reads it as before
            assert state.title == agreement.title
            raw = await Client.connect(temporal.address, namespace=temporal.namespace)
            history = await raw.get_workflow_handle(workflow_id(agreement.id)).fetch_history()
    finally:
        sink.stop()
    # The events as the server keeps them (protobuf: a payload's bytes are in it as they are).
    stored = b"".join(e.SerializeToString() for e in history.events)
    assert len(history.events) > 5
    people = [c for p in agreement.parties.values() for c in p.contacts]
    secrets = [agreement.title, agreement.coordinator.email, *(c.email for c in people)]
    secrets += [c.name for c in people] + [p.name for p in agreement.parties.values()]
    for text in secrets:
        assert text.encode() not in stored, text
    # Without the codec the payloads are nothing but sealed bytes.
    payloads = [
        e.workflow_execution_started_event_attributes.input.payloads[0]
        for e in history.events
        if e.HasField("workflow_execution_started_event_attributes")
    ]
    assert payloads and payloads[0].metadata["encoding"] == ENCODING


async def test_the_web_ui_decodes_through_the_codec_endpoint_for_administrators(
    tmp_path: Path,
) -> None:
    """The Temporal Web UI's remote codec protocol (POST /codec/decode, `{"payloads": …}`)
    opens sealed payloads for an administrator signed in here, with CORS for the UI's
    origin; a coordinator, a stranger and another origin get nothing."""
    import datetime as dt

    from fastapi.testclient import TestClient
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    from agreements import access
    from agreements.web.app import create_app

    config = Settings(data_dir=tmp_path, payload_keys=key(), temporal_ui_port=8233)
    db = migrate(config.db_url())
    access.add_organisation(db, "kultur", "Kultur")
    admin = access.grant(db, "ada@lund.se", "kultur", access.PersonRole.administrator)
    anna = access.grant(db, "anna@lund.se", "kultur", access.PersonRole.coordinator)
    secret = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email":"saul@example.se"}')
    sealed = await Sealed(read_keys(config.payload_keys.get_secret_value())).encode([secret])  # type: ignore[union-attr]
    body = json_format.MessageToDict(Payloads(payloads=sealed))
    assert "saul@example.se" not in str(body)
    ui = {"Origin": "http://127.0.0.1:8233", "X-Namespace": "default"}
    client = TestClient(create_app(config), client=("192.0.2.5", 50000))  # no Temporal needed

    def as_person(person_id: int | None) -> None:
        client.cookies.clear()
        if person_id is not None:
            value = access.open_session(db, person_id, dt.timedelta(hours=1))
            client.cookies.set("avtal_session", value)

    preflight = client.options("/codec/decode", headers=ui)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    as_person(None)
    assert client.post("/codec/decode", json=body, headers=ui).status_code == 403
    as_person(anna.id)
    assert client.post("/codec/decode", json=body, headers=ui).status_code == 403
    as_person(admin.id)
    opened = client.post("/codec/decode", json=body, headers=ui)
    assert opened.status_code == 200
    assert opened.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
    decoded = json_format.ParseDict(opened.json(), Payloads()).payloads
    assert decoded[0].data == secret.data
    elsewhere = client.post("/codec/decode", json=body, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 200 and "access-control-allow-origin" not in elsewhere.headers
    # A payload sealed with a key the service does not hold: a clear 400, never a 500.
    stranger = await Sealed([os.urandom(32)]).encode([secret])
    foreign = json_format.MessageToDict(Payloads(payloads=stranger))
    broken = client.post("/codec/decode", json=foreign, headers=ui)
    assert broken.status_code == 400 and "AGREEMENTS_PAYLOAD_KEYS" in broken.json()["detail"]
    assert client.post("/codec/decode", content=b"{", headers=ui).status_code == 400
