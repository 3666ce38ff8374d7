"""iCalendar (.ics) for milestones: one all-day event each, with a UID that never changes for
the same milestone of the same agreement, so a re-plan updates the entry in place."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from icalendar import Calendar, Event

from emails.render import one_line
from models.agreement import Agreement
from models.plan import PlannedMilestone

PRODID = "-//agreements//Agreement lifecycle service//SV"
UID_DOMAIN = "agreements.invalid"


def uid(agreement_id: str, milestone_id: str) -> str:
    return f"{agreement_id}.{milestone_id.replace(':', '.')}@{UID_DOMAIN}"


def event(
    agreement: Agreement, milestone: PlannedMilestone, stamp: dt.datetime, sequence: int = 0
) -> Event:
    item = Event()
    item.add("uid", uid(agreement.id, milestone.id))
    item.add("dtstamp", stamp.astimezone(dt.UTC))
    item.add("dtstart", milestone.effective_date)
    item.add("dtend", milestone.effective_date + dt.timedelta(days=1))
    item.add("sequence", sequence)
    item.add("summary", one_line(f"{milestone.title} – {agreement.title}"))
    written = (
        ""
        if milestone.date == milestone.effective_date
        else f" (skrivet datum {milestone.date.isoformat()})"
        if agreement.language == "sv"
        else f" (written date {milestone.date.isoformat()})"
    )
    reference = f"\nDnr {one_line(agreement.reference)}" if agreement.reference else ""
    item.add("description", one_line(f"{milestone.title}{written}") + reference)
    item.add("categories", [milestone.kind.value])
    item.add("transp", "TRANSPARENT")
    return item


def calendar(
    agreement: Agreement,
    milestones: Iterable[PlannedMilestone],
    stamp: dt.datetime,
    method: str = "PUBLISH",
    sequence: int = 0,
) -> bytes:
    """A calendar of the milestones; METHOD:CANCEL marks every event cancelled (same UIDs)."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    cal.add("x-wr-calname", one_line(agreement.title))
    for milestone in milestones:
        item = event(agreement, milestone, stamp, sequence)
        if method == "CANCEL":
            item.add("status", "CANCELLED")
        cal.add_component(item)
    data: bytes = cal.to_ical()
    return data
