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
