"""The agreements' documents: what is taken (a PDF that opens, not encrypted, not too large),
how it is kept (by its SHA-256, written whole), and that the signers sign the terms and the
documents together and can open each from their link."""

from __future__ import annotations

import hashlib
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfWriter

from documents import check
from documents.check import DocumentRefused, check_pdf
from documents.store import FolderStore
from models.lifecycle import terms_json, terms_sha256
from models.loader import load_agreement, loads_agreement
from tests.conftest import TOKEN, eventually
from tests.test_drafting import KVARNBY, form_of
from tests.test_web import AUTH, links

EXAMPLE = Path("examples/planteringen.toml")


def pdf(pages: int = 1, password: str | None = None, text: str = "") -> bytes:
    """A real PDF made here, `pages` blank pages (different `text` gives different bytes)."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": text or "Avtal"})
    if password is not None:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def start_signing(client: TestClient, agreement_id: str) -> None:
    """Confirm what the draft's prerequisites still lack, and start its signature round."""
    missing = client.get(f"/api/agreements/{agreement_id}", headers=AUTH).json()
    confirmed = client.post(
        f"/api/agreements/{agreement_id}/prerequisites",
        json={"keys": missing["prerequisites_missing"]},
        headers=AUTH,
    )
    assert confirmed.status_code == 200, confirmed.text
    started = client.post(f"/api/agreements/{agreement_id}/signing", headers=AUTH)
    assert started.status_code == 200, started.text


def test_a_pdf_is_taken_and_anything_else_is_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert check_pdf(pdf(3), "Avtal").pages == 3
    refused = {
        "empty": b"",
        "not-a-pdf": b"PK\x03\x04 a word document, renamed",
        "encrypted": pdf(password="hemligt"),
        "damaged": b"%PDF-1.7\n" + b"\x00garbage" * 50,
    }
    for code, data in refused.items():
        with pytest.raises(DocumentRefused) as caught:
            check_pdf(data, "Bilaga 1")
        assert caught.value.code == code, code
        said = caught.value.said("sv")
        assert "Bilaga 1" in said and said != caught.value.msgid % caught.value.params, said
    monkeypatch.setattr(check, "MAX_BYTES", 200)
    with pytest.raises(DocumentRefused) as caught:
        check_pdf(pdf(5), "Stor")
    assert caught.value.code == "too-large"


def test_documents_are_kept_once_by_their_hash_and_a_changed_file_is_not_served(
    tmp_path: Path,
) -> None:
    store = FolderStore(tmp_path / "documents")
    data = pdf(text="ett")
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest() and store.put(data) == sha
    assert store.get(sha) == data and store.has(sha)
    assert list((tmp_path / "documents").rglob("*.pdf")) == [
        tmp_path / "documents" / sha[:2] / f"{sha}.pdf"
    ]
    assert oct((tmp_path / "documents" / sha[:2] / f"{sha}.pdf").stat().st_mode)[-3:] == "600"
    (tmp_path / "documents" / sha[:2] / f"{sha}.pdf").write_bytes(data + b"x")
    with pytest.raises(KeyError):
        store.get(sha)
    for wrong in ("../../etc/passwd", "A" * 64, ""):
        assert not store.has(wrong)
        with pytest.raises(KeyError):
            store.get(wrong)


def test_terms_without_documents_keep_the_hash_they_always_had() -> None:
    agreement = load_agreement(EXAMPLE)
    assert "documents" not in json.loads(terms_json(agreement))
    document = {"sha256": "a" * 64, "name": "Avtal", "kind": "text", "size": 10, "pages": 1}
    data = agreement.model_dump(mode="json")
    with_one = agreement.model_validate({**data, "documents": [document]})
    assert terms_sha256(with_one) != terms_sha256(agreement)
    twice = agreement.model_validate({**data, "documents": [document, document]})
    from models.validation import check as rules

    assert any("twice" in p.message for p in rules(twice))


def test_a_draft_gets_its_documents_in_the_form_and_the_signers_open_them(
    web: tuple[TestClient, Path],
) -> None:
    client, mail = web
    client.post("/login", data={"token": TOKEN})
    fields = {**form_of(client.get("/draft").text), **KVARNBY}
    text_pdf, annex = pdf(2, text="avtalstext"), pdf(1, text="bilaga")
    # Uploaded with the form: kept, and a row each, named after the file.
    sent = client.post(
        "/draft",
        data={**fields, "do": "upload", "upload_kind": "text"},
        files=[("upload", ("Avtal Kvarnby.pdf", text_pdf, "application/pdf"))],
    )
    assert sent.status_code == 200, sent.text
    fields = form_of(sent.text)
    assert fields["document.0.name"] == "Avtal Kvarnby" and fields["document.0.kind"] == "text"
    # A file that is not a PDF is refused next to the upload field; nothing else is lost.
    bad = client.post(
        "/draft",
        data={**fields, "do": "upload"},
        files=[("upload", ("bilaga.docx", b"PK\x03\x04 word", "application/pdf"))],
    )
    assert bad.status_code == 422 and 'id="f-upload-error"' in bad.text
    assert "är inte en PDF" in bad.text and form_of(bad.text)["document.0.name"] == "Avtal Kvarnby"
    added = client.post(
        "/draft",
        data={**fields, "do": "save"},
        files=[("upload", ("Bilaga 1 Budget.pdf", annex, "application/pdf"))],
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text
    at = added.headers["location"]
    agreement_id = at.removeprefix("/a/")
    page = client.get(at)
    assert "Avtal Kvarnby" in page.text and "Bilaga 1 Budget" in page.text
    terms = loads_agreement(client.get(f"{at}/terms.toml").text)
    assert [(d.name, d.kind.value, d.pages) for d in terms.documents] == [
        ("Avtal Kvarnby", "text", 2),
        ("Bilaga 1 Budget", "attachment", 1),
    ]
    sha = hashlib.sha256(annex).hexdigest()
    opened = client.get(f"{at}/documents/{sha}")
    assert opened.status_code == 200 and opened.content == annex
    assert opened.headers["content-type"] == "application/pdf"
    assert client.get(f"{at}/documents/{'0' * 64}").status_code == 404
    # The API adds one more; the same file twice is one document.
    third = pdf(text="bilaga 2")
    for _ in range(2):
        answer = client.post(
            f"/api/agreements/{agreement_id}/documents",
            headers=AUTH,
            data={"kind": "attachment", "name": "Bilaga 2"},
            files={"file": ("b2.pdf", third, "application/pdf")},
        )
        assert answer.status_code == 200, answer.text
    # Two uploads at the same moment: both documents end up in the terms (the second
    # change, made from terms that changed meanwhile, is made again from the new ones).
    together = [pdf(text=f"samtidigt {n}") for n in range(2)]

    def upload(n: int) -> int:
        answer = client.post(
            f"/api/agreements/{agreement_id}/documents",
            headers=AUTH,
            data={"kind": "attachment", "name": f"Samtidig {n}"},
            files={"file": (f"s{n}.pdf", together[n], "application/pdf")},
        )
        return int(answer.status_code)

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(upload, range(2))) == [200, 200]
    refused = client.post(
        f"/api/agreements/{agreement_id}/documents",
        headers=AUTH,
        files={"file": ("l.pdf", pdf(password="x"), "application/pdf")},
    )
    assert refused.status_code == 422 and refused.json()["code"] == "encrypted"
    terms = loads_agreement(client.get(f"{at}/terms.toml").text)
    names = [d.name for d in terms.documents]
    assert names[:3] == ["Avtal Kvarnby", "Bilaga 1 Budget", "Bilaga 2"]
    assert sorted(names[3:]) == ["Samtidig 0", "Samtidig 1"]
    # Signing: each signer sees every document with its hash and opens it from the link.
    start_signing(client, agreement_id)
    link = links(mail, 2)["sam@laxhjalpen.example.se"]
    signing = client.get(link)
    assert signing.status_code == 200
    for d in terms.documents:
        assert d.sha256 in signing.text and f"{link}/documents/{d.sha256}" in signing.text
    assert client.get(f"{link}/documents/{sha}").content == annex
    assert client.get(f"{link}/documents/{'0' * 64}").status_code == 404
    assert client.get(f"{link[:-3]}abc/documents/{sha}").status_code == 403


def test_a_completed_round_sends_and_offers_the_sealed_record(
    web: tuple[TestClient, Path],
) -> None:
    """Everyone signs from their link: the completion email to every party carries the
    sealed signing record, whose seal holds; the agreement's page and each signer's link
    give the same file."""
    from emails.sink import read_mail
    from sealing.seal import SEAL_FILE, load_seal_key, verify

    client, mail = web
    client.post("/login", data={"token": TOKEN})
    fields = {**form_of(client.get("/draft").text), **KVARNBY}
    text_pdf = pdf(2, text="avtalet")
    added = client.post(
        "/draft",
        data={**fields, "do": "save", "upload_kind": "text", "prerequisites": []},
        files=[("upload", ("Avtal.pdf", text_pdf, "application/pdf"))],
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text
    agreement_id = added.headers["location"].removeprefix("/a/")
    start_signing(client, agreement_id)
    personal = links(mail, 2)
    for link in personal.values():
        assert client.post(link, data={"action": "sign"}).status_code == 200
    completed: list[Any] = []
    for _ in range(300):
        completed = [
            m for m in read_mail(mail) if m["X-Agreement-Template"] == "signature_completed"
        ]
        if len(completed) >= 2:
            break
        time.sleep(0.1)
    assert {m["To"].addresses[0].addr_spec for m in completed} >= set(personal)
    attached = [a for m in completed for a in m.iter_attachments()]
    assert len(attached) == len(completed)
    record = attached[0].get_content()
    assert all(a.get_content() == record for a in attached)
    assert attached[0].get_content_type() == "application/pdf"
    assert attached[0].get_filename() == f"{agreement_id}-underskrifter-1.pdf"
    data_dir = Path(client.app.state.config.data_dir)  # type: ignore[attr-defined]
    seal_cert = load_seal_key(data_dir / SEAL_FILE).certificate
    verdict = verify(record, seal_cert)
    assert verdict.valid, verdict
    changed = bytearray(record)
    changed[len(record) // 3] ^= 0x01
    assert not verify(bytes(changed), seal_cert).valid
    page = client.get(f"/a/{agreement_id}")
    assert f"/a/{agreement_id}/records/1" in page.text
    assert client.get(f"/a/{agreement_id}/records/1").content == record
    assert client.get(f"/a/{agreement_id}/records/2").status_code == 404
    some = next(iter(personal.values()))
    assert client.get(f"{some}/record").content == record
    assert 'id="record"' in client.get(some).text


def test_a_paper_signature_comes_with_its_scan_whose_hash_the_record_keeps(
    web: tuple[TestClient, Path],
) -> None:
    """The coordinator records a signature on paper with the scanned signed copy: the
    confirmation carries the scan's hash (the file is kept at once), the round records it,
    and the sealed record names it as the evidence of that signature."""
    import re

    from pypdf import PdfReader

    from emails.sink import read_mail

    client, mail = web
    client.post("/login", data={"token": TOKEN})
    fields = {**form_of(client.get("/draft").text), **KVARNBY}
    added = client.post("/draft", data={**fields, "do": "save"}, follow_redirects=False)
    agreement_id = added.headers["location"].removeprefix("/a/")
    start_signing(client, agreement_id)
    personal = links(mail, 2)
    page = client.get(f"/a/{agreement_id}").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None and 'name="scan" type="file"' in page
    scan = pdf(1, text="inskannad")
    form = {"csrf": csrf.group(1), "signer": "anna.ek@kommun.example.se", "date": "2026-11-20"}
    # Without the scan: refused, nothing recorded.
    assert (
        client.post(f"/a/{agreement_id}/sign-paper", data={**form, "confirmed": "yes"}).status_code
        == 400
    )
    asked = client.post(
        f"/a/{agreement_id}/sign-paper",
        data=form,
        files={"scan": ("Underskrift Anna.pdf", scan, "application/pdf")},
    )
    sha = hashlib.sha256(scan).hexdigest()
    assert asked.status_code == 200 and f'name="scan_sha256" value="{sha}"' in asked.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', asked.text))
    done = client.post(f"/a/{agreement_id}/sign-paper", data=hidden, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert client.post(personal["sam@laxhjalpen.example.se"], data={"action": "sign"}).is_success
    completed = eventually(
        lambda: [m for m in read_mail(mail) if m["X-Agreement-Template"] == "signature_completed"],
        "the completion emails",
    )
    assert isinstance(completed[0], EmailMessage)
    record = next(completed[0].iter_attachments()).get_content()
    words = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(record)).pages)
    assert sha[:32] in words.replace("\n", "") and "papper" in words
