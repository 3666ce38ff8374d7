"""The archive package of one agreement: an E-ARK SIP laid out as FGS Paketstruktur 2.0
(E-ARK CSIP and SIP 2.0) asks, written as one ZIP file whose single folder is the package.

    <OBJID>/METS.xml                               the package (CSIP/SIP METS)
    <OBJID>/metadata/descriptive/dc.xml            the agreement in Dublin Core
    <OBJID>/metadata/preservation/premis.xml       PREMIS 3: each file with its SHA-256 and
                                                   format, the event log, the agents
    <OBJID>/documentation/README.txt               what is where (Swedish and English)
    <OBJID>/schemas/*.xsd                          METS, XLink, the E-ARK extensions
    <OBJID>/representations/rep1/METS.xml          the content's files
    <OBJID>/representations/rep1/data/
        terms/<n>-<sha256>.toml, .json             every version of the terms, oldest first
        documents/<sha256 start>-<name>.pdf        the documents any version names
        records/round-<n>.pdf                      the sealed signing records
        events.csv, events.json                    the event log (never an IP address)
        emails/<key hash>.eml, index.csv           what was sent, exactly as it went

The METS files are laid out as the E-ARK validator's CSIP rules check them (a
"Representations" file group and division, the representation's own division inside it).
The same agreement and the same creation time give the same bytes: files in a fixed order,
the ZIP entries dated with the creation time. Files go into the ZIP as they are read (one
document in memory at a time); the metadata that lists them is written last.

A message whose email carries a signer's personal signing link (the invitation and the
reminders) is withheld while the agreement is being signed: whoever may read the agreement
may download the package, and the link signs. Once the round is over the link no longer
signs, and the next package has the message.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from string import Template
from typing import IO, Any
from urllib.parse import quote

from lxml import etree  # type: ignore[import-untyped]  # no stubs installed

from agreements import ops
from agreements.files import whole_file
from i18n.words import word_for
from models.agreement import Agreement
from models.config import Settings
from models.lifecycle import State, terms_json
from models.loader import dumps_agreement
from models.plan import EndingKind
from models.records import AgreementRecord, EventRecord, OutboxRecord

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
README = HERE / "templates" / "README.txt"

METS = "http://www.loc.gov/METS/"
CSIP = "https://DILCIS.eu/XML/METS/CSIPExtensionMETS"
SIP = "https://DILCIS.eu/XML/METS/SIPExtensionMETS"
XLINK = "http://www.w3.org/1999/xlink"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
PREMIS = "http://www.loc.gov/premis/v3"
OAI_DC = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC = "http://purl.org/dc/elements/1.1/"

PROFILE = "https://earksip.dilcis.eu/profile/E-ARK-SIP.xml"
SERVICE = "agreements"  # the software agent, as METS and PREMIS name it
# What the package holds, in the CSIP vocabularies' "Other" terms (FGS leaves these open).
CONTENT = "Avtal (agreement lifecycle record)"
CONTENT_INFORMATION = "agreements-lifecycle"
REPRESENTATION = "rep1"
DATA = f"representations/{REPRESENTATION}/data"

# IDs of the METS elements other elements point at.
DMD_ID = "dmd-dc"
PREMIS_ID = "digiprov-premis"
DOCUMENTATION_GROUP = "fgrp-documentation"
SCHEMAS_GROUP = "fgrp-schemas"
REPRESENTATIONS_GROUP = "fgrp-representations"

MIMETYPES = {
    ".toml": "application/toml",
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".csv": "text/csv",
    ".eml": "message/rfc822",
    ".txt": "text/plain",
    ".xml": "text/xml",
    ".xsd": "text/xml",
}
# PRONOM's identifiers of the formats it has one for (PDF: by the version in its header).
PRONOM = {".json": "fmt/817", ".csv": "x-fmt/18", ".txt": "x-fmt/111", ".xml": "fmt/101"}
PRONOM[".xsd"] = PRONOM[".xml"]
PDF_PRONOM = {
    "1.0": "fmt/14",
    "1.1": "fmt/15",
    "1.2": "fmt/16",
    "1.3": "fmt/17",
    "1.4": "fmt/18",
    "1.5": "fmt/19",
    "1.6": "fmt/20",
    "1.7": "fmt/276",
    "2.0": "fmt/1129",
}
PDF_HEADER = re.compile(rb"%PDF-(\d\.\d)")

# Emails that carry a signer's personal link, which signs while the round is open.
LINKED = frozenset({"signature_request", "signature_reminder"})
# What index.csv says of each email's message.
KEPT, WEEDED, NOT_KEPT, WITHHELD = "kept", "weeded", "not kept", "withheld"
# Keys of an event's data that never go into the package (moved out of the log in 0004).
TRACED = ("ip", "user_agent")


@dataclass(frozen=True)
class Written:
    """One file in the package, as METS and PREMIS describe it."""

    path: str  # from the package's folder, e.g. representations/rep1/data/events.csv
    sha256: str
    size: int
    created: dt.datetime
    mimetype: str
    format_version: str | None = None
    pronom: str | None = None
    original_name: str | None = None
    identifiers: tuple[tuple[str, str], ...] = ()  # more (type, value) for PREMIS

    @property
    def suffix(self) -> str:
        return Path(self.path).suffix


@dataclass
class Package:
    """The ZIP being written: a file goes in when it is made, and is remembered."""

    zip: zipfile.ZipFile
    objid: str
    created: dt.datetime
    files: list[Written] = field(default_factory=list)

    def add(
        self,
        path: str,
        data: bytes,
        created: dt.datetime | None = None,
        *,
        original_name: str | None = None,
        identifiers: tuple[tuple[str, str], ...] = (),
    ) -> Written:
        info = zipfile.ZipInfo(f"{self.objid}/{path}", date_time=_zip_time(self.created))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3  # Unix, so the mode below is read as one
        info.external_attr = 0o100644 << 16
        self.zip.writestr(info, data, compresslevel=6)
        suffix = Path(path).suffix
        version = pronom = None
        if suffix == ".pdf":
            header = PDF_HEADER.match(data[:16])
            version = header.group(1).decode() if header else None
            pronom = PDF_PRONOM.get(version or "")
        else:
            pronom = PRONOM.get(suffix)
        written = Written(
            path=path,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            created=_utc(created or self.created),
            mimetype=MIMETYPES.get(suffix, "application/octet-stream"),
            format_version=version,
            pronom=pronom,
            original_name=original_name,
            identifiers=identifiers,
        )
        self.files.append(written)
        return written


class ArchiveError(ops.OperationError):
    """The package cannot be made whole: the document store has lost a document or record
    (said as ops says it of a missing document)."""

    def __init__(self, name: str, sha256: str) -> None:
        super().__init__(
            f"the document store has no {name} ({sha256})", "document-missing", names=name
        )


def write_package(
    settings: Settings, agreement_id: str, out: IO[bytes], created: dt.datetime
) -> str:
    """The package of the agreement as a ZIP written to `out` (seekable: a file or a
    BytesIO), made at `created`; its OBJID. OperationError when there is no such agreement,
    ArchiveError when a document or record is missing from the store."""
    created = _utc(created).replace(microsecond=0)
    record = ops.agreement(settings, agreement_id)
    terms = ops.stored_terms(settings, record.terms_sha256)
    objid = f"{agreement_id}-{created:%Y%m%dT%H%M%SZ}"
    with zipfile.ZipFile(out, "w") as archive:
        package = Package(archive, objid, created)
        events = ops.events(settings, agreement_id)
        content = _content(settings, package, agreement_id, record.state, events)
        rep_mets = package.add(
            f"representations/{REPRESENTATION}/METS.xml",
            _representation_mets(package, content, terms),
        )
        readme = package.add("documentation/README.txt", _readme(package, terms))
        schemas = [
            package.add(f"schemas/{path.name}", path.read_bytes())
            for path in sorted(SCHEMAS.glob("*.xsd"))
        ]
        dc = package.add("metadata/descriptive/dc.xml", _dublin_core(record, terms))
        premis = package.add(
            "metadata/preservation/premis.xml",
            _premis(package, list(package.files), events, terms),
        )
        package.add(
            "METS.xml",
            _package_mets(package, terms, dc, premis, [readme], schemas, rep_mets),
        )
    return objid


def package_bytes(settings: Settings, agreement_id: str, created: dt.datetime) -> bytes:
    """The package as bytes (`write_package`)."""
    out = io.BytesIO()
    write_package(settings, agreement_id, out, created)
    return out.getvalue()


def write_file(
    settings: Settings,
    agreement_id: str,
    target: Path,
    created: dt.datetime,
    mode: int = 0o640,
) -> str:
    """The package written to `target` whole or not at all: into a temporary file beside
    it, flushed to disk, then renamed over it (an earlier package by that name is
    replaced); readable by its owner and group. Its OBJID."""
    with whole_file(target, mode) as out:
        return write_package(settings, agreement_id, out, created)


def ended_on(settings: Settings, agreement_id: str) -> dt.date:
    """The agreement's last day: as the event of its ending says, or its end as planned."""
    for event in reversed(ops.events(settings, agreement_id)):
        if event.kind == "ended":
            end = json.loads(event.data_json or "{}").get("end")
            if end:
                return dt.date.fromisoformat(end)
    return ops.agreement(settings, agreement_id).end


# The content ----------------------------------------------------------------------------


def _content(
    settings: Settings,
    package: Package,
    agreement_id: str,
    state: str,
    events: list[EventRecord],
) -> list[Written]:
    """The representation's data files, written: terms, documents, records, events, emails."""
    first = len(package.files)
    mentioned: dict[str, dt.datetime] = {}  # document hash -> first version naming it
    for n, version in enumerate(ops.terms_versions(settings, agreement_id), start=1):
        terms = Agreement.model_validate_json(version.terms_json)
        exact = terms_json(terms).encode()
        name = f"{DATA}/terms/{n:03d}-{version.sha256}"
        package.add(f"{name}.toml", dumps_agreement(terms).encode(), version.created_at)
        package.add(f"{name}.json", exact, version.created_at)
        for document in terms.documents:
            mentioned.setdefault(document.sha256, version.created_at)
    documents = ops.documents_of(settings, agreement_id)
    for sha256, document in sorted(documents.items(), key=lambda d: (d[1].name, d[0])):
        data = _stored(settings, sha256, document.name)
        package.add(
            f"{DATA}/documents/{sha256[:16]}-{_safe(document.name)}.pdf",
            data,
            mentioned.get(sha256),
            original_name=document.name,
        )
    sealed_at = {
        int(json.loads(e.data_json).get("round", 0)): e.at
        for e in events
        if e.kind == "record.sealed"
    }
    for number, attachment in ops.sealed_records(settings, agreement_id):
        package.add(
            f"{DATA}/records/round-{number}.pdf",
            _stored(settings, attachment.sha256, attachment.filename),
            sealed_at.get(number),
            original_name=attachment.filename,
        )
    package.add(f"{DATA}/events.csv", _events_csv(events))
    package.add(f"{DATA}/events.json", _events_json(events))
    _emails(settings, package, agreement_id, state)
    return package.files[first:]


def _stored(settings: Settings, sha256: str, name: str) -> bytes:
    try:
        return ops.document_bytes(settings, sha256)
    except ops.OperationError:
        raise ArchiveError(name, sha256) from None


def _event_data(event: EventRecord) -> dict[str, Any]:
    data = json.loads(event.data_json or "{}")
    return {k: v for k, v in data.items() if k not in TRACED}


def _events_json(events: list[EventRecord]) -> bytes:
    rows = [
        {
            "event_key": e.event_key,
            "at": _instant(e.at),
            "kind": e.kind,
            "actor": e.actor,
            "summary": e.summary,
            "data": _event_data(e),
        }
        for e in events
    ]
    return (json.dumps(rows, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def _events_csv(events: list[EventRecord]) -> bytes:
    return _csv(
        ("at", "kind", "actor", "summary", "event_key", "data"),
        (
            (
                _instant(e.at),
                e.kind,
                e.actor or "",
                e.summary,
                e.event_key,
                json.dumps(_event_data(e), ensure_ascii=False, sort_keys=True),
            )
            for e in events
        ),
    )


def _emails(settings: Settings, package: Package, agreement_id: str, state: str) -> None:
    """Each kept message as it went (emails/<key hash>.eml), and index.csv of every email."""
    signing = state == State.signing.value
    rows: list[tuple[str, ...]] = []
    for row in sorted(ops.outbox(settings, agreement_id), key=_email_order):
        file, kept = "", NOT_KEPT
        if row.message_weeded_at is not None:
            kept = WEEDED
        elif signing and row.template in LINKED:
            kept = WITHHELD
        elif row.status == "sent":
            message = ops.kept_message(settings, row.key)
            if message is not None:
                file = f"emails/{hashlib.sha256(row.key.encode()).hexdigest()[:16]}.eml"
                package.add(
                    f"{DATA}/{file}",
                    message,
                    row.sent_at,
                    identifiers=(("Message-ID", row.message_id),),
                )
                kept = KEPT
        rows.append(
            (
                row.key,
                row.template,
                row.recipient,
                row.subject,
                row.status,
                _instant(row.created_at),
                _instant(row.sent_at) if row.sent_at else "",
                row.message_id,
                row.sha256 or "",
                kept,
                file,
            )
        )
    header = (
        "key",
        "template",
        "recipient",
        "subject",
        "status",
        "created_at",
        "sent_at",
        "message_id",
        "sha256",
        "message",
        "file",
    )
    package.add(f"{DATA}/emails/index.csv", _csv(header, rows))


def _email_order(row: OutboxRecord) -> tuple[dt.datetime, str]:
    return (_utc(row.created_at), row.key)


def _csv(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _readme(package: Package, terms: Agreement) -> bytes:
    template = Template(README.read_text(encoding="utf-8"))
    return template.substitute(
        title=terms.title,
        reference=terms.reference or "-",
        agreement_id=terms.id,
        objid=package.objid,
        created=_instant(package.created),
    ).encode()


# Metadata -------------------------------------------------------------------------------


def _dublin_core(record: AgreementRecord, terms: Agreement) -> bytes:
    """The agreement described in simple Dublin Core (oai_dc)."""
    language = terms.language.value
    root = etree.Element(f"{{{OAI_DC}}}dc", nsmap={"oai_dc": OAI_DC, "dc": DC, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{OAI_DC} http://www.openarchives.org/OAI/2.0/oai_dc.xsd")

    def dc(name: str, value: str) -> None:
        etree.SubElement(root, f"{{{DC}}}{name}").text = value

    dc("title", terms.title)
    if terms.reference:
        dc("identifier", terms.reference)
    dc("identifier", f"{SERVICE}:{terms.id}")
    dc("type", f"agreement ({terms.kind})")
    creator = _archivist(terms)
    if creator is not None:
        dc("creator", _named(*creator))
    for party in terms.parties.values():
        dc("contributor", _named(party.name, party.org_number))
    dc("date", f"{record.start.isoformat()}/{record.end.isoformat()}")
    state = word_for(language, State, record.state)
    if record.ending:
        state += f"; {word_for(language, EndingKind, record.ending)}"
    dc("description", state)
    if terms.purpose:
        dc("description", terms.purpose)
    dc("language", language)
    return _xml(root)


def _premis(
    package: Package, files: list[Written], events: list[EventRecord], terms: Agreement
) -> bytes:
    """PREMIS 3: every file written so far, the event log and the package's creation, and
    the agents who acted."""
    P = f"{{{PREMIS}}}"
    root = etree.Element(f"{P}premis", nsmap={"premis": PREMIS, "xsi": XSI})
    root.set("version", "3.0")
    root.set(f"{{{XSI}}}schemaLocation", f"{PREMIS} http://www.loc.gov/standards/premis/premis.xsd")

    def sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, f"{P}{name}")
        if text is not None:
            element.text = text
        return element

    def identifier(parent: etree._Element, kind: str, type_: str, value: str) -> None:
        holder = sub(parent, f"{kind}Identifier")
        sub(holder, f"{kind}IdentifierType", type_)
        sub(holder, f"{kind}IdentifierValue", value)

    for written in files:
        obj = sub(root, "object")
        obj.set(f"{{{XSI}}}type", "premis:file")
        identifier(obj, "object", "local", written.path)
        for type_, value in written.identifiers:
            identifier(obj, "object", type_, value)
        characteristics = sub(obj, "objectCharacteristics")
        sub(characteristics, "compositionLevel", "0")
        fixity = sub(characteristics, "fixity")
        sub(fixity, "messageDigestAlgorithm", "SHA-256")
        sub(fixity, "messageDigest", written.sha256)
        sub(fixity, "messageDigestOriginator", SERVICE)
        sub(characteristics, "size", str(written.size))
        form = sub(characteristics, "format")
        designation = sub(form, "formatDesignation")
        sub(designation, "formatName", written.mimetype)
        if written.format_version:
            sub(designation, "formatVersion", written.format_version)
        if written.pronom:
            registry = sub(form, "formatRegistry")
            sub(registry, "formatRegistryName", "PRONOM")
            sub(registry, "formatRegistryKey", written.pronom)
            sub(registry, "formatRegistryRole", "specification")
        if written.original_name:
            sub(obj, "originalName", written.original_name)

    agents: dict[str, tuple[str, str | None]] = {SERVICE: (f"{SERVICE} {_version()}", "software")}
    archivist = _archivist(terms)
    for event in events:
        who = event.actor or SERVICE
        agents.setdefault(who, (who, "person" if "@" in who else None))
        node = sub(root, "event")
        identifier(node, "event", "local", event.event_key)
        sub(node, "eventType", event.kind)
        sub(node, "eventDateTime", _instant(event.at))
        detail = sub(node, "eventDetailInformation")
        sub(detail, "eventDetail", event.summary)
        linking = sub(node, "linkingAgentIdentifier")
        sub(linking, "linkingAgentIdentifierType", "local")
        sub(linking, "linkingAgentIdentifierValue", who)
        sub(linking, "linkingAgentRole", "executing program" if who == SERVICE else "implementer")

    creation = sub(root, "event")
    identifier(creation, "event", "local", f"{package.objid}:created")
    sub(creation, "eventType", "creation")
    sub(creation, "eventDateTime", _instant(package.created))
    detail = sub(creation, "eventDetailInformation")
    sub(detail, "eventDetail", "E-ARK SIP (FGS Paketstruktur 2.0) of the agreement made")
    outcome = sub(creation, "eventOutcomeInformation")
    sub(outcome, "eventOutcome", "success")
    linking = sub(creation, "linkingAgentIdentifier")
    sub(linking, "linkingAgentIdentifierType", "local")
    sub(linking, "linkingAgentIdentifierValue", SERVICE)
    sub(linking, "linkingAgentRole", "executing program")
    for written in files:
        linked = sub(creation, "linkingObjectIdentifier")
        sub(linked, "linkingObjectIdentifierType", "local")
        sub(linked, "linkingObjectIdentifierValue", written.path)
        sub(linked, "linkingObjectRole", "outcome")

    if archivist is not None:
        name, number = archivist
        agents.setdefault(f"organisation:{number or name}", (name, "organization"))
    for key, (name, kind) in agents.items():
        node = sub(root, "agent")
        identifier(node, "agent", "local", key)
        sub(node, "agentName", name)
        if kind:
            sub(node, "agentType", kind)
        if key == SERVICE:
            sub(node, "agentVersion", _version())
    return _xml(root)


def _representation_mets(package: Package, content: list[Written], terms: Agreement) -> bytes:
    """The representation's METS: its data files in one file group."""
    root = _mets_root(REPRESENTATION, terms.title, package.created)
    prefix = f"representations/{REPRESENTATION}/"
    file_sec = etree.SubElement(root, f"{{{METS}}}fileSec", ID=f"{REPRESENTATION}-filesec")
    group = etree.SubElement(
        file_sec, f"{{{METS}}}fileGrp", USE="Data", ID=f"{REPRESENTATION}-fgrp-data"
    )
    for n, written in enumerate(content, start=1):
        _file(group, f"{REPRESENTATION}-file-{n:04d}", written, written.path[len(prefix) :])
    struct = _struct_map(root, f"{REPRESENTATION}-structmap")
    top = _div(struct, f"{REPRESENTATION}-div", REPRESENTATION)
    data = _div(top, f"{REPRESENTATION}-div-data", "Data")
    etree.SubElement(data, f"{{{METS}}}fptr", FILEID=f"{REPRESENTATION}-fgrp-data")
    return _xml(root)


def _package_mets(
    package: Package,
    terms: Agreement,
    dc: Written,
    premis: Written,
    documentation: list[Written],
    schemas: list[Written],
    representation: Written,
) -> bytes:
    """The package's METS: its metadata, documentation, schemas and the representation."""
    root = _mets_root(package.objid, terms.title, package.created, terms)
    dmd = etree.SubElement(
        root, f"{{{METS}}}dmdSec", ID=DMD_ID, CREATED=_instant(dc.created), STATUS="CURRENT"
    )
    _md_ref(dmd, dc, "DC")
    amd = etree.SubElement(root, f"{{{METS}}}amdSec", ID="amd")
    digiprov = etree.SubElement(
        amd,
        f"{{{METS}}}digiprovMD",
        ID=PREMIS_ID,
        CREATED=_instant(premis.created),
        STATUS="CURRENT",
    )
    _md_ref(digiprov, premis, "PREMIS")
    file_sec = etree.SubElement(root, f"{{{METS}}}fileSec", ID="filesec")
    groups = (
        (DOCUMENTATION_GROUP, "Documentation", documentation),
        (SCHEMAS_GROUP, "Schemas", schemas),
        (REPRESENTATIONS_GROUP, "Representations", [representation]),
    )
    n = 0
    for group_id, use, files in groups:
        group = etree.SubElement(file_sec, f"{{{METS}}}fileGrp", USE=use, ID=group_id)
        if use == "Representations":
            group.set(f"{{{CSIP}}}CONTENTINFORMATIONTYPE", "OTHER")
            group.set(f"{{{CSIP}}}OTHERCONTENTINFORMATIONTYPE", CONTENT_INFORMATION)
        for written in files:
            n += 1
            _file(group, f"file-{n:04d}", written, written.path)
    struct = _struct_map(root, "structmap")
    top = _div(struct, "div-package", package.objid)
    metadata_div = _div(top, "div-metadata", "Metadata")
    metadata_div.set("DMDID", DMD_ID)
    metadata_div.set("ADMID", PREMIS_ID)
    for div_id, label, group_id in (
        ("div-documentation", "Documentation", DOCUMENTATION_GROUP),
        ("div-schemas", "Schemas", SCHEMAS_GROUP),
        ("div-representations", "Representations", REPRESENTATIONS_GROUP),
    ):
        div = _div(top, div_id, label)
        etree.SubElement(div, f"{{{METS}}}fptr", FILEID=group_id)
    # The representation's own division, inside "Representations" (as the E-ARK validator's
    # CSIP rules look for it), points at its METS.
    rep = _div(div, f"div-{REPRESENTATION}", f"Representations/{REPRESENTATION}")
    pointer = etree.SubElement(rep, f"{{{METS}}}mptr", LOCTYPE="URL")
    pointer.set(f"{{{XLINK}}}type", "simple")
    pointer.set(f"{{{XLINK}}}href", _href(representation.path))
    pointer.set(f"{{{XLINK}}}title", REPRESENTATIONS_GROUP)
    return _xml(root)


def _mets_root(
    objid: str, label: str, created: dt.datetime, terms: Agreement | None = None
) -> etree._Element:
    """A METS root with the CSIP and SIP attributes and its header: the service as the
    creating software and, for the package, the organisation whose record it is (the
    coordinator's party) as archival creator and submitter."""
    root = etree.Element(
        f"{{{METS}}}mets",
        nsmap={"mets": METS, "csip": CSIP, "sip": SIP, "xlink": XLINK, "xsi": XSI},
    )
    root.set("OBJID", objid)
    root.set("LABEL", label)
    root.set("TYPE", "Other")
    root.set(f"{{{CSIP}}}OTHERTYPE", CONTENT)
    root.set(f"{{{CSIP}}}CONTENTINFORMATIONTYPE", "OTHER")
    root.set(f"{{{CSIP}}}OTHERCONTENTINFORMATIONTYPE", CONTENT_INFORMATION)
    root.set("PROFILE", PROFILE)
    depth = "" if terms is not None else "../../"
    root.set(
        f"{{{XSI}}}schemaLocation",
        " ".join(
            (
                f"{METS} {depth}schemas/mets.xsd",
                f"{XLINK} {depth}schemas/xlink.xsd",
                f"{CSIP} {depth}schemas/DILCISExtensionMETS.xsd",
                f"{SIP} {depth}schemas/DILCISExtensionSIPMETS.xsd",
            )
        ),
    )
    header = etree.SubElement(root, f"{{{METS}}}metsHdr", CREATEDATE=_instant(created))
    header.set("LASTMODDATE", _instant(created))  # made whole at once: never modified since
    header.set("RECORDSTATUS", "NEW")
    header.set(f"{{{CSIP}}}OAISPACKAGETYPE", "SIP")
    software = etree.SubElement(
        header, f"{{{METS}}}agent", ROLE="CREATOR", TYPE="OTHER", OTHERTYPE="SOFTWARE"
    )
    etree.SubElement(software, f"{{{METS}}}name").text = SERVICE
    version = etree.SubElement(software, f"{{{METS}}}note")
    version.set(f"{{{CSIP}}}NOTETYPE", "SOFTWARE VERSION")
    version.text = _version()
    archivist = _archivist(terms) if terms is not None else None
    if archivist is not None:
        name, number = archivist
        for role in ("ARCHIVIST", "SUBMITTER"):
            agent = etree.SubElement(header, f"{{{METS}}}agent", TYPE="ORGANIZATION")
            if role == "ARCHIVIST":
                agent.set("ROLE", "ARCHIVIST")
            else:  # FGS: the organisation that submits, an "other" role in METS
                agent.set("ROLE", "OTHER")
                agent.set("OTHERROLE", "SUBMITTER")
            etree.SubElement(agent, f"{{{METS}}}name").text = name
            if number:
                note = etree.SubElement(agent, f"{{{METS}}}note")
                note.set(f"{{{CSIP}}}NOTETYPE", "IDENTIFICATIONCODE")
                note.text = number
    return root


def _file(group: etree._Element, file_id: str, written: Written, href: str) -> None:
    node = etree.SubElement(
        group,
        f"{{{METS}}}file",
        ID=file_id,
        MIMETYPE=written.mimetype,
        SIZE=str(written.size),
        CREATED=_instant(written.created),
        CHECKSUM=written.sha256,
        CHECKSUMTYPE="SHA-256",
    )
    locator = etree.SubElement(node, f"{{{METS}}}FLocat", LOCTYPE="URL")
    locator.set(f"{{{XLINK}}}type", "simple")
    locator.set(f"{{{XLINK}}}href", _href(href))


def _md_ref(parent: etree._Element, written: Written, kind: str) -> None:
    ref = etree.SubElement(parent, f"{{{METS}}}mdRef", LOCTYPE="URL")
    ref.set(f"{{{XLINK}}}type", "simple")
    ref.set(f"{{{XLINK}}}href", _href(written.path))
    ref.set("MDTYPE", kind)
    ref.set("MIMETYPE", written.mimetype)
    ref.set("SIZE", str(written.size))
    ref.set("CREATED", _instant(written.created))
    ref.set("CHECKSUM", written.sha256)
    ref.set("CHECKSUMTYPE", "SHA-256")


def _struct_map(root: etree._Element, struct_id: str) -> etree._Element:
    return etree.SubElement(
        root, f"{{{METS}}}structMap", TYPE="PHYSICAL", LABEL="CSIP", ID=struct_id
    )


def _div(parent: etree._Element, div_id: str, label: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{METS}}}div", ID=div_id, LABEL=label)


# Small things ---------------------------------------------------------------------------


def _archivist(terms: Agreement | None) -> tuple[str, str | None] | None:
    """The organisation whose record the agreement is: the coordinator's party, else the
    first public party; (name, organisation number)."""
    if terms is None:
        return None
    key = terms.coordinator.party
    party = terms.parties.get(key) if key else None
    if party is None:
        party = next((p for p in terms.parties.values() if p.kind.value == "public"), None)
    return None if party is None else (party.name, party.org_number)


def _named(name: str, number: str | None) -> str:
    return f"{name} ({number})" if number else name


def _version() -> str:
    try:
        return metadata.version("agreements")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def _utc(moment: dt.datetime) -> dt.datetime:
    """A stored time as UTC (SQLite gives them back without a zone: they are UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _instant(moment: dt.datetime) -> str:
    return _utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def _zip_time(moment: dt.datetime) -> tuple[int, int, int, int, int, int]:
    t = _utc(moment)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


def _safe(name: str) -> str:
    """A file name of ASCII letters, digits, dots, hyphens and underscores: the name as the
    package's paths can hold it everywhere (the name itself is in PREMIS)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name).strip("-.")[:80]
    return cleaned.removesuffix(".pdf") or "document"


def _href(path: str) -> str:
    return quote(path, safe="/")


def _xml(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(
        root, xml_declaration=True, encoding="UTF-8", pretty_print=True, standalone=None
    )
    return data
