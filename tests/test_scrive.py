"""The Scrive adapter (signing/scrive.py) against a fake Scrive on loopback
(tests/fake_scrive.py) that behaves as Scrive's API documentation says."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from models.config import Settings
from signing import (
    ProviderDocument,
    ProviderRefused,
    ProviderSigner,
    ProviderStatus,
    ProviderUnavailable,
    SigningRequest,
    provider_for,
)
from signing.scrive import TAG, ScriveCredentials, ScriveProvider, callback_document_id
from tests.fake_scrive import CallbackSink, Credentials, FakeScrive, running

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ANNA = ProviderSigner(
    name="Anna Lind", email="anna.lind@helsingborg.example", party="stad", party_name="Stad"
)
OLLE = ProviderSigner(
    name="Olle Berg",
    email="olle@inva-sam.example",
    party="inva",
    party_name="INVA-SAM",
    personal_number="19800101-1234",
)
T0 = dt.datetime(2025, 3, 3, 9, 15, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def scrive_server() -> Iterator[FakeScrive]:
    fake = FakeScrive()
    with running(fake):
        yield fake


@pytest.fixture
def fake(scrive_server: FakeScrive) -> Iterator[FakeScrive]:
    yield scrive_server
    scrive_server.up()
    scrive_server.echo_credentials = False
    if scrive_server._server is None:  # a test that stopped it
        scrive_server.start()


def adapter(
    fake: FakeScrive, credentials: Credentials | None = None, **kw: float
) -> ScriveProvider:
    c = credentials or fake.credentials
    return ScriveProvider(
        fake.url,
        ScriveCredentials(
            api_token=SecretStr(c.api_token),
            api_secret=SecretStr(c.api_secret),
            access_token=SecretStr(c.access_token),
            access_secret=SecretStr(c.access_secret),
        ),
        timeout=kw.get("timeout", 5.0),
    )


_rounds = 0


CALLBACK = "https://avtal.example/scrive/callback?r=1"


def request(callback_url: str | None = CALLBACK, **kw: object) -> SigningRequest:
    global _rounds
    _rounds += 1
    fields: dict[str, object] = {
        "key": f"agr-{_rounds}-round-1",
        "title": "IOP INVA-SAM 2025",
        "pdf": PDF,
        "signers": [ANNA, OLLE],
        "callback_url": callback_url,
        "expires_days": 30,
        "language": "sv",
    }
    fields.update(kw)
    return SigningRequest.model_validate(fields)


async def test_a_round_is_sent_once_with_swedish_bankid_even_when_create_is_called_twice(
    fake: FakeScrive,
) -> None:
    scrive = adapter(fake)
    ask = request()
    before = set(fake.document_ids())

    first = await scrive.create(ask)
    again = await scrive.create(ask)

    assert again == first == ProviderDocument(provider="scrive", document_id=first.document_id)
    assert set(fake.document_ids()) - before == {first.document_id}
    assert fake.starts(first.document_id) == 1
    sent = fake.document(first.document_id)
    assert sent["status"] == "pending"
    assert sent["title"] == "IOP INVA-SAM 2025" and sent["lang"] == "sv"
    assert sent["days_to_sign"] == 30 and sent["timezone"] == "Europe/Stockholm"
    assert sent["api_callback_url"] == CALLBACK
    assert {"name": TAG, "value": ask.key} in sent["tags"]
    author, anna, olle = sent["parties"]
    assert author["is_author"] and author["signatory_role"] == "viewer"
    for party, signer in ((anna, ANNA), (olle, OLLE)):
        assert party["signatory_role"] == "signing_party"
        assert party["authentication_method_to_sign"] == "se_bankid"
        assert party["delivery_method"] == "email"
        assert party["hide_personal_number"] is True  # not in the sealed file we keep
        values = {(f["type"], f.get("order")): f["value"] for f in party["fields"]}
        assert values[("email", None)] == signer.email
        assert values[("company", None)] == signer.party_name
    assert {(f["type"], f["value"]) for f in anna["fields"]} >= {
        ("name", "Anna"),
        ("name", "Lind"),
        ("personal_number", ""),  # Anna types it in at Scrive
    }
    assert ("personal_number", "19800101-1234") in {(f["type"], f["value"]) for f in olle["fields"]}
    assert "1234" not in repr(OLLE)

    status = await scrive.status(first)
    assert status.state == "pending" and not status.closed and not status.sealed_ready
    assert [s.email for s in status.signers] == [ANNA.email, OLLE.email]
    assert [s.method_detail for s in status.signers] == ["se_bankid", "se_bankid"]
    assert all(s.signed_at is None for s in status.signers)


async def test_a_start_whose_answer_was_lost_is_not_started_a_second_time(
    fake: FakeScrive,
) -> None:
    scrive = adapter(fake)
    ask = request()
    fake.fail_next("start", 502, after=True)  # Scrive started it; the answer never came
    with pytest.raises(ProviderUnavailable, match="502"):
        await scrive.create(ask)

    document = await scrive.create(ask)  # the activity's retry

    assert fake.starts(document.document_id) == 1
    assert (await scrive.status(document)).state == "pending"


async def test_a_retry_after_scrive_lost_the_parties_leaves_at_most_an_unsent_draft(
    fake: FakeScrive,
) -> None:
    scrive = adapter(fake)
    ask = request()
    before = set(fake.document_ids())
    fake.fail_next("update", 503)  # the upload is in, the parties and the tag are not
    with pytest.raises(ProviderUnavailable):
        await scrive.create(ask)

    document = await scrive.create(ask)
    assert await scrive.create(ask) == document

    made = {d: fake.document(d) for d in set(fake.document_ids()) - before}
    started = [d for d, doc in made.items() if doc["status"] != "preparation"]
    assert started == [document.document_id]
    for d, doc in made.items():
        if d != document.document_id:  # the first upload: never named, never sent
            assert doc["status"] == "preparation" and not doc["is_saved"]
            assert not doc["tags"] and fake.starts(d) == 0


async def test_everyone_signs_then_the_sealed_file_and_the_evidence_are_fetched(
    fake: FakeScrive,
) -> None:
    scrive = adapter(fake)
    document = await scrive.create(request())
    d = document.document_id

    fake.open(d, ANNA.email, at=T0)
    fake.sign(d, ANNA.email, at=T0 + dt.timedelta(minutes=5))
    halfway = await scrive.status(document)
    assert halfway.state == "pending" and not halfway.closed
    assert halfway.signers[0].seen_at == T0
    assert halfway.signers[0].signed_at == T0 + dt.timedelta(minutes=5)
    assert halfway.signers[1].signed_at is None
    with pytest.raises(ProviderRefused, match="not signed"):
        await scrive.sealed(document)

    fake.sign(d, OLLE.email, at=T0 + dt.timedelta(hours=2))
    signed = await scrive.status(document)
    assert (signed.state, signed.closed, signed.sealed_ready) == ("signed", True, False)
    assert signed.signers[1].signed_at == T0 + dt.timedelta(hours=2)
    assert signed.signers[1].name == "Olle Berg"
    with pytest.raises(ProviderUnavailable, match="not sealed yet"):
        await scrive.sealed(document)  # Scrive seals within seconds of the last signature

    sealed = fake.seal(d)
    assert (await scrive.status(document)).sealed_ready
    pdf = await scrive.sealed(document)
    assert pdf == sealed and pdf.startswith(PDF) and len(pdf) > len(PDF)
    evidence = await scrive.evidence(document)
    assert evidence is not None
    events = json.loads(evidence)["events"]
    assert [e["status"] for e in events] == [
        "sealed",
        "signed",
        "signed",
        "opened",
        "sent",
        "sent",
        "initiated",
    ]
    assert events[1]["party"] == "Olle Berg"
    assert await scrive.remind(document) is False  # nobody left to remind
    assert (await scrive.cancel(document)).state == "signed"  # too late to withdraw


async def test_the_sealed_file_waits_out_scrive_answering_not_ready(fake: FakeScrive) -> None:
    scrive = adapter(fake)
    document = await scrive.create(request(signers=[ANNA]))
    fake.sign(document.document_id, ANNA.email)
    fake.seal(document.document_id)
    fake.fail_next("file", 503)  # "not ready yet, please wait and try again"
    with pytest.raises(ProviderUnavailable, match="503"):
        await scrive.sealed(document)
    assert (await scrive.sealed(document)).startswith(b"%PDF-")


async def test_a_signer_who_declines_ends_the_round_declined_with_their_reason(
    fake: FakeScrive,
) -> None:
    scrive = adapter(fake)
    document = await scrive.create(request())
    fake.sign(document.document_id, ANNA.email, at=T0)
    fake.decline(document.document_id, OLLE.email, "Fel belopp i § 5", at=T0 + dt.timedelta(days=1))

    status = await scrive.status(document)

    assert (status.state, status.closed, status.sealed_ready) == ("declined", True, False)
    olle = status.signers[1]
    assert olle.declined_at == T0 + dt.timedelta(days=1) and olle.reason == "Fel belopp i § 5"
    assert status.signers[0].signed_at == T0 and status.signers[0].declined_at is None
    with pytest.raises(ProviderRefused, match="rejected"):
        await scrive.sealed(document)
    assert await scrive.remind(document) is False
    assert (await scrive.cancel(document)).state == "declined"


async def test_a_document_nobody_finished_in_time_is_expired(fake: FakeScrive) -> None:
    scrive = adapter(fake)
    document = await scrive.create(request(expires_days=14))
    assert fake.document(document.document_id)["days_to_sign"] == 14
    fake.time_out(document.document_id)

    status = await scrive.status(document)

    assert (status.state, status.closed) == ("expired", True)
    assert await scrive.remind(document) is False


async def test_a_cancelled_document_is_cancelled_and_cancelling_again_changes_nothing(
    fake: FakeScrive,
) -> None:
    scrive = adapter(fake)
    document = await scrive.create(request())

    first = await scrive.cancel(document)
    again = await scrive.cancel(document)  # a retried activity

    assert first.state == again.state == "cancelled" and first.closed
    assert (await scrive.status(document)).state == "cancelled"


async def test_a_reminder_goes_to_those_who_have_not_signed(fake: FakeScrive) -> None:
    scrive = adapter(fake)
    document = await scrive.create(request())
    fake.sign(document.document_id, ANNA.email)

    assert await scrive.remind(document) is True

    assert fake.reminders(document.document_id) == 1
    events = json.loads(await scrive.evidence(document) or b"{}")["events"]
    assert [e["party"] for e in events if e["text"].endswith("reminder")] == ["Olle Berg"]


async def test_scrive_down_for_a_while_is_unavailable_and_then_the_round_goes_on(
    fake: FakeScrive,
) -> None:
    scrive = adapter(fake, timeout=1.0)
    ask = request()
    fake.down(503)
    with pytest.raises(ProviderUnavailable, match="503"):
        await scrive.create(ask)
    fake.up()
    document = await scrive.create(ask)

    fake.down(429)  # too many requests
    with pytest.raises(ProviderUnavailable, match="429"):
        await scrive.status(document)
    fake.up()

    fake.stop()  # not listening at all: connections refused
    with pytest.raises(ProviderUnavailable, match="could not be reached"):
        await scrive.status(document)
    with pytest.raises(ProviderUnavailable):
        await scrive.remind(document)
    fake.start()

    fake.delay = 2.0  # slower than the adapter waits
    with pytest.raises(ProviderUnavailable, match="in time"):
        await scrive.status(document)
    fake.up()

    fake.sign(document.document_id, ANNA.email)
    fake.sign(document.document_id, OLLE.email)
    assert (await scrive.status(document)).state == "signed"
    assert len([d for d in fake.document_ids() if _has_key(fake, d, ask.key)]) == 1


async def test_wrong_credentials_and_unknown_documents_are_refused(fake: FakeScrive) -> None:
    wrong = Credentials(access_secret="0000000000000000")
    with pytest.raises(ProviderRefused, match="credentials") as refused:
        await adapter(fake, wrong).create(request())
    assert "401" in str(refused.value) and "invalid_authorisation" in str(refused.value)

    scrive = adapter(fake)
    with pytest.raises(ProviderRefused, match="404"):
        await scrive.status(ProviderDocument(provider="scrive", document_id="4242"))
    with pytest.raises(ProviderRefused, match="not a Scrive document id"):
        await scrive.status(ProviderDocument(provider="scrive", document_id="../../users"))
    with pytest.raises(ProviderRefused, match="not Scrive's"):
        await scrive.status(ProviderDocument(provider="addo", document_id="1"))
    with pytest.raises(ProviderRefused, match="not a PDF"):
        await scrive.create(request(pdf=b"<html>"))


async def test_the_credentials_are_never_in_a_log_line_or_an_error(
    fake: FakeScrive, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's too
    secrets = fake.credentials.values()
    errors: list[str] = []
    scrive = adapter(fake)
    document = await scrive.create(request())
    fake.echo_credentials = True  # Scrive's error repeats the header it was sent
    with pytest.raises(ProviderRefused) as refused:
        await adapter(fake, Credentials(access_secret="1111111111111111")).status(document)
    errors.append(str(refused.value))
    fake.down(500)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await scrive.status(document)
    errors.append(str(unavailable.value))

    assert 'oauth_consumer_key="***"' in errors[0] and "1111111111111111" not in errors[0]
    for text in [*errors, caplog.text, repr(scrive)]:
        for secret in secrets:
            assert secret not in text


async def test_callbacks_twice_late_and_out_of_order_end_the_round_once_and_right(
    fake: FakeScrive,
) -> None:
    """Scrive's callbacks only say what the document is now, may come more than once and
    in any order: each is a hint to fetch the status, and the round ends once, signed."""
    sink = CallbackSink()
    with running(sink):
        scrive = adapter(fake)
        document = await scrive.create(request(callback_url=sink.url))
        d = document.document_id
        fake.sign(d, ANNA.email)
        fake.sign(d, OLLE.email)
        fake.seal(d)
        started, anna, closed, sealed = fake.callbacks(d)
        assert json.loads(started.form["document_json"])["status"] == "pending"
        assert sealed.form["document_signed_and_sealed"] == "true"

        sink.refuse = 2  # the service is briefly down: Scrive tries again
        assert fake.deliver(closed) == 3
        for callback in (sealed, closed, anna, started, started):  # late, twice, backwards
            fake.deliver(callback)

        ended: list[ProviderStatus] = []
        for form in sink.received:
            named = scrive.callback_document_id(form)
            assert named == d
            status = await scrive.status(ProviderDocument(provider="scrive", document_id=named))
            if status.closed and not ended:
                ended.append(status)
            assert status.state == "signed"  # a stale "pending" body changes nothing

    assert len(sink.received) == 6
    assert [s.state for s in ended] == ["signed"]
    assert ended[0].sealed_ready


def test_what_a_callback_names() -> None:
    assert callback_document_id({"document_id": "8222115557375075439"}) == "8222115557375075439"
    assert callback_document_id({"document_json": json.dumps({"id": "12"})}) == "12"
    assert callback_document_id({"document_json": {"id": 12}}) == "12"
    assert callback_document_id({"document_id": "12/../../list"}) is None
    assert callback_document_id({"document_json": "{not json"}) is None
    assert callback_document_id({}) is None


async def test_the_provider_is_chosen_by_name_and_set_up_from_the_settings(
    fake: FakeScrive, tmp_path: Path
) -> None:
    c = fake.credentials
    config = Settings(
        data_dir=tmp_path,
        scrive_url=fake.url + "/",
        scrive_api_token=c.api_token,
        scrive_api_secret=c.api_secret,
        scrive_access_token=c.access_token,
        scrive_access_secret=c.access_secret,
        scrive_timeout_seconds=3,
    )
    provider = provider_for("scrive", config)
    async with ScriveProvider.from_settings(config) as shared:  # one client, several calls
        document = await shared.create(request())
        assert (await shared.status(document)).state == "pending"
    assert (await provider.status(document)).state == "pending"

    with pytest.raises(ProviderRefused, match="AGREEMENTS_SCRIVE_ACCESS_SECRET"):
        provider_for("scrive", Settings(data_dir=tmp_path, scrive_api_token="t"))
    with pytest.raises(ProviderRefused, match="no signing provider named 'freja'"):
        provider_for("freja", config)


def _has_key(fake: FakeScrive, document_id: str, key: str) -> bool:
    return {"name": TAG, "value": key} in fake.document(document_id)["tags"]


def test_a_signing_request_survives_json_with_its_pdf_whole() -> None:
    binary = request(pdf=PDF + bytes(range(256)))
    again = SigningRequest.model_validate_json(binary.model_dump_json())
    assert again == binary and again.pdf.endswith(bytes(range(256)))


async def test_signers_asked_to_sign_in_turn_get_their_order(fake: FakeScrive) -> None:
    scrive = adapter(fake)
    document = await scrive.create(request(signers=[OLLE, ANNA], sequential=True))
    parties = fake.document(document.document_id)["parties"][1:]
    assert [(p["sign_order"], p["fields"][2]["value"]) for p in parties] == [
        (1, OLLE.email),
        (2, ANNA.email),
    ]
