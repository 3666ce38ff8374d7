"""The sealed signing record (issue 16): one PDF with the verification, the terms and the
documents, sealed with the deployment's seal certificate, and what a check of the seal finds
when the record is intact, changed, extended or sealed by someone else."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import stat
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import weasyprint
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.generic import pdf_string
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pypdf import PdfReader, PdfWriter

from models.agreement import Agreement, Document, Language
from models.config import Settings
from models.lifecycle import terms_sha256
from models.loader import load_agreement, loads_agreement
from sealing.record import (
    RecordDocument,
    RecordEvent,
    RecordInputs,
    RecordSigner,
    build_record,
    claimed_pdfa,
)
from sealing.seal import SealKey, make_self_signed, seal, seal_key_for, verify

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def moment(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=STOCKHOLM)


def pdf_pages(*texts: str) -> bytes:
    """A small PDF/A document, one page for each text."""
    html = "".join(f'<p style="break-before: page">{t}</p>' for t in texts)
    return bytes(weasyprint.HTML(string=html).write_pdf(pdf_variant="pdf/a-3b"))


def document(name: str, data: bytes) -> RecordDocument:
    return RecordDocument(name, hashlib.sha256(data).hexdigest(), data)


def text_of(pdf: bytes, pages: range | None = None) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    chosen = pages if pages is not None else range(len(reader.pages))
    return "\n".join(reader.pages[i].extract_text() for i in chosen)


def squeezed(text: str) -> str:
    """Text without white space: a hash the page wraps reads whole again."""
    return "".join(text.split())


SIGNERS = [
    RecordSigner(
        "Sara Svensson",
        "Rädda Barnen region syd",
        "sara.svensson@raddabarnen.example.se",
        "link",
        moment(2024, 4, 17, 10, 3, 12),
        ip="192.0.2.15",
    ),
    RecordSigner(
        "Jonas Hansson",
        "Helsingborgshem AB",
        "jonas.hansson@helsingborgshem.example.se",
        "paper",
        moment(2024, 4, 18, 9, 0, 0),
        recorded_by="Julia Listrup",
        evidence="Skannad kopia, Jonas Hansson.pdf",
    ),
    RecordSigner(
        "Maria Holm",
        "Skol- och fritidsförvaltningen, Helsingborgs stad",
        "maria.holm@helsingborg.example.se",
        "provider",
        moment(2024, 11, 26, 14, 3, 12),
        provider="Scrive",
        ip="198.51.100.7",
    ),
]
EVENTS = [
    RecordEvent(moment(2024, 4, 17, 8, 38, 0), "sent", "Julia Listrup"),
    RecordEvent(moment(2024, 4, 17, 10, 3, 12), "signed", "Sara Svensson"),
    RecordEvent(moment(2024, 4, 18, 9, 0, 0), "signed", "Julia Listrup"),
    RecordEvent(moment(2024, 11, 26, 14, 3, 12), "signed", "Maria Holm"),
    RecordEvent(moment(2024, 11, 26, 14, 3, 13), "completed", None),
]


@pytest.fixture(scope="module")
def agreement() -> Agreement:
    return load_agreement(EXAMPLES / "planteringen.toml")


@pytest.fixture(scope="module")
def documents() -> list[RecordDocument]:
    return [
        document(
            "Överenskommelse IOP Planteringen.pdf",
            pdf_pages("Överenskommelse, sida ett", "Överenskommelse, sida två"),
        ),
        document("Bilaga 1 – budget för år 2024", pdf_pages("Bilaga 1: budget 2024 (årsbudget)")),
    ]


def inputs(
    agreement: Agreement, documents: list[RecordDocument], language: str | None = None
) -> RecordInputs:
    return RecordInputs(
        agreement=agreement,
        terms_sha256=terms_sha256(agreement),
        documents=documents,
        signers=SIGNERS,
        events=EVENTS,
        round_number=1,
        made_at=moment(2024, 11, 26, 14, 5, 0),
        language=language,
    )


@pytest.fixture(scope="module")
def record(agreement: Agreement, documents: list[RecordDocument]) -> bytes:
    return build_record(inputs(agreement, documents))


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SealKey:
    return make_self_signed(tmp_path_factory.mktemp("seal") / "seal.p12", "Helsingborgs stad")


@pytest.fixture(scope="module")
def sealed(record: bytes, key: SealKey) -> bytes:
    return seal(record, key, reason="Signeringsunderlag för IOP Planteringen", location="Malmö")


def test_the_verification_names_every_signer_the_hashes_and_the_times_with_their_zone(
    record: bytes, agreement: Agreement, documents: list[RecordDocument]
) -> None:
    text = text_of(record)
    flat = " ".join(text.split())
    assert "Signeringsunderlag" in flat and "IOP Planteringen" in flat
    for signer in SIGNERS:
        assert signer.name in flat and signer.email in flat
    assert "signeringslänk (enkel elektronisk underskrift)" in flat
    assert "på papper (inskannad kopia, registrerad av Julia Listrup)" in flat
    assert "BankID via Scrive (avancerad elektronisk underskrift)" in flat
    assert "IP-adress: 192.0.2.15" in flat and "IP-adress: 198.51.100.7" in flat
    # Summer time and winter time, each named
    assert "2024-04-17 10:03:12 CEST" in flat
    assert "2024-11-26 14:03:12 CET" in flat
    assert "2024-11-26 14:05:00 CET" in flat  # when the record was made
    # The round's events in words
    assert "inbjudan skickad" in flat and "undertecknad" in flat
    # The terms' hash, and each document with its hash, size and pages
    assert terms_sha256(agreement) in squeezed(text)
    for doc in documents:
        assert doc.sha256 in squeezed(text)
    assert "Överenskommelse IOP Planteringen.pdf" in flat
    size = f"{len(documents[0].data):,}".replace(",", " ")
    assert f"{size} byte" in flat
    # The parties with their organisation numbers, and the terms as written
    assert "Rädda Barnen region syd 802002-8638" in flat
    assert "150 000 kr för första perioden" in flat
    assert 'title = "IOP Planteringen"' in text


def test_the_documents_follow_page_by_page_where_the_verification_says(
    record: bytes, documents: list[RecordDocument]
) -> None:
    reader = PdfReader(io.BytesIO(record))
    total = len(reader.pages)
    own = total - 3  # two pages of the agreement, one of the attachment
    assert own >= 2
    assert "Överenskommelse, sida ett" in reader.pages[own].extract_text()
    assert "Överenskommelse, sida två" in reader.pages[own + 1].extract_text()
    assert "Bilaga 1: budget 2024 (årsbudget)" in reader.pages[own + 2].extract_text()
    verification = " ".join(text_of(record, range(own)).split())
    assert f"sidorna {own + 1}–{own + 2}" in verification
    assert f"sidan {own + 3}" in verification
    assert f"sida 1 av {total}" in verification
    # Each document is a bookmark of the record
    titles = [item.title for item in reader.outline if not isinstance(item, list)]
    assert "Överenskommelse IOP Planteringen.pdf" in titles


def test_the_terms_and_documents_are_attached_and_hash_to_what_the_record_says(
    record: bytes, agreement: Agreement, documents: list[RecordDocument]
) -> None:
    attached = {name: data[0] for name, data in PdfReader(io.BytesIO(record)).attachments.items()}
    assert hashlib.sha256(attached["terms.json"]).hexdigest() == terms_sha256(agreement)
    again = loads_agreement(attached["terms.toml"].decode())
    assert terms_sha256(again) == terms_sha256(agreement)
    hashes_attached = {hashlib.sha256(data).hexdigest() for data in attached.values()}
    assert {doc.sha256 for doc in documents} <= hashes_attached
    # File names are plain ASCII; the names as given are the descriptions
    assert "Overenskommelse IOP Planteringen.pdf" in attached


def test_a_record_of_pdfa_documents_claims_pdfa_3b_before_and_after_the_seal(
    record: bytes, sealed: bytes
) -> None:
    assert claimed_pdfa(record) == "3B"
    assert claimed_pdfa(sealed) == "3B"
    # PDF/A wants the document information and the XMP metadata to agree
    reader = PdfReader(io.BytesIO(sealed))
    info = reader.metadata
    assert info is not None
    xmp = reader.xmp_metadata
    assert xmp is not None
    assert xmp.dc_title is not None
    assert info.title == xmp.dc_title["x-default"] == "Signeringsunderlag: IOP Planteringen"
    assert info.producer == xmp.pdf_producer


def test_the_seal_is_valid_and_names_the_seal_certificate(
    record: bytes, sealed: bytes, key: SealKey
) -> None:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    verdict = verify(sealed, key.certificate)
    assert verdict.valid, verdict
    assert verdict.intact and verdict.trusted and verdict.whole_file
    assert verdict.signer == "CN=Avtalstjänsten (lokal provmiljö), O=Helsingborgs stad"
    assert verdict.signed_at is not None and verdict.signed_at > before
    assert verdict.reason is None
    # Sealing adds to the file and changes no page
    assert sealed.startswith(record)
    assert len(PdfReader(io.BytesIO(sealed)).pages) == len(PdfReader(io.BytesIO(record)).pages)


def signed_ranges(pdf: bytes) -> list[tuple[int, int]]:
    found = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    assert found is not None
    a, b, c, d = (int(g) for g in found.groups())
    return [(a, a + b), (c, c + d)]


def test_a_changed_byte_anywhere_in_the_signed_range_breaks_the_seal(
    sealed: bytes, key: SealKey
) -> None:
    assert verify(sealed, key.certificate).valid
    (start, end), (start2, end2) = signed_ranges(sealed)
    offsets = [start + (end - start) * n // 7 for n in range(1, 7)] + [(start2 + end2) // 2]
    reasons = set()
    for offset in offsets:
        changed = bytearray(sealed)
        changed[offset] ^= 0x01
        verdict = verify(bytes(changed), key.certificate)  # never raises
        assert not verdict.valid, offset
        assert verdict.reason in {"changed", "unreadable", "bad-signature"}, verdict
        reasons.add(verdict.reason)
    assert "changed" in reasons  # the library saw the digest differ, not only a broken file


def test_bytes_appended_after_the_seal_are_reported_as_a_change(
    sealed: bytes, key: SealKey
) -> None:
    verdict = verify(sealed + "\n% tillagt efter förseglingen\n".encode(), key.certificate)
    assert not verdict.valid
    assert verdict.intact  # what was sealed is still as it was …
    assert not verdict.whole_file  # … but the file holds more than that
    assert verdict.reason == "added-after"


def test_a_revision_added_after_the_seal_is_reported(sealed: bytes, key: SealKey) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(sealed))
    info_ref = writer.trailer.raw_get("/Info")
    info = info_ref.get_object()
    info["/Title"] = pdf_string("Ett annat avtal")
    writer.mark_update(info_ref)
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    verdict = verify(out.getvalue(), key.certificate)
    assert not verdict.valid and verdict.reason == "added-after"


def test_a_seal_checked_against_another_certificate_is_not_trusted(
    sealed: bytes, tmp_path: Path
) -> None:
    other = make_self_signed(tmp_path / "other.p12", "Helsingborgs stad")
    verdict = verify(sealed, other.certificate)
    assert not verdict.valid and verdict.intact and not verdict.trusted
    assert verdict.reason == "untrusted"


def test_what_is_not_a_sealed_record_is_not_valid(record: bytes, key: SealKey) -> None:
    assert verify(record, key.certificate).reason == "no-seal"
    assert verify(b"", key.certificate).reason == "unreadable"
    assert verify(b"%PDF-1.7\n\xff\xfe trasig", key.certificate).reason == "unreadable"


def test_the_self_signed_seal_is_made_once_for_the_owner_only(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path / "data", accessibility_organisation="Lunds kommun")
    first = seal_key_for(config)
    file = tmp_path / "data" / "seal.p12"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert first.subject == "CN=Avtalstjänsten (lokal provmiljö), O=Lunds kommun"
    again = seal_key_for(config)
    assert again.certificate == first.certificate
    assert [p.name for p in file.parent.iterdir()] == ["seal.p12"]  # no draft left behind


def test_the_seal_certificate_from_the_settings_seals_and_its_root_is_trusted(
    tmp_path: Path, record: bytes
) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Provcertifikatutfärdare")])
    now = dt.datetime.now(dt.UTC)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    seal_private = ec.generate_private_key(ec.SECP256R1())
    seal_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Lunds kommun e-sigill"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lunds kommun"),
        ]
    )
    seal_certificate = (
        x509.CertificateBuilder()
        .subject_name(seal_name)
        .issuer_name(root_name)
        .public_key(seal_private.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    p12 = tmp_path / "sigill.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"sigill",
            seal_private,
            seal_certificate,
            [root],
            serialization.BestAvailableEncryption(b"h\xc3\xb6gst hemligt"),
        )
    )
    config = Settings(data_dir=tmp_path, seal_p12=p12, seal_password="högst hemligt")
    key = seal_key_for(config)
    assert not (tmp_path / "seal.p12").exists()  # no self-signed one beside it
    sealed = seal(record, key, "Signeringsunderlag", "Lund")
    verdict = verify(sealed, root)
    assert verdict.valid, verdict
    assert verdict.signer == "CN=Lunds kommun e-sigill, O=Lunds kommun"
    assert verify(sealed, key.certificate).valid  # or the seal certificate itself, trusted
    with pytest.raises(ValueError):
        seal_key_for(Settings(data_dir=tmp_path, seal_p12=p12, seal_password="fel"))


@pytest.fixture(scope="module")
def english(agreement: Agreement, documents: list[RecordDocument]) -> bytes:
    """A record in English, of one PDF/A document and one plain PDF (a blank page)."""
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    plain = document("Inskannad bilaga.pdf", out.getvalue())
    language = agreement.model_copy(update={"language": Language.en})
    return build_record(inputs(language, [documents[1], plain]))


def test_a_record_in_english_reads_english(english: bytes) -> None:
    reader = PdfReader(io.BytesIO(english))
    own = len(reader.pages) - 2
    flat = " ".join(text_of(english, range(own)).split())
    assert "Signing record" in flat and "Signeringsunderlag" not in flat
    assert "signing link (simple electronic signature)" in flat
    assert "on paper (scanned copy, entered by Julia Listrup)" in flat
    assert "BankID via Scrive (advanced electronic signature)" in flat
    assert "IP address: 192.0.2.15" in flat
    assert "2024-04-17 10:03:12 CEST" in flat and "2024-11-26 14:03:12 CET" in flat
    assert "invitation sent" in flat
    assert "Signatures" in flat and "Underskrifter" not in flat
    assert f"page {own + 1}" in flat and f"page {own + 2}" in flat
    # The agreement's own words stay as written
    assert "Rädda Barnen region syd" in flat


def test_a_document_that_is_not_pdfa_gives_a_record_that_claims_nothing(english: bytes) -> None:
    assert claimed_pdfa(english) is None
    assert "Inskannad bilaga.pdf" in PdfReader(io.BytesIO(english)).attachments


def test_inputs_that_contradict_each_other_are_refused(
    agreement: Agreement, documents: list[RecordDocument]
) -> None:
    wrong_hash = RecordDocument(documents[0].name, "0" * 64, documents[0].data)
    with pytest.raises(ValueError, match="SHA-256"):
        build_record(inputs(agreement, [wrong_hash]))
    # Terms that list their documents take those and no others
    listed = Document(name="Avtalet.pdf", sha256=documents[0].sha256, size=1, pages=2)
    with_documents = agreement.model_copy(update={"documents": [listed]})
    with pytest.raises(ValueError, match="documents"):
        build_record(inputs(with_documents, documents))
    changed = agreement.model_copy(update={"title": "Ett annat avtal"})
    with pytest.raises(ValueError, match="terms"):
        build_record(
            RecordInputs(
                changed, terms_sha256(agreement), [], SIGNERS, EVENTS, 1, moment(2024, 1, 1)
            )
        )
    with pytest.raises(ValueError, match="time zone"):
        RecordInputs(agreement, "", [], SIGNERS, EVENTS, 1, dt.datetime(2024, 1, 1, 12, 0))
