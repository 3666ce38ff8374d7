"""The signing record of a completed signature round as one PDF: a verification page (who
signed, how and when, what the signed terms and documents hash to, the round's events), the
terms (a readable summary and the agreement file itself), then every agreement document
page by page. `seal.seal` seals it.

How far it is PDF/A: the pages written here are PDF/A-3b as WeasyPrint writes them, with
the terms attached as associated files (PDF/A-3 allows attachments): `terms.toml`, the
agreement file, and `terms.json`, the exact text whose SHA-256 the record states. Each
document is attached too, byte for byte, so its SHA-256 can be checked. The documents'
pages are copied in with pypdf, and a copied page brings whatever its own file holds
(fonts not embedded, device colours, transparency), which can break PDF/A. So the record
claims PDF/A-3b (in its XMP metadata) only when every document claims PDF/A itself and has
no output intent other than RGB; otherwise it is written as a plain PDF and claims nothing.
Neither is checked by a PDF/A validator here (veraPDF is not available): the claim rests on
WeasyPrint's output and the documents' own claims.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple
from xml.etree import ElementTree

import weasyprint
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, StreamObject

import i18n
from emails.render import contribution_terms, day, kronor, stamp
from i18n import N_
from i18n.words import actor, round_event, word
from models.agreement import Agreement
from models.lifecycle import terms_json, terms_sha256
from models.loader import dumps_agreement

TEMPLATES = Path(__file__).parent / "templates"
_LOCALES = {"sv": "sv_SE", "en": "en_GB"}
PDFA_NS = "http://www.aiim.org/pdfa/ns/id/"
_PAGE_PASSES = 4
# How the record describes the terms it carries as attachments
TOML_FILE = N_("The agreement file (the terms) as TOML")
JSON_FILE = N_("The terms exactly as hashed (SHA-256)")


@dataclass(frozen=True)
class RecordSigner:
    """One signature of the round. `method`: 'link' (the personal signing link), 'paper'
    (a scanned copy, entered by `recorded_by`) or 'provider' (BankID through `provider`).
    `ip` where the method records one; `evidence` what else it gives (a scan's file name,
    the provider's transaction id)."""

    name: str
    party_name: str
    email: str
    method: Literal["link", "paper", "provider"]
    signed_at: dt.datetime
    provider: str | None = None
    ip: str | None = None
    recorded_by: str | None = None
    evidence: str | None = None


class RecordEvent(NamedTuple):
    at: dt.datetime
    what: str  # a round event (i18n.words.ROUND_EVENTS: sent, opened, signed …) or words
    who: str | None = None


class RecordDocument(NamedTuple):
    name: str
    sha256: str
    data: bytes


@dataclass(frozen=True)
class RecordInputs:
    agreement: Agreement
    terms_sha256: str
    documents: Sequence[RecordDocument]
    signers: Sequence[RecordSigner]
    events: Sequence[RecordEvent]
    round_number: int
    made_at: dt.datetime
    language: str | None = None  # default: the agreement's

    def __post_init__(self) -> None:
        moments = [self.made_at, *(s.signed_at for s in self.signers)]
        moments += [e.at for e in self.events]
        if any(m.tzinfo is None or m.utcoffset() is None for m in moments):
            raise ValueError("every time in a signing record must carry its time zone")


class _Checked(NamedTuple):
    sha256: str
    pages: int
    pdfa: bool  # claims PDF/A itself, with colours that fit the record's


class _Doc(NamedTuple):
    """A document as the verification page lists it."""

    name: str
    sha256: str
    size: str
    pages: int
    first: int  # its pages in the record
    last: int


def claimed_pdfa(pdf: bytes) -> str | None:
    """The PDF/A level a file's XMP metadata claims ('3B', '2U', '1A'), or None."""
    try:
        return _claimed(PdfReader(io.BytesIO(pdf), strict=False))
    except Exception:  # a file that cannot be read claims nothing
        return None


def _claimed(reader: PdfReader) -> str | None:
    metadata = reader.root_object.get("/Metadata")
    stream = metadata.get_object() if metadata is not None else None
    if not isinstance(stream, StreamObject):
        return None
    try:
        root = ElementTree.fromstring(stream.get_data())
    except ElementTree.ParseError:
        return None
    part = conformance = None
    for element in root.iter():
        part = part or element.get(f"{{{PDFA_NS}}}part")
        conformance = conformance or element.get(f"{{{PDFA_NS}}}conformance")
        if element.tag == f"{{{PDFA_NS}}}part":
            part = part or (element.text or "").strip()
        if element.tag == f"{{{PDFA_NS}}}conformance":
            conformance = conformance or (element.text or "").strip()
    return f"{part}{(conformance or '').upper()}" if part else None


def _rgb_or_no_intent(reader: PdfReader) -> bool:
    """Whether the file's colours fit the record's sRGB output intent: it has no output
    intent, or only RGB ones."""
    intents = reader.root_object.get("/OutputIntents")
    intents = intents.get_object() if intents is not None else None
    for intent in intents if isinstance(intents, ArrayObject) else []:
        intent = intent.get_object()
        profile = intent.get("/DestOutputProfile") if isinstance(intent, DictionaryObject) else None
        profile = profile.get_object() if profile is not None else None
        if isinstance(profile, StreamObject) and profile.get("/N") != 3:
            return False
    return True


def _read(document: RecordDocument) -> _Checked:
    digest = hashlib.sha256(document.data).hexdigest()
    if digest != document.sha256.lower():
        raise ValueError(f"{document.name}: its bytes do not have the SHA-256 given")
    reader = PdfReader(io.BytesIO(document.data), strict=False)
    if reader.is_encrypted:
        raise ValueError(f"{document.name}: encrypted")
    pages = len(reader.pages)
    pdfa = _claimed(reader) is not None and _rgb_or_no_intent(reader)
    return _Checked(digest, pages, pdfa)


def _number(value: int, language: str) -> str:
    """12345 -> '12 345' (no-break space) / '12,345'."""
    text = format_decimal(value, locale=_LOCALES[language], group_separator=True)
    return str(text).replace("\u202f", "\u00a0")


@lru_cache(maxsize=2)
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader([str(TEMPLATES / language), str(TEMPLATES)]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["kronor"] = kronor
    env.filters["day"] = lambda value: day(value, language)
    env.filters["stamp"] = stamp
    env.filters["number"] = lambda value: _number(value, language)
    env.filters["contribution"] = lambda value: contribution_terms(value, language)
    env.globals["word"] = lambda value: word(language, value)
    env.globals["round_event"] = lambda what: round_event(language, what)
    env.globals["actor"] = lambda who: actor(language, who) or who
    return env


def _refuse_fetching(url: str, *args: Any, **kwargs: Any) -> Any:
    # Everything the record shows is in its HTML: a name that looks like a URL fetches nothing.
    raise ValueError(f"the signing record fetches nothing ({url[:40]})")


def build_record(inputs: RecordInputs) -> bytes:
    """The signing record as PDF bytes (not sealed). ValueError when the inputs contradict
    each other: a document whose bytes do not hash to its SHA-256, terms whose SHA-256 is
    not the one given, or documents other than those the terms list."""
    agreement = inputs.agreement
    language = i18n.language_of(inputs.language or agreement.language)
    if terms_sha256(agreement) != inputs.terms_sha256.lower():
        raise ValueError("the terms given do not have the SHA-256 given")
    listed = {d.sha256 for d in getattr(agreement, "documents", [])}
    if listed and listed != {d.sha256.lower() for d in inputs.documents}:
        raise ValueError("the documents given are not the ones the terms list")

    checked = [_read(d) for d in inputs.documents]
    pdfa = all(c.pdfa for c in checked)
    toml = dumps_agreement(agreement)
    when = {"created": inputs.made_at, "modified": inputs.made_at}
    attachments = [
        weasyprint.Attachment(
            string=toml,
            name="terms.toml",
            description=i18n.text(language, TOML_FILE),
            relationship="Source",
            **when,
        ),
        weasyprint.Attachment(
            string=terms_json(agreement),
            name="terms.json",
            description=i18n.text(language, JSON_FILE),
            relationship="Source",
            **when,
        ),
        *(
            weasyprint.Attachment(
                file_obj=io.BytesIO(d.data),
                name=name,
                description=d.name,
                relationship="Source",
                **when,
            )
            for d, name in zip(inputs.documents, _file_names(inputs.documents), strict=True)
        ),
    ]
    # The verification names the pages each document starts and ends on, after the
    # record's own pages: render until the count of those stays the same.
    own = 1
    for _ in range(_PAGE_PASSES):
        docs, page = [], own
        for document, c in zip(inputs.documents, checked, strict=True):
            size = _number(len(document.data), language)
            docs.append(_Doc(document.name, c.sha256, size, c.pages, page + 1, page + c.pages))
            page += c.pages
        rendered = _render(inputs, language, docs, page, toml)
        if len(rendered.pages) == own:
            break
        own = len(rendered.pages)
    else:
        raise RuntimeError("the signing record's page count does not settle")
    options: dict[str, Any] = {"attachments": attachments}
    if pdfa:
        options["pdf_variant"] = "pdf/a-3b"
    cover = rendered.write_pdf(**options)
    if not inputs.documents:
        return bytes(cover)
    return _append(bytes(cover), inputs.documents)


def _file_names(documents: Sequence[RecordDocument]) -> list[str]:
    """Each document's name as an attachment's file name: ASCII (WeasyPrint writes the name
    both as the Unicode name and as the old byte name, which readers take as Latin-1),
    ending in .pdf, each once. The name as given is the attachment's description."""
    names: list[str] = []
    for document in documents:
        ascii_name = unicodedata.normalize("NFKD", document.name).encode("ascii", "ignore")
        base = re.sub(r"[^A-Za-z0-9 ._()+,-]+", "_", ascii_name.decode()).strip(" ._")
        base = base.removesuffix(".pdf").removesuffix(".PDF") or "document"
        name, n = f"{base}.pdf", 1
        while name in names:
            n += 1
            name = f"{base} ({n}).pdf"
        names.append(name)
    return names


def _render(
    inputs: RecordInputs, language: str, docs: list[_Doc], total: int, toml: str
) -> weasyprint.Document:
    agreement = inputs.agreement
    html = (
        environment(language)
        .get_template("record.html")
        .render(
            agreement=agreement,
            parties=list(agreement.parties.items()),
            party_name=lambda key: agreement.parties[key].name if key in agreement.parties else key,
            terms_sha256=inputs.terms_sha256.lower(),
            documents=docs,
            signers=list(inputs.signers),
            events=list(inputs.events),
            round_number=inputs.round_number,
            made_at=inputs.made_at,
            total_pages=total,
            toml=toml,
        )
    )
    return weasyprint.HTML(string=html, url_fetcher=_refuse_fetching).render()


def _append(cover: bytes, documents: Sequence[RecordDocument]) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(cover))
    for document in documents:
        reader = PdfReader(io.BytesIO(document.data), strict=False)
        writer.append(reader, outline_item=document.name, import_outline=False)
    # A document's form fields (a signature it carried, say) would become the record's:
    # its pages keep their look, the record keeps no fields of theirs.
    if NameObject("/AcroForm") in writer.root_object:
        del writer.root_object[NameObject("/AcroForm")]
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
