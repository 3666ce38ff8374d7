"""Every email kind renders in Swedish and English, escapes data, and builds a proper MIME
message: one-line subject, text and HTML parts, stable Message-ID, calendar when dated."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from emails.message import build, message_id
from emails.render import TEMPLATES, render_email
from models.agreement import Agreement, Language
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

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "helsingborg-inva-sam.toml"
KINDS = sorted(p.name for p in (TEMPLATES / "sv").iterdir() if p.is_dir())
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
    english = sorted(p.name for p in (TEMPLATES / "en").iterdir() if p.is_dir())
    assert english == KINDS
    assert len(KINDS) == 22
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
    assert "Saul Sagnia – undertecknad, länk, IP 192.0.2.7" in completed
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
