"""What was sent is kept, and the archive package (issue 17, items 3 and 4).

Each sent email's outbox row holds the SHA-256 of the exact message the mail server got and,
until the weeding clears it, the message itself. The archive package of an agreement is an
E-ARK SIP (FGS Paketstruktur 2.0), checked here as the e-archive checks one, with the E-ARK
community's `eark-validator`: the package structure (CSIPSTR rules), the METS files against
the CSIP and SIP schemas, and the root METS against the CSIP and SIP Schematron rules.

eark-validator 1.1.1 (installed) ships no Schematron rules (its wheel lacks the files it
loads); tests/eark/ holds the E-ARK validator's own CSIP and SIP 2.0.4 rules and the
vocabularies they are filled in from (tests/eark/README.md), run with 1.1.1's classes.

Real databases (SQLite and PostgreSQL for the migration), the worker and the web service
as in production, and a real SMTP sink on loopback."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import json
import os
import stat
import subprocess
import time
import zipfile
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from eark_validator import rules as eark_rules  # type: ignore[import-untyped]
from eark_validator import structure
from eark_validator.mets import MetsValidator  # type: ignore[import-untyped]
from eark_validator.xml.schema import IP_SCHEMA  # type: ignore[import-untyped]
from eark_validator.xml.schematron import SchematronRuleset  # type: ignore[import-untyped]
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import etree  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlmodel import Session, select
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from activities.archive import Archiver
from activities.weeding import MessageWeeder
from agreements import ops
from agreements.cli import app as cli
from archive.sip import package_bytes
from models.config import Settings, settings
from models.db import downgrade, engine, migrate
from models.records import EventRecord, OutboxRecord
from tests.conftest import TOKEN, Temporal, eventually
from tests.test_documents import pdf, start_signing
from tests.test_drafting import KVARNBY, form_of
from tests.test_people import made_token, person, settled

# Fixtures, used by name: the sign-in provider, and two organisations with their people.
from tests.test_people import provider as provider
from tests.test_people import site as site
from tests.test_web import AUTH, links
from tests.test_weeding import service
from tests.test_worker import AGREEMENTS
from workflows.weeding import WeedingInput, WeedingWorkflow

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "tests" / "eark"
METS = "{http://www.loc.gov/METS/}"
PREMIS = "{http://www.loc.gov/premis/v3}"
XLINK = "{http://www.w3.org/1999/xlink}"
VOCABULARY = "{https://DILCIS.eu/XML/Vocabularies/IP}"
DATA = "representations/rep1/data"
SECTIONS = (
    "metsRootElement",
    "metsHdr",
    "dmdSec",
    "amdSec",
    "fileSec",
    "structMap",
    "structLink",
    "behaviorSec",
)
# The validator's SIP rule SIP14 asks the note of every agent with the role CREATOR for the
# type IDENTIFICATIONCODE, and its CSIP rules CSIP11-CSIP16 require that agent to be the
# creating software with a SOFTWARE VERSION note; the SIP specification means SIP14 for the
# archival creator. No package meets both: this one, on the software agent, is the only rule
# that may fail.
SOFTWARE_NOTE = (
    "/*[local-name()='mets' and namespace-uri()='http://www.loc.gov/METS/']"
    "/*[local-name()='metsHdr' and namespace-uri()='http://www.loc.gov/METS/']"
    "/*[local-name()='agent' and namespace-uri()='http://www.loc.gov/METS/'][1]"
    "/*[local-name()='note' and namespace-uri()='http://www.loc.gov/METS/']"
)
CONTRADICTORY = {("SIP14", SOFTWARE_NOTE)}


# The e-archive's checks ----------------------------------------------------------------


def vocabulary_tests() -> dict[str, str]:
    """The rules' placeholders, filled in as eark-validator fills them (1.1.3
    `SchematronTests`): each vocabulary's terms, the IANA media types."""
    vocabularies = {
        "@TYPE": "CSIPVocabularyContentCategory.xml",
        "@csip:CONTENTINFORMATIONTYPE": "CSIPVocabularyContentInformationType.xml",
        "@csip:OAISPACKAGETYPE": "CSIPVocabularyOAISPackageType.xml",
        "@STATUS": "CSIPVocabularyStatus.xml",
    }
    tests = {}
    for attribute, name in vocabularies.items():
        vocabulary = etree.parse(str(RULES / "vocabs" / name))
        terms = [t.text for t in vocabulary.iter(f"{VOCABULARY}Term")]
        tests[f"{attribute}_vocabulary_test"] = " or ".join(f"({attribute} = '{t}')" for t in terms)
    media = (RULES / "vocabs" / "IANA.txt").read_text(encoding="utf-8").split()
    tests["@MIMETYPE_IANA_test"] = " or ".join(f"(@MIMETYPE = '{m}')" for m in media)
    return tests


def schematron(mets: Path, specification: str, folder: Path) -> list[Any]:
    """The failed rules (errors and warnings) of one specification's Schematron rules."""
    failed: list[Any] = []
    tests = vocabulary_tests()
    for section in SECTIONS:
        rules = (RULES / "V2.0.4" / specification / f"mets_{section}_rules.xml").read_text(
            encoding="utf-8"
        )
        for name, test in tests.items():
            rules = rules.replace(name, test)
        path = folder / f"{specification}-{section}.xml"
        path.write_text(rules, encoding="utf-8")
        report = eark_rules.TestReport.from_validation_report(
            SchematronRuleset(str(path)).validate(mets)
        )
        failed += report.errors + report.warnings
    return failed


def validate(package: bytes, folder: Path) -> dict[str, list[str]]:
    """The package checked as the e-archive checks it; what each check found."""
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        names = archive.namelist()
        archive.extractall(folder)
    roots = {name.split("/", 1)[0] for name in names}
    found: dict[str, list[str]] = {"structure": [], "schema": [], "schematron": []}
    if len(roots) != 1:  # CSIPSTR1: one root folder
        found["structure"].append(f"CSIPSTR1: {sorted(roots)}")
        return found
    (objid,) = roots
    root = folder / objid
    report = structure.validate_package_structure(str(root))
    found["structure"] += [f"{e.id}: {e.sub_message or e.message}" for e in report.errors]
    found["structure warnings"] = [f"{w.id}" for w in report.warnings]
    package_mets = root / "METS.xml"
    validator = MetsValidator(str(root))
    validator.validate_mets("METS.xml")
    found["schema"] += [str(e) for e in validator.validation_errors]
    sip_schema = IP_SCHEMA["sip"]
    if not sip_schema.validate(etree.parse(str(package_mets))):
        found["schema"] += [str(e) for e in sip_schema.error_log]
    references = [(root, item) for item in validator.file_references]
    for representation in validator.representation_mets:
        rep = MetsValidator(str(root))
        rep.validate_mets(representation)
        found["schema"] += [f"{representation}: {e}" for e in rep.validation_errors]
        rep_folder = (root / representation).parent
        references += [(rep_folder, item) for item in rep.file_references]
    found["representations"] = list(validator.representation_mets)
    # Every file a METS file names is there, with its size and SHA-256 (ip-check -c).
    for base, item in references:
        path = base / item.path
        if not path.is_file():
            found["schema"].append(f"{item.path}: named in METS, not in the package")
        elif (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()) != (
            item.size,
            item.checksum.value,
        ):
            found["schema"].append(f"{item.path}: size or SHA-256 differs from METS")
    named = {(base / item.path).resolve() for base, item in references}
    unnamed = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.resolve() not in named and p != package_mets
    ]
    found["schema"] += [f"{name}: in the package, in no METS" for name in unnamed]
    rules = folder.parent / f"{folder.name}-rules"
    rules.mkdir(exist_ok=True)
    for specification in ("CSIP", "SIP"):
        for result in schematron(package_mets, specification, rules):
            if (result.rule_id, result.location.location) not in CONTRADICTORY:
                found["schematron"].append(f"{result.rule_id} {result.location}: {result.message}")
    found["contradictory"] = [
        r.rule_id
        for r in schematron(package_mets, "SIP", rules)
        if (r.rule_id, r.location.location) in CONTRADICTORY
    ]
    return found


def assert_valid(package: bytes, folder: Path) -> dict[str, list[str]]:
    found = validate(package, folder)
    problems = {k: v for k, v in found.items() if k in ("structure", "schema", "schematron") and v}
    assert not problems, json.dumps(problems, indent=2)
    # SHOULD: metadata/ and schemas/ in each representation (its files are in the package's)
    assert found["structure warnings"] == ["CSIPSTR13", "CSIPSTR15"], found
    assert found["representations"] == ["representations/rep1/METS.xml"], found
    assert found["contradictory"] == ["SIP14"], found
    return found


# Reading a package -----------------------------------------------------------------------


def files_of(package: bytes) -> dict[str, bytes]:
    """The package's files by their path from its folder."""
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}


def premis_fixity(files: dict[str, bytes]) -> dict[str, str]:
    """path -> SHA-256 of each object in the package's PREMIS."""
    tree = etree.fromstring(files["metadata/preservation/premis.xml"])
    found = {}
    for obj in tree.iter(f"{PREMIS}object"):
        path = obj.findtext(f"{PREMIS}objectIdentifier/{PREMIS}objectIdentifierValue")
        found[path] = obj.findtext(f".//{PREMIS}fixity/{PREMIS}messageDigest")
    return found


def index_rows(files: dict[str, bytes]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(files[f"{DATA}/emails/index.csv"].decode())))


def sent_in_sink(mail: Path) -> dict[str, bytes]:
    """Message-ID -> the message exactly as the sink got it (its .eml without the line the
    sink itself puts first, X-Sink-Recipient)."""
    found = {}
    for path in sorted(mail.glob("*.eml")):
        head, content = path.read_bytes().split(b"\r\n", 1)
        assert head.startswith(b"X-Sink-Recipient: ")
        found[message_from_bytes(content, policy=default)["Message-ID"]] = content
    return found


def outbox_rows(config: Settings, agreement_id: str) -> list[tuple[OutboxRecord, bytes | None]]:
    with Session(engine(config.db_url())) as session:
        rows = session.exec(select(OutboxRecord).where(OutboxRecord.agreement_id == agreement_id))
        return [(row, row.message) for row in rows]


def quiet(config: Settings, agreement_id: str, still: float = 2.0) -> None:
    """Until the agreement's event log and outbox have not changed for `still` seconds (the
    worker writes the round's last events and emails a moment after the completion)."""

    def now() -> tuple[int, list[tuple[str, str]]]:
        rows = sorted((r.key, r.status) for r in ops.outbox(config, agreement_id))
        return len(ops.events(config, agreement_id)), rows

    deadline = time.monotonic() + 60
    seen, since = now(), time.monotonic()
    while time.monotonic() - since < still:
        assert time.monotonic() < deadline, "the agreement kept changing"
        time.sleep(0.2)
        if (found := now()) != seen:
            seen, since = found, time.monotonic()


# The tests ---------------------------------------------------------------------------------


def test_migration_0007_adds_the_kept_message_to_the_outbox_and_takes_it_away(
    database_url: str,
) -> None:
    """A database at 0006 with an email sent: upgraded to 0007, the row is as it was, with no
    hash and no message; a hash and a message can be written. Downgraded to 0006, the
    columns are gone and the row stays."""
    db = migrate(database_url, "0006")
    sent = dt.datetime(2026, 5, 4, 8, 0)
    with db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO outbox (key, agreement_id, template, recipient, subject,"
                " message_id, status, attempts, created_at, sent_at) VALUES ('k', 'a',"
                " 'signature_request', 'sam@example.se', 'Signera', '<m@x>', 'sent', 1,"
                " :at, :at)"
            ),
            {"at": sent},
        )
    migrate(database_url, "0007")
    with db.begin() as connection:
        row = connection.execute(
            text("SELECT key, status, sha256, message, message_weeded_at FROM outbox")
        ).one()
        assert tuple(row) == ("k", "sent", None, None, None)
        connection.execute(
            text("UPDATE outbox SET sha256 = :h, message = :m"),
            {"h": "ab" * 32, "m": b"Subject: x\r\n\r\n\xc3\xa5\r\n"},
        )
        kept = connection.execute(text("SELECT sha256, message FROM outbox")).one()
    assert (kept[0], bytes(kept[1])) == ("ab" * 32, b"Subject: x\r\n\r\n\xc3\xa5\r\n")
    downgrade(database_url, "0006")
    with db.connect() as connection:
        columns = connection.execute(text("SELECT * FROM outbox")).keys()
        assert connection.execute(text("SELECT key, status FROM outbox")).all() == [("k", "sent")]
    assert not {"sha256", "message", "message_weeded_at"} & set(columns)


@pytest.fixture
def signed(web: tuple[TestClient, Path]) -> Iterator[tuple[TestClient, Path, str, bytes]]:
    """Kvarnby drafted in the form with its text (a PDF), sent for signing, and packaged while
    the round is open; then signed by both from their links, so that the completion emails
    with the sealed record have gone out. (client, mail folder, agreement id, the
    package made while signing)."""
    client, mail = web
    client.post("/login", data={"token": TOKEN})
    fields = {**form_of(client.get("/draft").text), **KVARNBY}
    added = client.post(
        "/draft",
        data={**fields, "do": "save", "upload_kind": "text", "prerequisites": []},
        files=[("upload", ("Avtal om läxhjälp.pdf", pdf(2, text="avtalet"), "application/pdf"))],
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text
    agreement_id = added.headers["location"].removeprefix("/a/")
    start_signing(client, agreement_id)
    personal = links(mail, 2)
    while_signing = client.get(f"/api/agreements/{agreement_id}/archive", headers=AUTH)
    assert while_signing.status_code == 200, while_signing.text
    for link in personal.values():
        assert client.post(link, data={"action": "sign"}).status_code == 200
    config = client.app.state.config  # type: ignore[attr-defined]

    def all_sent() -> bool:
        rows = ops.outbox(config, agreement_id)
        done = [r for r in rows if r.template == "signature_completed" and r.status == "sent"]
        return len(done) >= 2 and all(r.status in ("sent", "failed") for r in rows)

    eventually(all_sent, "the completion emails to be sent")
    quiet(config, agreement_id)
    yield client, mail, agreement_id, while_signing.content


def test_a_sent_email_keeps_the_hash_and_the_bytes_the_mail_server_got(
    signed: tuple[TestClient, Path, str, bytes],
) -> None:
    """Every email of a signed agreement: its outbox row holds the SHA-256 of exactly the
    message in the mail sink, and that message; the API's outbox shows the hash, never the
    message (a signer's email holds their personal link)."""
    client, mail, agreement_id, _ = signed
    config = client.app.state.config  # type: ignore[attr-defined]
    in_sink = sent_in_sink(mail)
    rows = outbox_rows(config, agreement_id)
    assert len(rows) >= 5 and {r.status for r, _ in rows} == {"sent"}
    for row, message in rows:
        exact = in_sink[row.message_id]
        assert row.sha256 == hashlib.sha256(exact).hexdigest(), row.key
        assert message == exact, row.key
        assert row.message_weeded_at is None
    listed = client.get(f"/api/agreements/{agreement_id}/outbox", headers=AUTH).json()
    assert {e["key"]: e["sha256"] for e in listed} == {r.key: r.sha256 for r, _ in rows}
    assert all("message" not in e for e in listed)
    requests = [m for r, m in rows if r.template == "signature_request"]
    assert requests and all(m is not None and b"/sign/" in m for m in requests)
    again = client.get(f"/api/agreements/{agreement_id}/outbox", headers=AUTH)
    assert b"/sign/" not in again.content


def test_the_archive_package_of_a_signed_agreement_passes_the_e_archives_checks(
    signed: tuple[TestClient, Path, str, bytes], tmp_path: Path
) -> None:
    """The package from the agreement's page, from the API and as the worker writes it: an
    E-ARK SIP the validator finds no error in, with every version of the terms, the
    document, the sealed record, the event log without IP addresses, and the emails as they
    were sent, each file's SHA-256 in METS and PREMIS."""
    client, mail, agreement_id, _ = signed
    config: Settings = client.app.state.config  # type: ignore[attr-defined]
    page = client.get(f"/a/{agreement_id}")
    assert f'href="/a/{agreement_id}/archive.zip"' in page.text
    from_page = client.get(f"/a/{agreement_id}/archive.zip")
    assert from_page.status_code == 200, from_page.text[:300]
    assert from_page.headers["content-type"] == "application/zip"
    assert "attachment" in from_page.headers["content-disposition"]
    from_api = client.get(f"/api/agreements/{agreement_id}/archive", headers=AUTH)
    assert from_api.status_code == 200 and from_api.headers["content-type"] == "application/zip"
    assert files_of(from_page.content).keys() == files_of(from_api.content).keys()
    assert_valid(from_page.content, tmp_path / "page")

    with Session(engine(config.db_url())) as session:
        session.add(
            EventRecord(
                event_key=f"{agreement_id}:old-style",
                agreement_id=agreement_id,
                at=dt.datetime.now(dt.UTC),
                kind="signature.opened",
                actor="sam@laxhjalpen.example.se",
                summary="opened (as logged before 0004)",
                data_json=json.dumps({"method": "link", "ip": "203.0.113.5", "user_agent": "UA/1"}),
            )
        )
        session.commit()
    made = dt.datetime(2027, 3, 1, 9, 30, tzinfo=dt.UTC)
    package = package_bytes(config, agreement_id, made)
    assert package_bytes(config, agreement_id, made) == package  # the same bytes again
    later = package_bytes(config, agreement_id, made + dt.timedelta(seconds=2))
    assert later != package
    assert_valid(package, tmp_path / "made")
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {f"{agreement_id}-20270301T093000Z"}
    files = files_of(package)
    fixity = premis_fixity(files)
    for path, data in files.items():  # every file but the two that cannot name themselves
        if path not in ("METS.xml", "metadata/preservation/premis.xml"):
            assert fixity.pop(path) == hashlib.sha256(data).hexdigest(), path
    assert fixity == {}

    # Every version of the terms: the JSON is what was hashed (its name's hash) and signed.
    versions = ops.terms_versions(config, agreement_id)
    assert len(versions) >= 1
    current = ops.agreement(config, agreement_id).terms_sha256
    terms = sorted(p for p in files if p.startswith(f"{DATA}/terms/"))
    assert terms == sorted(
        f"{DATA}/terms/{n:03d}-{v.sha256}.{kind}"
        for n, v in enumerate(versions, start=1)
        for kind in ("toml", "json")
    )
    for n, version in enumerate(versions, start=1):
        exact = files[f"{DATA}/terms/{n:03d}-{version.sha256}.json"]
        assert hashlib.sha256(exact).hexdigest() == version.sha256
    assert any(current in p for p in terms)
    # The document and the sealed record, byte for byte.
    [(document_hash, document)] = ops.documents_of(config, agreement_id).items()
    [document_path] = [p for p in files if p.startswith(f"{DATA}/documents/")]
    assert files[document_path] == ops.document_bytes(config, document_hash)
    assert document_path.endswith("-Avtal-om-laxhjalp.pdf")
    premis = etree.fromstring(files["metadata/preservation/premis.xml"])
    names = [o.findtext(f"{PREMIS}originalName") for o in premis.iter(f"{PREMIS}object")]
    assert document.name in names
    [(number, record)] = ops.sealed_records(config, agreement_id)
    assert files[f"{DATA}/records/round-{number}.pdf"] == ops.document_bytes(config, record.sha256)
    # The event log, every event, no IP address (the signers' are in signer_trace; an event
    # written with one, as before they were moved, loses it).
    events = ops.events(config, agreement_id)
    logged = json.loads(files[f"{DATA}/events.json"])
    assert [e["event_key"] for e in logged] == [e.event_key for e in events]
    traces = ops.signer_traces(config, agreement_id)
    assert traces and all(t.ip for t in traces)
    for name in (f"{DATA}/events.json", f"{DATA}/events.csv"):
        assert not any(t.ip.encode() in files[name] for t in traces if t.ip), name
        assert b"203.0.113.5" not in files[name] and b"UA/1" not in files[name], name
    assert logged[-1]["data"] == {"method": "link"}
    assert (
        len(list(csv.reader(io.StringIO(files[f"{DATA}/events.csv"].decode())))) == len(events) + 1
    )
    premis_events = [e.findtext(f"{PREMIS}eventType") for e in premis.iter(f"{PREMIS}event")]
    assert premis_events == [e.kind for e in events] + ["creation"]
    # The emails: exactly the kept messages, as the sink got them, their hashes in PREMIS.
    rows = outbox_rows(config, agreement_id)
    in_sink = sent_in_sink(mail)
    emails = {p: d for p, d in files.items() if p.endswith(".eml")}
    assert sorted(emails.values()) == sorted(m for _, m in rows if m is not None)
    assert sorted(emails.values()) == sorted(in_sink[r.message_id] for r, _ in rows)
    listed = index_rows(files)
    assert sorted(r["key"] for r in listed) == sorted(r.key for r, _ in rows)
    for entry in listed:
        assert entry["message"] == "kept", entry
        path = f"{DATA}/{entry['file']}"
        assert hashlib.sha256(emails[path]).hexdigest() == entry["sha256"]
        assert premis_fixity(files)[path] == entry["sha256"]
    # The description names the agreement, its reference and the parties' numbers.
    described = files["metadata/descriptive/dc.xml"].decode()
    for words in (KVARNBY["title"], KVARNBY["reference"], "212000-1355"):
        assert words in described, words
    mets = etree.fromstring(files["METS.xml"])
    agents = [
        (a.get("ROLE"), a.get("OTHERROLE"), a.findtext(f"{METS}name"))
        for a in mets.iter(f"{METS}agent")
    ]
    assert agents == [
        ("CREATOR", None, "agreements"),
        ("ARCHIVIST", None, KVARNBY["party.0.name"]),
        ("OTHER", "SUBMITTER", KVARNBY["party.0.name"]),
    ]


def test_while_the_agreement_is_signed_the_signers_links_stay_out_of_the_package(
    signed: tuple[TestClient, Path, str, bytes], tmp_path: Path
) -> None:
    """A package made while the round was open has no invitation (nor reminder) in it: those
    carry the signer's personal link, which signs, and anyone who may read the agreement may
    download the package. Its index says they were withheld."""
    *_, while_signing = signed
    files = files_of(while_signing)
    listed = index_rows(files)
    invitations = [r for r in listed if r["template"] == "signature_request"]
    assert len(invitations) == 2
    assert {(r["message"], r["file"]) for r in invitations} == {("withheld", "")}
    assert not any(b"/sign/" in data for data in files.values())
    assert_valid(while_signing, tmp_path / "signing")


def test_after_the_message_retention_the_message_is_weeded_and_its_hash_stays(
    signed: tuple[TestClient, Path, str, bytes], tmp_path: Path
) -> None:
    """The weeding with a retention of one day, run as if two days later: every message is
    cleared, with the moment, and every hash stays; the package then holds no email, and its
    index still lists each with its hash, as weeded. A retention of 0 weeds nothing."""
    client, _, agreement_id, _ = signed
    config: Settings = client.app.state.config  # type: ignore[attr-defined]
    before = outbox_rows(config, agreement_id)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    never = MessageWeeder(config.model_copy(update={"message_retention_days": 0}))
    assert asyncio.run(never.weed_outbox_messages(later)) == 0
    assert [m for _, m in outbox_rows(config, agreement_id)] == [m for _, m in before]
    weeder = MessageWeeder(config.model_copy(update={"message_retention_days": 1}))
    assert asyncio.run(weeder.weed_outbox_messages(later)) == len(before)
    after = outbox_rows(config, agreement_id)
    assert {r.key: r.sha256 for r, _ in after} == {r.key: r.sha256 for r, _ in before}
    assert all(m is None and r.message_weeded_at is not None for r, m in after)
    assert asyncio.run(weeder.weed_outbox_messages(later)) == 0  # once
    package = package_bytes(config, agreement_id, dt.datetime.now(dt.UTC))
    files = files_of(package)
    assert not [p for p in files if p.endswith(".eml")]
    listed = index_rows(files)
    assert {(r["key"], r["sha256"], r["message"]) for r in listed} == {
        (r.key, r.sha256, "weeded") for r, _ in before
    }
    assert_valid(package, tmp_path / "weeded")


def test_the_package_is_written_to_the_archive_folder_when_it_is_set(
    signed: tuple[TestClient, Path, str, bytes], tmp_path: Path
) -> None:
    """The activity writes <folder>/<id>-<last day>.zip (0640) when AGREEMENTS_ARCHIVE_DIR is
    set, again to the same name when run again, and nothing when it is not set."""
    client, _, agreement_id, _ = signed
    config: Settings = client.app.state.config  # type: ignore[attr-defined]
    assert Archiver(config).write(agreement_id) is None
    folder = tmp_path / "e-arkiv"
    archiver = Archiver(config.model_copy(update={"archive_dir": folder}))
    written = archiver.write(agreement_id, dt.datetime(2029, 1, 1, tzinfo=dt.UTC))
    end = ops.agreement(config, agreement_id).end
    assert written == str(folder / f"{agreement_id}-{end.isoformat()}.zip")
    path = Path(written)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_bytes() == package_bytes(
        config, agreement_id, dt.datetime(2029, 1, 1, tzinfo=dt.UTC)
    )
    again = archiver.write(agreement_id)
    assert again == written and os.listdir(folder) == [path.name]
    assert_valid(path.read_bytes(), tmp_path / "folder")


def test_the_command_line_writes_the_package(
    signed: tuple[TestClient, Path, str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agreements archive ID --out FILE` writes the package and names it; an agreement
    that does not exist, or a folder that does not, is said in one line."""
    client, _, agreement_id, _ = signed
    config: Settings = client.app.state.config  # type: ignore[attr-defined]
    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(config.data_dir))
    monkeypatch.setenv("AGREEMENTS_LANGUAGE", "en")
    out = tmp_path / "paket.zip"
    settings.cache_clear()
    try:
        runner = CliRunner()
        made = runner.invoke(cli, ["archive", agreement_id, "--out", str(out)])
        missing = runner.invoke(cli, ["archive", "no-such-agreement", "--out", str(out)])
        nowhere = runner.invoke(cli, ["archive", agreement_id, "--out", str(tmp_path / "x/y.zip")])
    finally:
        settings.cache_clear()
    assert made.exit_code == 0, made.output
    [objid] = {name.split("/")[0] for name in zipfile.ZipFile(out).namelist()}
    assert objid.startswith(f"{agreement_id}-") and objid in made.output
    assert_valid(out.read_bytes(), tmp_path / "cli")
    assert missing.exit_code == 1 and "no-such-agreement" in missing.output
    assert nowhere.exit_code == 1 and "x/y.zip" in nowhere.output
    assert "Traceback" not in missing.output + nowhere.output


def test_the_package_downloads_for_a_reader_and_not_for_another_organisation(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    """Rut reads Kultur's agreements: the page and the API give her Planteringen's package.
    Bo is in Social: for him, as for its other pages, the agreement does not exist."""
    config, app = site
    with TestClient(app, client=("192.0.2.40", 50000)) as rut:
        person(rut, provider, "rut")
        settled(rut, "/a/planteringen", "IOP Planteringen")
        page = rut.get("/a/planteringen/archive.zip")
        assert page.status_code == 200 and page.content.startswith(b"PK\x03\x04")
        header = {"Authorization": f"Bearer {made_token(rut, 'arkiv', 'read')}"}
        api = rut.get("/api/agreements/planteringen/archive", headers=header)
        assert api.status_code == 200 and api.headers["content-type"] == "application/zip"
    with TestClient(app, client=("192.0.2.41", 50000)) as bo:
        person(bo, provider, "bo")
        assert bo.get("/a/planteringen/archive.zip").status_code == 404
        header = {"Authorization": f"Bearer {made_token(bo, 'arkiv', 'read')}"}
        api = bo.get("/api/agreements/planteringen/archive", headers=header)
        assert api.status_code == 404 and api.json()["code"] == "no-agreement"
    del config


# The weeding workflow: messages weeded on the dev server, and old runs replay -------------


def old_outbox(url: str, now: dt.datetime) -> None:
    """Sent emails of several ages, with their messages; one weeded before."""
    rows = [("m:old", 40, b"old", None), ("m:new", 2, b"new", None), ("m:gone", 90, None, 10)]
    with Session(engine(url)) as session:
        for key, days, message, weeded in rows:
            session.add(
                OutboxRecord(
                    key=key,
                    agreement_id="a",
                    template="report_reminder",
                    recipient="sam@example.se",
                    subject="Påminnelse",
                    message_id=f"<{key}@x>",
                    status="sent",
                    sent_at=now - dt.timedelta(days=days),
                    sha256=hashlib.sha256(key.encode()).hexdigest(),
                    message=message,
                    message_weeded_at=now - dt.timedelta(days=weeded) if weeded else None,
                )
            )
        session.commit()


async def test_the_daily_weeding_clears_messages_older_than_their_retention(
    database_url: str, temporal: Temporal, tmp_path: Path
) -> None:
    """The Weeding workflow on the dev server with the worker's activities and
    AGREEMENTS_MESSAGE_RETENTION_DAYS=30: the message sent 40 days ago is cleared (its hash
    stays), the one of 2 days ago stays, the one weeded before is left as it was."""
    async with service(temporal, tmp_path, database_url, message_retention_days=30) as (
        config,
        client,
    ):
        url = config.db_url()
        now = dt.datetime.now(dt.UTC)
        old_outbox(url, now)
        weeded = await client.execute_workflow(
            WeedingWorkflow.run,
            WeedingInput(retention_days=730),
            id="weeding-messages",
            task_queue=config.task_queue,
        )
    assert weeded == 0  # traces: none here
    with Session(engine(url)) as session:
        rows = {r.key: (r, r.message) for r in session.exec(select(OutboxRecord))}
    old, new, gone = rows["m:old"], rows["m:new"], rows["m:gone"]
    assert old[1] is None and old[0].message_weeded_at is not None
    assert old[0].sha256 == hashlib.sha256(b"m:old").hexdigest()
    assert new[1] == b"new" and new[0].message_weeded_at is None
    weeded_at = gone[0].message_weeded_at
    assert gone[1] is None and weeded_at is not None and weeded_at < now - dt.timedelta(days=9)


@workflow.defn(name="Weeding")
class WeedingBefore:
    """The Weeding workflow as it was before messages were kept (a run recorded then)."""

    @workflow.run
    async def run(self, data: WeedingInput) -> int:
        if data.retention_days <= 0:
            return 0
        before = workflow.now() - dt.timedelta(days=data.retention_days)
        weeded: int = await workflow.execute_activity(
            "weed_signer_traces",
            before,
            result_type=int,
            start_to_close_timeout=dt.timedelta(minutes=10),
            retry_policy=RetryPolicy(
                initial_interval=dt.timedelta(seconds=1), maximum_interval=dt.timedelta(minutes=5)
            ),
        )
        return weeded


@activity.defn(name="weed_signer_traces")
async def no_traces(before: dt.datetime) -> int:
    return 0


@activity.defn(name="weed_outbox_messages")
async def no_messages(now: dt.datetime) -> int:
    return 0


async def test_weeding_runs_recorded_before_messages_were_kept_replay(temporal: Temporal) -> None:
    """Histories of Weeding recorded by the code before (with a retention, and with 0) replay
    on today's workflow: its new step is behind `workflow.patched("weed-messages")`. A
    history recorded today replays too."""
    client = await Client.connect(
        temporal.address, namespace=temporal.namespace, data_converter=pydantic_data_converter
    )
    histories = []
    for workflows, name in (([WeedingBefore], "before"), ([WeedingWorkflow], "now")):
        async with Worker(
            client,
            task_queue=f"replay-{name}",
            workflows=workflows,
            activities=[no_traces, no_messages],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            for days in (730, 0):
                handle = await client.start_workflow(
                    "Weeding",
                    WeedingInput(retention_days=days),
                    id=f"weeding-{name}-{days}",
                    task_queue=f"replay-{name}",
                )
                await handle.result()
                histories.append(await handle.fetch_history())
    replayer = Replayer(workflows=[WeedingWorkflow], data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)


def test_an_agreement_that_ends_leaves_its_package_in_the_archive_folder(tmp_path: Path) -> None:
    """A whole life on the time-skipping server with the real worker (`agreements simulate`):
    when the agreement ends, its workflow writes the package to AGREEMENTS_ARCHIVE_DIR with
    every email of its life in it, the last reminders included, and the package passes the
    e-archive's checks."""
    folder = tmp_path / "e-arkiv"
    folder.mkdir()
    example = ROOT / "examples" / "kristianstad-gamlegarden.toml"
    done = subprocess.run(
        [str(AGREEMENTS), "simulate", str(example), "--json"],
        cwd=tmp_path,
        env={**os.environ, "AGREEMENTS_ARCHIVE_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    life = json.loads(done.stdout)
    assert life["state"] == "ended"
    [package] = folder.iterdir()
    assert package.name == "kristianstad-gamlegarden-2024-06-30.zip"
    assert_valid(package.read_bytes(), tmp_path / "checked")
    rows = index_rows(files_of(package.read_bytes()))
    assert {(r["message_id"], r["status"], r["message"]) for r in rows} == {
        (e["message_id"], "sent", "kept") for e in life["emails"]
    }
    assert len(rows) == len(life["emails"]) == 31
