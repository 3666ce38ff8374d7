"""Which events are announced to webhook endpoints, and the body each delivery sends.

Announcements come from two places, both written in the transaction that records them
(activities/store.py): the event log (an agreement created, signed, amended, ended; a
milestone done, a report received, a round completed, an email that failed), and the
emails of a moment, which say that a milestone has come up (due), is late (overdue) or
that an instalment is to be invoiced. A milestone's moment is announced once per
milestone, type and date, however many reminders go out for it.

The body follows the Standard Webhooks payload structure: `type`, `timestamp` and `data`.
It holds what a finance system or a registry needs to find the agreement and act, and
never a signer's IP address or user agent (those are kept apart: activities/store.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from models.effects import EventIn
from models.lifecycle import EmailSpec

TYPES: tuple[str, ...] = (
    "agreement.created",
    "agreement.signed",
    "agreement.amended",
    "agreement.ended",
    "milestone.due",
    "milestone.overdue",
    "milestone.done",
    "invoice.due",
    "report.received",
    "round.completed",
    "email.failed",
)

# The event log's kinds that are announced, and as what.
BY_KIND: Mapping[str, str] = {
    "created": "agreement.created",
    "signed": "agreement.signed",
    "signed.imported": "agreement.signed",
    "amendment.signed": "agreement.amended",
    "ended": "agreement.ended",
    "milestone.paid": "milestone.done",
    "milestone.approved": "milestone.done",
    "milestone.held": "milestone.done",
    "report.submitted": "report.received",
    "signature.completed": "round.completed",
    "email.failed": "email.failed",
}

# The emails of a moment that announce a milestone, and as what.
BY_TEMPLATE: Mapping[str, str] = {
    "invoice_reminder": "invoice.due",
    "report_overdue": "milestone.overdue",
    "deadline_escalation": "milestone.overdue",
    "report_reminder": "milestone.due",
    "meeting_reminder": "milestone.due",
    "review_reminder": "milestone.due",
    "milestone_notice": "milestone.due",
    "notice_deadline_reminder": "milestone.due",
    "extension_deadline_reminder": "milestone.due",
    "withdrawal_opens": "milestone.due",
    "agreement_end": "milestone.due",
}

NEVER = frozenset({"ip", "user_agent", "token", "link_token"})  # never in a body


@dataclass(frozen=True)
class Announcement:
    """One thing that happened to one agreement, to be delivered to every endpoint of the
    agreement's organisation that asked for its type."""

    key: str  # what makes it one: an event's key, or agreement:milestone:type:date
    agreement_id: str
    type: str
    at: dt.datetime
    details: dict[str, Any]


def of_events(events: Iterable[EventIn]) -> list[Announcement]:
    """The announcements these events of the log make (most kinds make none)."""
    out = []
    for event in events:
        type_ = BY_KIND.get(event.kind)
        if type_ is None:
            continue
        data = {k: v for k, v in sorted(event.data.items()) if k not in NEVER}
        details = {
            "event": {"kind": event.kind, "summary": event.summary, "by": event.actor, "data": data}
        }
        out.append(Announcement(event.event_key, event.agreement_id, type_, event.at, details))
    return out


def of_emails(emails: Iterable[EmailSpec], now: dt.datetime) -> list[Announcement]:
    """The announcements a moment's emails make: one per milestone, type and date, at the
    moment the workflow sent them (`now` for an email that does not say)."""
    out: dict[str, Announcement] = {}
    for spec in emails:
        type_ = BY_TEMPLATE.get(spec.template)
        m = spec.milestone
        if type_ is None or m is None:
            continue
        key = f"{spec.agreement_id}:{m.id}:{type_}:{m.effective_date.isoformat()}"
        if key in out:
            continue
        milestone = {
            "id": m.id,
            "kind": m.kind.value,
            "title": m.title,
            "date": m.effective_date.isoformat(),
            "party": m.party,
            "payer": m.payer,
            "payee": m.payee,
            "amount_sek": m.amount,
        }
        details = {"milestone": {k: v for k, v in milestone.items() if v is not None}}
        at = spec.planned_at or now
        out[key] = Announcement(key, spec.agreement_id, type_, at, details)
    return list(out.values())


def body(
    announcement: Announcement,
    title: str | None,
    reference: str | None,
    organisation: str,
) -> str:
    """The delivery's body, fixed once: the same bytes for every attempt."""
    return json.dumps(
        {
            "type": announcement.type,
            "timestamp": _utc(announcement.at),
            "data": {
                "agreement": {
                    "id": announcement.agreement_id,
                    "title": title,
                    "reference": reference,
                    "organisation": organisation,
                },
                **announcement.details,
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _utc(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
