"""iCalendar (.ics) for milestones: one all-day event each, with a UID that never changes for
the same milestone of the same agreement, so a re-plan updates the entry in place.

Two uses. A calendar feed or a preview is METHOD:PUBLISH with no attendee. An email is an
iTIP message (RFC 5546, carried as iMIP, RFC 6047) that Outlook, Google and Apple take in:
METHOD:REQUEST adds or updates the entry and METHOD:CANCEL removes it, each with the
ORGANIZER (the address the email comes from) and the recipient as the ATTENDEE, who is
asked for no answer (RSVP=FALSE). An entry is free time (TRANSP:TRANSPARENT) all day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

from icalendar import Alarm, Calendar, Event, vCalAddress, vText

from emails.render import one_line
from i18n import text
from i18n.words import word
from models.agreement import Agreement
from models.plan import PlannedMilestone

PRODID = "-//agreements//Agreement lifecycle service//SV"
UID_DOMAIN = "agreements.invalid"
METHODS = ("PUBLISH", "REQUEST", "CANCEL")


class Person(NamedTuple):
    """An ORGANIZER or ATTENDEE: a name and an email address."""

    name: str
    email: str


def uid(agreement_id: str, milestone_id: str) -> str:
    return f"{agreement_id}.{milestone_id.replace(':', '.')}@{UID_DOMAIN}"


def _address(person: Person, **params: str) -> vCalAddress:
    value = vCalAddress(f"mailto:{person.email}")
    if person.name:
        value.params["CN"] = vText(one_line(person.name))
    for key, param in params.items():
        value.params[key] = param
    return value


def event(
    agreement: Agreement,
    milestone: PlannedMilestone,
    stamp: dt.datetime,
    sequence: int = 0,
    organizer: Person | None = None,
    attendee: Person | None = None,
) -> Event:
    item = Event()
    item.add("uid", uid(agreement.id, milestone.id))
    item.add("dtstamp", stamp.astimezone(dt.UTC))
    item.add("dtstart", milestone.effective_date)
    item.add("dtend", milestone.effective_date + dt.timedelta(days=1))
    item.add("sequence", sequence)
    # In the agreement's language, like the milestone titles the engine wrote.
    language = agreement.language
    item.add("summary", one_line(f"{milestone.title} – {agreement.title}"))
    written = (
        ""
        if milestone.date == milestone.effective_date
        else " " + text(language, "(written date %(date)s)", date=milestone.date.isoformat())
    )
    reference = (
        "\n" + text(language, "Ref. %(reference)s", reference=one_line(agreement.reference))
        if agreement.reference
        else ""
    )
    item.add("description", one_line(f"{milestone.title}{written}") + reference)
    item.add("categories", [word(language, milestone.kind)])
    item.add("transp", "TRANSPARENT")
    # Outlook shows an all-day entry as free time only when told so.
    item.add("x-microsoft-cdo-alldayevent", "TRUE")
    item.add("x-microsoft-cdo-busystatus", "FREE")
    if organizer is not None:
        item.add("organizer", _address(organizer))
    if attendee is not None:
        item.add(
            "attendee",
            _address(
                attendee,
                CUTYPE="INDIVIDUAL",
                ROLE="REQ-PARTICIPANT",
                PARTSTAT="NEEDS-ACTION",
                RSVP="FALSE",
            ),
        )
    return item


def calendar(
    agreement: Agreement,
    milestones: Iterable[PlannedMilestone],
    stamp: dt.datetime,
    method: str = "PUBLISH",
    sequence: int = 0,
    organizer: Person | None = None,
    attendee: Person | None = None,
) -> bytes:
    """A calendar of the milestones.

    PUBLISH (a feed, a preview) names no attendee. REQUEST and CANCEL are scheduling
    messages and need both an organizer and an attendee (RFC 5546 § 3.2.2, § 3.2.5);
    CANCEL marks every event cancelled (same UIDs, a higher SEQUENCE than the request's).
    """
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"unknown calendar method {method!r}")
    if method == "PUBLISH" and attendee is not None:
        raise ValueError("a PUBLISH calendar names no attendee")
    if method != "PUBLISH" and (organizer is None or attendee is None):
        raise ValueError(f"a {method} calendar needs an organizer and an attendee")
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    cal.add("x-wr-calname", one_line(agreement.title))
    for milestone in milestones:
        item = event(agreement, milestone, stamp, sequence, organizer, attendee)
        if method == "CANCEL":
            item.add("status", "CANCELLED")
        cal.add_component(item)
    data: bytes = cal.to_ical()
    return data


ALARM_DAYS = 3  # a personal feed's reminder: this many days before each milestone


def personal_calendar(
    name: str,
    entries: Iterable[tuple[Agreement, Iterable[PlannedMilestone]]],
    stamp: dt.datetime,
) -> bytes:
    """One person's feed: the coming milestones of all their agreements, each with an
    alarm ALARM_DAYS before it (the same UIDs as each agreement's own feed, so a calendar
    that holds both shows each milestone once)."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", one_line(name))
    for agreement, milestones in entries:
        for milestone in milestones:
            item = event(agreement, milestone, stamp)
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", one_line(f"{milestone.title} – {agreement.title}"))
            alarm.add("trigger", dt.timedelta(days=-ALARM_DAYS))
            item.add_component(alarm)
            cal.add_component(item)
    data: bytes = cal.to_ical()
    return data
