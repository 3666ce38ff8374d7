"""The event log in the reader's language (i18n/events.py).

Every kind of event the decider and the signing round write has a message; a Swedish
rendering of each has no English and names parties, milestones and rounds as people do;
events the decider really writes carry the data their message needs; events written
before that (missing data) and unknown kinds read as their stored summary.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from i18n.events import EVENTS, event_text
from models.commands import (
    MilestoneUpdate,
    RenewalRequest,
    ReportDecision,
    StartSigning,
    TerminationRequest,
)
from models.lifecycle import RoundOutcome
from models.plan import SETTABLE, EndingKind, MilestoneKind, MilestoneStatus
from tests.test_decider import TERMINATION, active, at, new, ready, step
from tests.test_engine import OPT_OUT, agreement
from workflows import decider

ROOT = Path(__file__).resolve().parent.parent

# What the f-string kinds of the decider's `log` calls can be, by their source text.
PATTERNS = {
    'f"{purpose}.round_started"': [f"{p}.round_started" for p in ("signing", "amendment")],
    'f"{info.purpose}.round_{info.outcome.value}"': [
        f"{p}.round_{o.value}"
        for p in ("signing", "amendment")
        for o in RoundOutcome
        if o not in (RoundOutcome.open, RoundOutcome.completed)  # completed: signed
    ],
    'f"milestone.{status.value}"': [
        f"milestone.{s.value}" for statuses in SETTABLE.values() for s in statuses
    ],
    'f"ending.{ending.kind.value}"': [f"ending.{k.value}" for k in EndingKind],
}
# What the signing round logs (workflows/signing.py `_log_events`: signature.<what>).
ROUND_WHATS = ("sent", "started", "reminded", "opened", "signed", "declined")

# Words that give away English in a Swedish line (the sample data below has none).
ENGLISH = {
    "the",
    "a",
    "an",
    "of",
    "to",
    "by",
    "on",
    "from",
    "for",
    "and",
    "is",
    "was",
    "were",
    "has",
    "have",
    "with",
    "signed",
    "signature",
    "round",
    "agreement",
    "party",
    "parties",
    "sent",
    "reminder",
    "approved",
    "paid",
    "held",
    "invoiced",
    "received",
    "returned",
    "ends",
    "ended",
    "runs",
    "withdrew",
    "withdraws",
    "terminated",
    "rescinded",
    "refused",
    "failed",
    "saving",
    "draft",
    "link",
    "email",
    "could",
    "not",
    "every",
    "everyone",
    "complete",
    "declined",
    "cancelled",
    "expired",
}

SAMPLE: dict[str, object] = {
    "state": "signed",
    "round": 2,
    "name": "Sara Ek",
    "party_name": "Föreningen Gro",
    "party": "forening",
    "signed_on": "2025-03-01",
    "milestone_title": "Årsrapport 1",
    "milestone": "report:arsrapport:1",
    "new_due": "2026-06-01",
    "on": "2026-01-20",
    "number": "F-1001",
    "note": "budgeten",
    "term_end": "2025-12-31",
    "renew": True,
    "end": "2025-06-10",
    "start": "2025-01-01",
    "ending": "termination",
    "to": "sara@example.se",
    "to_name": "Sara Ek",
    "error": "550",
    "what": "the event log",
    "prerequisites": "no-market,trust",
    "reason": "budgeten",
    "method": "link",
    "decision": "record_milestone",
    "code": "not-invoiced",
    "params": '{"milestone": "Delbetalning 1"}',
}


def logged_kinds() -> set[str]:
    """Every kind the decider's `log` calls can write; a new f-string kind fails here."""
    source = (ROOT / "workflows/decider.py").read_text(encoding="utf-8")
    kinds: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "log":
            first = node.args[0]
            if isinstance(first, ast.Constant):
                kinds.add(str(first.value))
            else:
                shown = ast.get_source_segment(source, first)
                assert shown in PATTERNS, f"a kind the test does not know: {shown}"
                kinds.update(PATTERNS[shown])
    return kinds


def all_kinds() -> set[str]:
    return (
        logged_kinds()
        | {f"signature.{w}" for w in ROUND_WHATS}
        | {f"signature.{o.value}" for o in RoundOutcome if o is not RoundOutcome.open}
        - {"signature.failed"}
        | {"refused"}
    )


def test_every_kind_the_decider_and_the_round_log_has_a_message():
    kinds = all_kinds()
    assert len(kinds) > 30
    assert sorted(kinds - set(EVENTS)) == []


def test_every_kind_reads_in_swedish_without_english_and_in_english_as_written():
    for kind in sorted(all_kinds()):
        summary = f"stored summary of {kind}"
        swedish = event_text("sv", kind, summary, SAMPLE)
        assert swedish != summary, kind
        words = set(re.findall(r"[a-zåäö]+", swedish.lower()))
        assert not words & ENGLISH, (kind, swedish, words & ENGLISH)
        assert "%(" not in swedish and "forening" not in swedish, (kind, swedish)
        english = event_text("en", kind, summary, SAMPLE)
        assert english != summary and english != swedish, kind


def test_events_written_before_their_data_named_everything_read_as_their_summary():
    old = {"method": "link", "ip": None, "round": 1}
    summary = "round 1: sent by Sara Ek"
    assert event_text("sv", "signature.sent", summary, old) == summary
    assert event_text("sv", "report.submitted", "arsrapport #1 submitted", {}) == (
        "arsrapport #1 submitted"
    )
    assert event_text("sv", "something.new", "a new kind", SAMPLE) == "a new kind"
    refused = {"decision": "sign", "reason": "Sara Ek has already signed"}
    assert event_text("sv", "refused", "sign refused: x", refused) == "sign refused: x"


def test_a_round_event_names_the_signer_and_party_and_the_round_in_swedish():
    data = {"round": 1, "name": "Sara Ek", "party_name": "Föreningen Gro", "method": "link"}
    assert event_text("sv", "signature.sent", "x", data) == (
        "Signeringsomgång 1: länk skickad till Sara Ek (Föreningen Gro)"
    )
    paper = {**data, "method": "paper", "signed_on": "2025-03-01"}
    assert event_text("sv", "signature.signed", "x", paper) == (
        "Sara Ek (Föreningen Gro) undertecknade på papper daterat 2025-03-01"
    )
    refused = {
        "decision": "record_milestone",
        "reason": "x has not been recorded as invoiced",
        "code": "not-invoiced",
        "params": '{"milestone": "Delbetalning 1"}',
    }
    assert event_text("sv", "refused", "x", refused) == (
        "Avvisat (registrering av en händelses status): "
        "Delbetalning 1 har inte registrerats som fakturerad"
    )


def test_what_the_decider_really_logs_reads_in_swedish_from_its_data():
    """Events from real steps, not samples: each carries what its message needs."""
    events = []
    core = new()
    events += decider.take_on(core.model_copy(), at("2024-11-01"), at("2024-11-01")).effects.events
    core = ready(core)
    started = step(core, StartSigning(), at("2024-11-04"))
    events += started.effects.events
    core = active(agreement(extra=TERMINATION))
    now = at("2026-01-20")
    report = step(core, ReportDecision(report="arsrapport", occurrence=1, by="malin"), now)
    events += report.effects.events
    first = next(
        m for m in decider.statuses(core, now) if m.kind is MilestoneKind.invoice and m.payer
    )
    invoiced = step(
        core,
        MilestoneUpdate(milestone=first.id, status=MilestoneStatus.invoiced, number="F-1"),
        now,
    )
    events += invoiced.effects.events
    notice = TerminationRequest(kind=EndingKind.termination, party="amf", reason="budget")
    events += step(core, notice, at("2025-03-10")).effects.events
    renewal = step(
        active(agreement("opt-out", OPT_OUT)),
        RenewalRequest(party="forening", renew=False),
        at("2025-09-01"),
    )
    events += renewal.effects.events
    kinds = {e.kind for e in events}
    assert {"created", "signing.round_started", "report.submitted", "milestone.invoiced"} <= kinds
    assert {"ending.termination", "renewal.decided"} <= kinds
    for event in events:
        swedish = event_text("sv", event.kind, event.summary, event.data)
        assert swedish != event.summary, (event.kind, event.data)
        words = set(re.findall(r"[a-zåäö]+", swedish.lower()))
        assert not words & ENGLISH, (event.kind, swedish)
    said = {e.kind: event_text("sv", e.kind, e.summary, e.data) for e in events}
    assert said["created"] == "Togs emot av tjänsten som utkast"
    assert said["signing.round_started"] == "Signeringsomgång 1 startad"
    assert said["milestone.invoiced"] == (f"{first.title} fakturerad 2026-01-20, fakturanummer F-1")
    assert first.id not in said["milestone.invoiced"]
    assert said["ending.termination"] == "Avtalet är uppsagt: det upphör 2025-06-10 (budget)"
    assert said["renewal.decided"] == (
        "Föreningen säger upp avtalet: perioden som slutar 2025-12-31 förlängs inte"
    )
