"""Every email kind renders in Swedish and English, escapes data, and builds a proper MIME
message: one-line subject, text and HTML parts, stable Message-ID, calendar when dated."""

from __future__ import annotations

import datetime as dt
import re
from email import message_from_bytes, message_from_string
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiosmtplib.email import flatten_message
from icalendar import Calendar, vCategory

from emails.calendar import calendar, uid
from emails.headers import Header, address_header
from emails.message import _calendar, as_bytes, build, message_id
from emails.render import DIGEST, TEMPLATES, Rendered, contribution_terms, render_email
from i18n.words import ROUND_EVENTS, round_event, word
from models.agreement import Agreement, Language, SigningMethod
from models.lifecycle import (
    EmailSpec,
    EndingInfo,
    FailedInfo,
    RoundInfo,
    SignatureEvent,
    Signer,
    SignerStatus,
)
from models.loader import load_agreement
from models.plan import PlannedMilestone, Recipient, Scenario
from models.schedule.dates import STOCKHOLM
from models.schedule.engine import plan
from workflows.decider import CALENDAR_TEMPLATES

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "helsingborg-inva-sam.toml"
# The kinds an agreement sends (the weekly digest, to a person about several agreements,
# has tests of its own: tests/test_digest.py).
KINDS = sorted(p.name for p in (TEMPLATES / "sv").iterdir() if p.is_dir() and p.name != DIGEST)
AT = dt.datetime(2024, 4, 17, 8, 38, tzinfo=STOCKHOLM)


def agreement(language: Language = Language.sv, title: str | None = None) -> Agreement:
    base = load_agreement(EXAMPLE)
    return base.model_copy(update={"language": language, "title": title or base.title})


def milestone_for(a: Agreement, template: str) -> PlannedMilestone | None:
    """The first milestone that sends `template`: from this agreement when it has one,
    else from the other examples (recorded scenario too, for overdue reports)."""
    others = sorted(EXAMPLE.parent.glob("*.toml"))
    for candidate in [a, *(load_agreement(p) for p in others)]:
        for scenario in (Scenario.plan, Scenario.recorded):
            full = plan(candidate, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=scenario)
            for email in full.emails:
                if email.template == template:
                    return next(m for m in full.milestones if m.id == email.milestone_id)
    return None


def spec(a: Agreement, template: str, language: Language) -> EmailSpec:
    signer = Signer(
        email="saul.sagnia@inva-sam.example.se",
        name="Saul Sagnia",
        party="inva-sam",
        party_name="INVA-SAM",
        status=SignerStatus.signed,
    )
    round_info = RoundInfo(
        number=1,
        started_at=AT,
        expires_at=AT + dt.timedelta(days=30),
        terms_sha256="ab" * 32,
        signers=[signer],
        events=[
            SignatureEvent(at=AT, signer=signer.email, name="Saul Sagnia", what="sent"),
            SignatureEvent(
                at=AT,
                signer=signer.email,
                name="Saul Sagnia",
                what="signed",
                method="link",
                ip="192.0.2.7",
            ),
        ],
    )
    return EmailSpec(
        key=f"{a.id}:test:{template}",
        agreement_id=a.id,
        terms_sha256="ab" * 32,
        template=template,
        to=Recipient(
            email="maria.hallstig@amf.helsingborg.example.se",
            name="Maria Hällstig",
            party="amf",
            role="contact",
            language=language,
        ),
        milestone=milestone_for(a, template),
        days_before=7,
        link_token="t" * 64,
        round=round_info,
        reason="Beloppet måste beslutas i nämnden",
        ending=EndingInfo(
            kind="rescission",
            end=dt.date(2024, 9, 2),
            party_name="INVA-SAM",
            reason="Allvarlig brist",
            repayment=200_000,
        ),
        failed=FailedInfo(to="x@example.se", subject="Ämne", error="550 5.1.1 no such user"),
        calendar="REQUEST",
    )


def test_both_languages_have_the_same_kinds() -> None:
    english = sorted(
        p.name for p in (TEMPLATES / "en").iterdir() if p.is_dir() and p.name != DIGEST
    )
    assert english == KINDS
    assert len(KINDS) == 23
    for language in ("sv", "en"):
        for kind in KINDS:
            assert (TEMPLATES / language / kind / "subject.txt").is_file(), (language, kind)
            assert (TEMPLATES / language / kind / "body.html").is_file(), (language, kind)


@pytest.mark.parametrize("language", [Language.sv, Language.en])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders(kind: str, language: Language) -> None:
    a = agreement(language)
    rendered = render_email(a, spec(a, kind, language), link="https://avtal.example.se/sign/x")
    assert "\n" not in rendered.subject and rendered.subject.strip() == rendered.subject
    assert a.title in rendered.subject
    assert rendered.text.startswith("Hej Maria Hällstig!" if language is Language.sv else "Hello")
    assert "maria.hallstig@amf.helsingborg.example.se" in rendered.text  # the coordinator
    assert '<html lang="' + language.value + '">' in rendered.html
    if language is Language.en:
        for word in ("Hej", "senast", "avtalet ", "Skäl"):
            assert word not in rendered.text, (kind, word)


def test_the_facts_each_reader_needs() -> None:
    a = agreement()

    def text(kind: str) -> str:
        return render_email(a, spec(a, kind, Language.sv), link="https://l.example.se/s/1").text

    invoice = text("invoice_reminder")
    assert "650\u00a0000\u00a0kr" in invoice
    assert "Fakturan skickas av INVA-SAM till Arbetsmarknadsförvaltningen" in invoice
    assert "Avtalet anger 2024-05-01 (onsdag)" in invoice  # May Day: moved to the 2nd
    request = text("signature_request")
    assert "https://l.example.se/s/1" in request and "ab" * 32 in request
    completed = text("signature_completed")
    assert "2024-04-17 08:38:00 CEST (Europe/Stockholm)" in completed
    # The signers' IP addresses go to the coordinator only, not to every party's contacts.
    assert "Saul Sagnia – undertecknad, signeringslänk" in completed
    assert "192.0.2.7" not in completed
    to_coordinator = spec(a, "signature_completed", Language.sv)
    to_coordinator = to_coordinator.model_copy(
        update={"to": to_coordinator.to.model_copy(update={"role": "coordinator"})}
    )
    assert "undertecknad, signeringslänk, IP 192.0.2.7" in render_email(a, to_coordinator).text
    assert "Saul Sagnia – inbjudan skickad" in completed
    assert "Beloppet måste beslutas i nämnden" in text("signature_declined")
    ended = text("agreement_ended")
    assert "är hävt" in ended and "200\u00a0000\u00a0kr" in ended and "2024-09-02" in ended
    assert "550 5.1.1" in text("send_failed")


def test_data_is_escaped_in_html_and_kept_out_of_headers() -> None:
    a = agreement(title="<script>alert(1)</script>\r\nBcc: evil@example.org")
    s = spec(a, "report_reminder", Language.sv)
    rendered = render_email(a, s)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    message = build(a, s, rendered, "Avtal <avtal@example.se>", AT)
    parsed = message_from_bytes(message.as_bytes(), policy=default)
    assert parsed["Bcc"] is None
    assert "\n" not in str(parsed["Subject"])


def test_message_id_is_stable_per_key_and_dated_emails_carry_a_calendar() -> None:
    a = agreement()
    s = spec(a, "invoice_reminder", Language.sv)
    message = build(a, s, render_email(a, s), "Avtal <avtal@example.se>", AT)
    assert message["Message-ID"] == message_id(s.key, "Avtal <avtal@example.se>")
    assert message_id(s.key, "x@example.se") != message_id(s.key + "x", "x@example.se")
    parts = [p.get_content_type() for p in message.walk()]
    assert parts.count("text/plain") == 1 and parts.count("text/html") == 1
    assert "text/calendar" in parts
    no_calendar = s.model_copy(update={"calendar": None})
    plain = build(a, no_calendar, render_email(a, no_calendar), "avtal@example.se", AT)
    assert "text/calendar" not in [p.get_content_type() for p in plain.walk()]


# --- headers: every subject of every life, as it reaches a reader -------------------------

SENDER = "Avtalstjänsten <avtal@agreements.example.se>"


def life_specs(path: Path, language: Language) -> list[tuple[Agreement, EmailSpec]]:
    """Every email of the example's whole life (the engine's plan), then every kind the
    workflows send on events, in `language`."""
    a = load_agreement(path).model_copy(update={"language": language})
    full = plan(a, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    milestones = {m.id: m for m in full.milestones}
    out = [
        (
            a,
            EmailSpec(
                key=e.key,
                agreement_id=a.id,
                terms_sha256="ab" * 32,
                template=e.template,
                to=e.to.model_copy(update={"language": language}),
                milestone=milestones[e.milestone_id],
                days_before=e.days_before,
                calendar="REQUEST" if e.template in CALENDAR_TEMPLATES else None,
            ),
        )
        for e in full.emails
    ]
    return out + [(a, spec(a, kind, language)) for kind in KINDS]


def wire(message: EmailMessage) -> list[tuple[str, bytes]]:
    """The message as it is written: by Python, and as the SMTP activity hands it to a
    relay (7-bit, 8-bit, and SMTPUTF8)."""
    return [
        ("as_bytes", message.as_bytes()),
        ("smtp 7bit", flatten_message(message, cte_type="7bit")),
        ("smtp 8bit", flatten_message(message)),
        ("smtputf8", flatten_message(message, utf8=True)),
    ]


def read_back(how: str, raw: bytes) -> EmailMessage:
    """Python's byte parser takes header bytes as ASCII: UTF-8 headers (SMTPUTF8) are read
    as the text they are."""
    if how == "smtputf8":
        parsed = message_from_string(raw.decode("utf-8"), policy=default)
    else:
        parsed = message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize("language", [Language.sv, Language.en])
@pytest.mark.parametrize("path", sorted(EXAMPLE.parent.glob("*.toml")), ids=lambda p: p.stem)
def test_every_subject_of_every_life_reads_back_exactly(path: Path, language: Language) -> None:
    """Issue 12: "(måndag)– IOP" lost the space that Python's folding left between two
    encoded-words. Every subject, name and key must come back character for character."""
    count = 0
    for a, s in life_specs(path, language):
        rendered = render_email(a, s, link="https://avtal.example.se/sign/x")
        message = build(a, s, rendered, SENDER, AT)
        for how, raw in wire(message):
            head = raw.split(b"\r\n\r\n" if b"\r\n" in raw else b"\n\n", 1)[0]
            if how != "smtputf8":
                assert head.isascii(), (how, s.key)
                # RFC 5322: at most 998; RFC 2047: 76 on a line with an encoded-word. (The
                # outbox key, one long token, is the one header longer than 78.)
                lines = head.decode().splitlines()
                assert max(len(line) for line in lines) <= 998, (how, s.key)
                assert all(len(line) <= 76 for line in lines if "=?" in line), (how, s.key)
            back = read_back(how, raw)
            assert str(back["Subject"]) == rendered.subject, (how, s.key)
            assert back["X-Agreement-Email-Key"] == s.key, (how, s.key)
            assert str(back["From"]) == SENDER, how
            (to,) = back["To"].addresses
            assert (to.display_name, to.addr_spec) == (s.to.name, s.to.email), (how, s.key)
        count += 1
    assert count > len(KINDS)


def test_a_long_subject_folds_inside_its_encoded_words() -> None:
    subject = "Om 30 dagar: Delrapport senast 2024-12-02 (måndag) – IOP INVA-SAM – mötesplats"
    header = Header("Subject", subject).fold(policy=default)
    assert all(len(line) <= 76 for line in header.splitlines())
    # Every space is inside an encoded-word (as "_"): a reader drops the folding white
    # space between two words, never a space of the text.
    words = header.removeprefix("Subject: ").split()
    assert all(w.startswith("=?utf-8?q?") and w.endswith("?=") for w in words)
    assert str(make_header(decode_header(header.removeprefix("Subject: ")))) == subject
    plain = Header("Subject", "Reminder: " + "word " * 30).fold(policy=default)
    assert "=?" not in plain and max(len(line) for line in plain.splitlines()) <= 78


def test_names_with_address_specials_are_quoted_or_encoded() -> None:
    a = agreement()
    s = spec(a, "report_reminder", Language.sv)
    for name in ("Svensson, Sara (Rädda Barnen)", 'Sara "Sassa" Svensson', "Sara Svensson"):
        named = s.model_copy(update={"to": s.to.model_copy(update={"name": name})})
        message = build(a, named, render_email(a, named), "Avtal <avtal@example.se>", AT)
        for how, raw in wire(message):
            (to,) = read_back(how, raw)["To"].addresses
            assert (to.display_name, to.addr_spec) == (name, s.to.email), how


def built_by_python(
    a: Agreement, s: EmailSpec, rendered: Rendered, mail_from: str, now: dt.datetime
) -> EmailMessage:
    """The message as Python's own calls put it together (what `build` did before it was
    assembled from parts made once per worker)."""
    msg = EmailMessage()
    msg["From"] = address_header("From", mail_from)
    msg["To"] = Header("To", s.to.email, (s.to.name, s.to.email))
    msg["Subject"] = Header("Subject", rendered.subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(s.key, mail_from)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Agreement-Id"] = a.id
    msg["X-Agreement-Email-Key"] = Header("X-Agreement-Email-Key", s.key)
    msg["X-Agreement-Template"] = s.template
    if s.planned_at is not None:
        msg["X-Agreement-Planned-At"] = s.planned_at.isoformat()
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    ics = _calendar(a, s, mail_from, now)
    if ics is not None:
        method, data = ics
        msg.add_alternative(
            data, maintype="text", subtype="calendar", params={"charset": "utf-8", "method": method}
        )
        filename = f"{a.id}.ics"
        msg.add_attachment(
            data,
            maintype="application",
            subtype="ics",
            filename=filename,
            params={"name": filename},
        )
    msg["Content-Language"] = s.to.language.value
    return msg


def boundaries_numbered(raw: bytes) -> bytes:
    """The random boundaries of a message replaced by their order of appearance."""
    seen: dict[bytes, bytes] = {}
    return re.sub(
        rb"={15}\d{19}==", lambda m: seen.setdefault(m[0], b"<boundary %d>" % len(seen)), raw
    )


def test_the_message_is_the_one_pythons_own_calls_make() -> None:
    """`build` puts each message together from parts made once per worker: on the wire it is
    the message Python's set_content and add_alternative make, byte for byte (but for the
    random boundaries), for every email of every life in both languages, a withdrawal's
    CANCEL, and text that each transfer encoding is chosen for."""
    cases: list[tuple[Agreement, EmailSpec, Rendered]] = []
    for path in sorted(EXAMPLE.parent.glob("*.toml")):
        for language in (Language.sv, Language.en):
            for a, s in life_specs(path, language):
                cases.append((a, s, render_email(a, s, link="https://avtal.example.se/sign/x")))
    a = agreement()
    s = spec(a, "invoice_reminder", Language.sv)
    assert s.milestone is not None
    cancel = s.model_copy(update={"cancel": [s.milestone], "calendar": None, "sequence": 2})
    cases.append((a, cancel, render_email(a, cancel)))
    dated = s.model_copy(update={"planned_at": AT})
    for text_, html in (
        ("short and ASCII\n", "<p>short</p>"),  # 7bit
        ("kort och på svenska\n", "<p>på svenska</p>"),  # 8bit
        ("ж" * 100 + "\n", "<p>" + "ж" * 100 + "</p>"),  # base64
        ("\n".join(["en rad som är lång " * 6] * 12), "<p>" + "lång " * 40 + "</p>"),  # QP
        ("", ""),
    ):
        cases.append((a, dated, Rendered("Ämne", text_, html)))
    for a, s, rendered in cases:
        ours = build(a, s, rendered, SENDER, AT)
        python = built_by_python(a, s, rendered, SENDER, AT)
        for (how, raw), (_, expected) in zip(wire(ours), wire(python), strict=True):
            assert boundaries_numbered(raw) == boundaries_numbered(expected), (how, s.key)
        # And as the notification activity writes it for the relay, without the generator.
        for utf8, cte_type in ((False, "7bit"), (False, "8bit"), (True, "8bit")):
            written = as_bytes(ours, utf8=utf8, cte_type=cte_type)
            assert written == flatten_message(ours, utf8=utf8, cte_type=cte_type), s.key
    assert len(cases) > 500


# --- calendars: what Outlook, Google and Apple take in ----------------------------------


def calendar_parts(message: EmailMessage) -> list[EmailMessage]:
    return [p for p in message.walk() if p.get_content_type() == "text/calendar"]


def parsed_calendar(part: EmailMessage) -> tuple[bytes, Calendar]:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data, Calendar.from_ical(data)


def check_ics_lines(data: bytes) -> None:
    """RFC 5545 § 3.1: CRLF line ends, lines of at most 75 octets."""
    assert data.endswith(b"\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 75


def test_a_reminder_calendar_is_a_request_with_organizer_and_attendee() -> None:
    a = agreement()
    s = spec(a, "invoice_reminder", Language.sv)
    message = build(a, s, render_email(a, s), SENDER, AT)
    (part,) = calendar_parts(message)
    assert part.get_content_charset() == "utf-8"
    assert part.get_param("method") == "REQUEST"
    # The iMIP part is an alternative of the text and the HTML; the same file is attached.
    alternative = next(p for p in message.walk() if p.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    attached = [p for p in message.walk() if p.get_content_type() == "application/ics"]
    assert [p.get_filename() for p in attached] == [f"{a.id}.ics"]
    data, cal = parsed_calendar(part)
    check_ics_lines(data)
    assert cal["METHOD"] == "REQUEST" and cal["VERSION"] == "2.0" and cal["PRODID"]
    (event,) = cal.walk("VEVENT")
    assert event["ORGANIZER"] == "mailto:avtal@agreements.example.se"
    assert event["ORGANIZER"].params["CN"] == "Avtalstjänsten"
    assert event["ATTENDEE"] == "mailto:maria.hallstig@amf.helsingborg.example.se"
    assert event["ATTENDEE"].params["CN"] == "Maria Hällstig"
    assert event["ATTENDEE"].params["RSVP"] == "FALSE"
    assert s.milestone is not None
    assert str(event["UID"]) == uid(a.id, s.milestone.id)
    assert event.decoded("DTSTART") == s.milestone.effective_date
    assert event.decoded("DTEND") == s.milestone.effective_date + dt.timedelta(days=1)
    assert event["SEQUENCE"] == 0 and event["TRANSP"] == "TRANSPARENT"
    assert "DTSTAMP" in event and "STATUS" not in event


def test_an_ending_cancels_every_entry_it_names() -> None:
    a = agreement()
    s = spec(a, "agreement_ended", Language.sv)
    full = plan(a, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    later = [m for m in full.milestones if m.effective_date > dt.date(2024, 9, 2)][:5]
    s = s.model_copy(update={"calendar": None, "cancel": later, "sequence": 2})
    message = build(a, s, render_email(a, s), SENDER, AT)
    (part,) = calendar_parts(message)
    assert part.get_param("method") == "CANCEL" and part.get_content_charset() == "utf-8"
    data, cal = parsed_calendar(part)
    check_ics_lines(data)
    assert cal["METHOD"] == "CANCEL"
    events = cal.walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [uid(a.id, m.id) for m in later]
    for event in events:
        assert event["STATUS"] == "CANCELLED"
        assert event["SEQUENCE"] == 3  # above the requests' 2
        assert event["ORGANIZER"] == "mailto:avtal@agreements.example.se"
        assert event["ATTENDEE"] == "mailto:maria.hallstig@amf.helsingborg.example.se"


def test_every_dated_email_of_every_life_carries_a_calendar_that_parses() -> None:
    for path in sorted(EXAMPLE.parent.glob("*.toml")):
        for a, s in life_specs(path, Language.sv):
            if s.calendar is None or s.milestone is None:
                continue
            message = build(a, s, render_email(a, s), SENDER, AT)
            (part,) = calendar_parts(message)
            data, cal = parsed_calendar(part)
            check_ics_lines(data)
            (event,) = cal.walk("VEVENT")
            assert cal["METHOD"] == part.get_param("method") == "REQUEST", s.key
            assert event["ATTENDEE"] == f"mailto:{s.to.email}", s.key
            assert "ORGANIZER" in event, s.key


def test_a_published_calendar_names_no_attendee() -> None:
    a = agreement()
    full = plan(a, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    cal = Calendar.from_ical(calendar(a, full.milestones[:3], AT))
    assert cal["METHOD"] == "PUBLISH"
    assert all("ATTENDEE" not in e for e in cal.walk("VEVENT"))
    with pytest.raises(ValueError, match="organizer and an attendee"):
        calendar(a, full.milestones[:1], AT, "REQUEST")


# --- what the emails say ---------------------------------------------------------------


def test_the_signing_link_is_a_button_and_never_printed_in_the_html() -> None:
    a = agreement()
    link = "https://avtal.example.se/sign/" + "A" * 300
    for kind in ("signature_request", "signature_reminder"):
        for language in (Language.sv, Language.en):
            rendered = render_email(a, spec(a, kind, language), link=link)
            assert rendered.html.count(link) == 1  # the button's href, nothing else
            assert f'href="{link}"' in rendered.html and "#005a9c" in rendered.html
            assert link in rendered.text  # the plain-text part keeps the full link


def test_one_product_name_in_every_email() -> None:
    for path in TEMPLATES.rglob("*"):
        if path.is_file():
            assert "Avtalsservice" not in path.read_text(encoding="utf-8"), path
    a = agreement()
    assert "från Avtalstjänsten." in render_email(a, spec(a, "report_reminder", Language.sv)).text
    english = render_email(a, spec(a, "report_reminder", Language.en)).text
    assert "from The agreement service (Avtalstjänsten)." in english


def test_a_cancelled_paper_round_promises_no_link() -> None:
    a = agreement()
    s = spec(a, "signature_cancelled", Language.sv)
    assert s.round is not None
    paper = s.model_copy(update={"round": s.round.model_copy(update={"method": "paper"})})
    text = render_email(a, paper).text
    assert "länk" not in text.replace("Ingen länk kommer", "")
    assert "Ingen länk kommer: samordnaren skickar nya papper" in text
    assert "ny signeringsomgång" in text
    english = render_email(
        a, paper.model_copy(update={"to": paper.to.model_copy(update={"language": Language.en})})
    ).text
    assert "No link is coming: the coordinator will send new papers" in english
    assert "Du får en ny länk" in render_email(a, s).text  # a link round still gets one


def receipt(a: Agreement, method: str, language: Language = Language.sv) -> str:
    s = spec(a, "signature_receipt", language)
    assert s.round is not None
    sara = Signer(
        email="sara.svensson@raddabarnen.example.se",
        name="Sara Svensson",
        party="amf",
        party_name="Arbetsmarknadsförvaltningen",
    )
    saul = s.round.signers[0]
    if method == "paper":
        saul = saul.model_copy(update={"signed_on": dt.date(2024, 4, 16)})
        signed = SignatureEvent(
            at=dt.datetime(2024, 4, 16, tzinfo=STOCKHOLM),
            signer=saul.email,
            name=saul.name,
            what="signed",
            method="paper",
            signed_on=dt.date(2024, 4, 16),
            recorded_by="malin@example.se",
        )
        events = [signed]
    else:
        events = list(s.round.events)
    info = s.round.model_copy(update={"method": method, "signers": [saul, sara], "events": events})
    to = Recipient(
        email=saul.email, name=saul.name, party="inva-sam", role="signatory", language=language
    )
    return render_email(a, s.model_copy(update={"round": info, "to": to})).text


def test_a_signer_gets_a_receipt_that_says_what_happens_next() -> None:
    a = agreement()
    text = receipt(a, "link")
    assert "Kvitto" not in text  # the subject says it
    assert "Du har undertecknat: IOP INVA-SAM – mötesplats @Söder" in text
    assert "För: INVA-SAM" in text
    assert "Med din personliga länk, 2024-04-17 08:38:00 CEST (Europe/Stockholm)" in text
    assert "(SHA-256): abababababab…" in text and "ab" * 32 not in text
    assert "1 av 2 underskrifter är klara" in text
    assert "När alla har undertecknat får du" in text
    paper = receipt(a, "paper")
    assert "På papper, daterat 2024-04-16 (tisdag); registrerat av samordnaren" in paper
    assert "Samordnaren samlar in och registrerar de andras underskrifter på papper" in paper
    english = receipt(a, "link", Language.en)
    assert "You have signed: IOP INVA-SAM – mötesplats @Söder" in english
    assert "1 of 2 signatures are in" in english


def example_agreement(name: str) -> Agreement:
    return load_agreement(EXAMPLE.parent / f"{name}.toml")


def test_amounts_say_what_they_are() -> None:
    inva, planteringen, lund = (
        example_agreement(n) for n in ("helsingborg-inva-sam", "planteringen", "lund-radrum")
    )
    said = {
        (x.id, c.payer, c.kind.value): contribution_terms(c)
        for x in (inva, planteringen, lund)
        for c in x.contributions
    }
    assert said["helsingborg-inva-sam", "amf", "money"] == "650\u00a0000\u00a0kr per period"
    assert (
        said["helsingborg-inva-sam", "helsingborgshem", "in_kind"]
        == "i natura, värde 400\u00a0000\u00a0kr per period"
    )
    assert said["planteringen", "sff", "money"] == "150\u00a0000\u00a0kr för första perioden"
    assert said["planteringen", "radda-barnen", "in_kind"] == (
        "i natura, värde 277\u00a0252\u00a0kr för första perioden"
    )
    assert said["lund-radrum", "sof", "money"] == (
        "520\u00a0000\u00a0kr för period 1 och 400\u00a0000\u00a0kr för period 2"
    )
    assert said["lund-radrum", "kff", "in_kind"] == "i natura"
    first = next(c for c in planteringen.contributions if c.payer == "sff")
    assert contribution_terms(first, "en") == "150\u00a0000\u00a0kr for the first period"

    def invoice(x: Agreement) -> str:
        s = spec(x, "invoice_reminder", Language.sv)
        full = plan(x, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
        first_invoice = next(m for m in full.milestones if m.kind.value == "invoice")
        return render_email(x, s.model_copy(update={"milestone": first_invoice})).text

    assert "Belopp: 150\u00a0000\u00a0kr, hela bidraget för första perioden" in invoice(
        planteringen
    )
    assert "Bidraget enligt avtalet: 150\u00a0000\u00a0kr för första perioden" in invoice(
        planteringen
    )
    assert (
        "Belopp: 260\u00a0000\u00a0kr, delbetalning 1 av bidraget för avtalsperiod 1 "
        "(520\u00a0000\u00a0kr)"
    ) in invoice(lund)
    assert "Belopp: 650\u00a0000\u00a0kr, hela bidraget för avtalsperiod 1" in invoice(inva)


def test_no_line_break_of_any_kind_reaches_a_header() -> None:
    """str.splitlines() breaks at U+0085 (NEL) and U+2028 too: a title with one would have
    made the header two lines (Python refused to build the message)."""
    a = agreement(title="IOP\x85Bcc: evil@example.org\u2028Gamlegården\x0bx")
    s = spec(a, "report_reminder", Language.sv)
    rendered = render_email(a, s)
    assert "IOP Bcc: evil@example.org Gamlegården x" in rendered.subject
    for how, raw in wire(build(a, s, rendered, SENDER, AT)):
        back = read_back(how, raw)
        assert back["Bcc"] is None and str(back["Subject"]) == rendered.subject, how


# --- one translation mechanism: the catalog (i18n) -------------------------------------


def test_the_shared_parts_are_written_once_and_speak_the_readers_language() -> None:
    assert (TEMPLATES / "_base.html").is_file() and (TEMPLATES / "_macros.html").is_file()
    for language in ("sv", "en"):
        assert not list((TEMPLATES / language).glob("_*.html")), language  # no copies
    base = agreement()
    a = base.model_copy(
        update={
            "reference": "SOF 2025/3",
            "coordinator": base.coordinator.model_copy(update={"name": "Malin <b>Berg</b>"}),
        }
    )
    sv = render_email(a, spec(a, "signature_request", Language.sv), link="https://l.example.se/s")
    en = render_email(a, spec(a, "signature_request", Language.en), link="https://l.example.se/s")
    assert sv.subject.endswith("(dnr SOF 2025/3)") and en.subject.endswith("(ref. SOF 2025/3)")
    assert sv.text.startswith("Hej Maria Hällstig!\n") and en.text.startswith("Hello Maria")
    assert "Frågor? Kontakta samordnaren Malin <b>Berg</b>, maria.hallstig@" in sv.text
    assert "Questions? Contact the coordinator Malin <b>Berg</b>, maria.hallstig@" in en.text
    assert "Läs villkoren och underteckna" in sv.html and "Read the terms and sign" in en.html
    for rendered in (sv, en):  # data escaped, the shared markup not
        assert 'Malin &lt;b&gt;Berg&lt;/b&gt;, <a href="mailto:' in rendered.html
        assert "<b>" not in rendered.html
    assert "dnr" not in en.text and "Hej" not in en.text and "Hello" not in sv.text


@pytest.mark.parametrize(
    ("days", "sv", "en"),
    [
        (0, "Idag", "Today"),
        (1, "Om 1 dag", "In 1 day"),
        (30, "Om 30 dagar", "In 30 days"),
        (-3, "Försenad", "Overdue"),
    ],
)
def test_a_reminder_says_how_far_off_the_day_is(days: int, sv: str, en: str) -> None:
    a = agreement()
    for language, said in ((Language.sv, sv), (Language.en, en)):
        s = spec(a, "report_reminder", language).model_copy(update={"days_before": days})
        rendered = render_email(a, s)
        assert rendered.subject.startswith(f"{said}: Delrapport"), rendered.subject
        assert f"\n{said}: Delrapport ska lämnas" in rendered.text or language is Language.en


def test_the_verification_record_names_events_and_methods_in_words() -> None:
    a = agreement()
    s = spec(a, "signature_completed", Language.sv)
    assert s.round is not None
    events = [
        SignatureEvent(at=AT, signer="saul@x.example.se", name="Saul", what=what, method=method)
        for what in ROUND_EVENTS
        for method in (None, "link", "paper")
    ]
    info = s.round.model_copy(update={"events": events})
    for language in (Language.sv, Language.en):
        to = s.to.model_copy(update={"language": language})
        text = render_email(a, s.model_copy(update={"round": info, "to": to})).text
        said = [line.split(" – ", 1)[1] for line in text.splitlines() if " – " in line]
        said = [line for line in said if not line.startswith("mötesplats")]  # the title
        assert len(said) == len(events)
        for event, line in zip(events, said, strict=True):
            expected = round_event(language, event.what)
            if event.method:
                expected += ", " + word(language, SigningMethod(event.method))
            assert line == expected
        if language is Language.sv:
            assert "Saul – undertecknad, på papper" in text
            assert "Saul – påminnelse skickad, signeringslänk" in text
            for key in ("sent", "link", "paper", "signed", "completed"):
                assert f" {key}" not in text and f"{key}," not in text, key


def test_signers_statuses_are_words_not_keys() -> None:
    a = agreement()
    for kind in ("signature_declined", "signature_expired"):
        s = spec(a, kind, Language.sv)
        assert s.round is not None
        signers = [
            s.round.signers[0].model_copy(update={"email": f"{i}@x.example.se", "status": status})
            for i, status in enumerate(SignerStatus)
        ]
        info = s.round.model_copy(update={"signers": signers})
        for language in (Language.sv, Language.en):
            to = s.to.model_copy(update={"language": language})
            text = render_email(a, s.model_copy(update={"round": info, "to": to})).text
            listed = [line for line in text.splitlines() if line.startswith("- Saul Sagnia")]
            assert listed == [
                f"- Saul Sagnia, INVA-SAM: {word(language, status)}" for status in SignerStatus
            ]


def test_calendar_entries_speak_the_agreements_language() -> None:
    for language, written, ref, category in (
        (Language.sv, "(skrivet datum 2024-05-01)", "Dnr SOF 2025/3", "fakturering"),
        (Language.en, "(written date 2024-05-01)", "Ref. SOF 2025/3", "invoicing"),
    ):
        a = agreement(language).model_copy(update={"reference": "SOF 2025/3"})
        s = spec(a, "invoice_reminder", language)
        assert s.milestone is not None and s.milestone.date != s.milestone.effective_date
        message = build(a, s, render_email(a, s), "avtal@agreements.example.se", AT)
        (part,) = calendar_parts(message)
        (event,) = parsed_calendar(part)[1].walk("VEVENT")
        description = str(event["DESCRIPTION"])
        assert written in description and description.endswith(f"\n{ref}"), description
        categories = event["CATEGORIES"]
        assert isinstance(categories, vCategory) and categories.cats == [category]
        # A sender without a name: the calendar entry comes from the service, by its name.
        service = "Avtalstjänsten" if language is Language.sv else "The agreement service"
        assert event["ORGANIZER"].params["CN"] == service


def test_contributions_are_said_in_english_too() -> None:
    lund = example_agreement("lund-radrum")
    said = {(c.payer, c.kind.value): contribution_terms(c, "en") for c in lund.contributions}
    assert said["sof", "money"] == (
        "520\u00a0000\u00a0kr for period 1 and 400\u00a0000\u00a0kr for period 2"
    )
    assert said["kff", "in_kind"] == "in kind"
    inva = example_agreement("helsingborg-inva-sam")
    assert {contribution_terms(c, "en") for c in inva.contributions} == {
        "650\u00a0000\u00a0kr for each period",
        "in kind, value 400\u00a0000\u00a0kr for each period",
    }
