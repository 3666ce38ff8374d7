"""A signature round signed with Swedish BankID through the signing provider, end to end:
the real service (worker and pages) against the fake Scrive on loopback (tests/fake_scrive.py,
which behaves as Scrive's documentation says). The provider invites the signers; its
callbacks come twice, late and out of order and only say "ask again"; a signer declines; the
document times out; Scrive is down for a while. Each round ends once, right, and nothing is
lost: the sealed record names the provider's document and keeps its sealed file."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from documents.store import store_for
from emails.sink import read_mail
from tests.conftest import TOKEN, eventually
from tests.fake_scrive import Credentials, FakeScrive, running
from tests.test_documents import start_signing
from tests.test_drafting import KVARNBY, form_of
from tests.test_web import AUTH

ANNA = "anna.ek@kommun.example.se"
SAM = "sam@laxhjalpen.example.se"


@pytest.fixture
def scrive(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeScrive]:
    """The fake Scrive, and the settings that point the service at it (set before the
    service starts: the `web` fixture comes after this one)."""
    fake = FakeScrive()
    credentials = Credentials()
    monkeypatch.setenv("AGREEMENTS_SCRIVE_URL", fake.url)
    for name, value in (
        ("API_TOKEN", credentials.api_token),
        ("API_SECRET", credentials.api_secret),
        ("ACCESS_TOKEN", credentials.access_token),
        ("ACCESS_SECRET", credentials.access_secret),
    ):
        monkeypatch.setenv(f"AGREEMENTS_SCRIVE_{name}", value)
    with running(fake):
        yield fake


def started(client: TestClient, fake: FakeScrive) -> tuple[str, str]:
    """An agreement drafted in the form to be signed with BankID, its round started; the
    agreement's id and the provider's document."""
    client.post("/login", data={"token": TOKEN})
    fields = {**form_of(client.get("/draft").text), **KVARNBY, "signing.method": "bankid"}
    added = client.post("/draft", data={**fields, "do": "save"}, follow_redirects=False)
    assert added.status_code == 303, added.text
    agreement_id = added.headers["location"].removeprefix("/a/")
    start_signing(client, agreement_id)
    for _ in range(400):  # made, its parties set, and started: out for signing
        ids = fake.document_ids()
        if ids and fake.document(ids[0])["status"] == "pending":
            break
        time.sleep(0.05)
    [document] = fake.document_ids()
    assert fake.document(document)["status"] == "pending"
    parties = fake.document(document)["parties"]
    signing = [p for p in parties if p["signatory_role"] == "signing_party"]
    assert {p["authentication_method_to_sign"] for p in signing} == {"se_bankid"}
    return agreement_id, document


def deliver(client: TestClient, fake: FakeScrive, document: str, times: int = 2) -> None:
    """Every callback Scrive made for the document, newest first, each `times` times."""
    for callback in reversed(fake.callbacks(document) * times):
        answer = client.post(urlsplit(callback.url).path, data=callback.form)
        assert answer.status_code == 200, answer.text


def state_of(client: TestClient, agreement_id: str, wanted: set[str]) -> dict[str, Any]:
    for _ in range(400):
        found: dict[str, Any] = client.get(f"/api/agreements/{agreement_id}", headers=AUTH).json()
        if found["round"] and found["round"]["outcome"] in wanted:
            return found
        time.sleep(0.05)
    raise AssertionError(f"the round did not end {wanted}: {found['round']}")


def test_everyone_signs_with_bankid_and_the_callbacks_twice_and_backwards_end_it_once(
    scrive: FakeScrive, web: tuple[TestClient, Path]
) -> None:
    client, mail = web
    agreement_id, document = started(client, scrive)
    # The provider invites: the service sends no signing links of its own.
    assert not [m for m in read_mail(mail) if m["X-Agreement-Template"] == "signature_request"]
    scrive.open(document, ANNA)
    scrive.sign(document, ANNA)
    scrive.sign(document, SAM)
    sealed = scrive.seal(document)
    deliver(client, scrive, document)
    path = urlsplit(scrive.callbacks(document)[0].url).path
    forged = path.rsplit("/", 1)[0] + "/" + "0" * 32
    assert client.post(forged, data={"document_id": document}).status_code == 403
    found = state_of(client, agreement_id, {"completed"})
    assert [e["what"] for e in found["round"]["events"]].count("signed") == 2
    assert all(s["status"] == "signed" for s in found["round"]["signers"])
    completed = eventually(
        lambda: [m for m in read_mail(mail) if m["X-Agreement-Template"] == "signature_completed"],
        "the completion emails",
    )
    message = completed[0]
    assert isinstance(message, EmailMessage)
    record = next(message.iter_attachments()).get_content()
    words = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(record)).pages)
    assert "BankID" in words and document in words.replace("\n", "")
    data_dir = Path(client.app.state.config.data_dir)  # type: ignore[attr-defined]
    assert store_for(data_dir).has(hashlib.sha256(sealed).hexdigest())
    # Callbacks after the end change nothing.
    deliver(client, scrive, document, times=1)
    again = client.get(f"/api/agreements/{agreement_id}", headers=AUTH).json()
    assert again["round"] == found["round"]
    assert [m["X-Agreement-Template"] for m in read_mail(mail)].count("signature_completed") == len(
        completed
    )


def test_a_signer_who_declines_at_the_provider_ends_the_round_declined(
    scrive: FakeScrive, web: tuple[TestClient, Path]
) -> None:
    client, _ = web
    agreement_id, document = started(client, scrive)
    scrive.sign(document, ANNA)
    scrive.decline(document, SAM, "Fel belopp i bilagan")
    deliver(client, scrive, document)
    found = state_of(client, agreement_id, {"declined"})
    assert found["round"]["reason"] == "Fel belopp i bilagan"
    assert found["state"] == "draft"


def test_a_document_that_times_out_at_the_provider_ends_the_round_expired(
    scrive: FakeScrive, web: tuple[TestClient, Path]
) -> None:
    client, _ = web
    agreement_id, document = started(client, scrive)
    scrive.time_out(document)
    deliver(client, scrive, document)
    state_of(client, agreement_id, {"expired"})


def test_scrive_down_for_a_while_loses_nothing(
    scrive: FakeScrive, web: tuple[TestClient, Path]
) -> None:
    client, _ = web
    agreement_id, document = started(client, scrive)
    scrive.sign(document, ANNA)
    scrive.sign(document, SAM)
    scrive.seal(document)
    scrive.down()
    deliver(client, scrive, document, times=1)  # the round asks, and Scrive answers 503
    time.sleep(3)
    assert (
        client.get(f"/api/agreements/{agreement_id}", headers=AUTH).json()["round"]["outcome"]
        == "open"
    )
    scrive.up()
    found = state_of(client, agreement_id, {"completed"})  # retried until Scrive is back
    assert all(s["status"] == "signed" for s in found["round"]["signers"])


def test_a_coordinator_who_cancels_the_round_cancels_the_document_at_the_provider(
    scrive: FakeScrive, web: tuple[TestClient, Path]
) -> None:
    client, _ = web
    agreement_id, document = started(client, scrive)
    cancelled = client.post(
        f"/api/agreements/{agreement_id}/signing/cancel",
        json={"reason": "Fel belopp", "by": "api"},
        headers=AUTH,
    )
    assert cancelled.status_code == 200, cancelled.text
    found = state_of(client, agreement_id, {"cancelled"})
    assert found["round"]["reason"] == "Fel belopp" and found["state"] == "draft"
    for _ in range(200):  # nobody can sign at Scrive what no longer counts
        if scrive.document(document)["status"] == "canceled":
            break
        time.sleep(0.05)
    assert scrive.document(document)["status"] == "canceled"
