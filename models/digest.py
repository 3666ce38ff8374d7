"""The weekly digest's data: what the `Digest` workflow and its activities pass each other
(one model in, one out), and one person's digest as its email shows it.

Each Monday every coordinator and finance person gets one email of what is overdue and
what falls due in the coming days in their organisations' agreements, grouped by
agreement; none when there is nothing (workflows/digest.py, activities/digest.py).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import Field

from models.agreement import Language
from models.plan import Frozen, MilestoneKind, MilestoneStatus

DAYS = 14  # what falls due within this many days is listed, besides everything overdue


def week_of(day: dt.date) -> str:
    """The ISO week of a day, e.g. '2025-W03': one digest per person and week."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def digest_key(person_id: int, day: dt.date) -> str:
    """The digest's key (`digest_sent`, the Message-ID): 'digest:<person id>:<ISO week>'."""
    return f"digest:{person_id}:{week_of(day)}"


class DigestInput(Frozen):
    """A run of the `Digest` workflow (the schedule starts one every Monday)."""

    days: int = Field(default=DAYS, ge=1, le=366)
    # The day it is for; None: the day the run starts, in Stockholm. A run for a day of a
    # week whose digests went out sends nothing again.
    day: dt.date | None = None


class DigestDay(Frozen):
    day: dt.date


class Recipients(Frozen):
    """The people who may get a digest (active, coordinator or finance in an organisation
    that owns agreements), by id."""

    person_ids: list[int]


class DigestRequest(Frozen):
    person_id: int
    day: dt.date
    days: int = DAYS


class DigestOutcome(StrEnum):
    sent = "sent"
    already_sent = "already_sent"  # this week's went out before (a retry, a second run)
    nothing = "nothing"  # nothing overdue and nothing due: no email
    failed = "failed"  # refused for good by the mail server, or every retry spent


class DigestResult(Frozen):
    person_id: int
    outcome: DigestOutcome
    lines: int = 0
    error: str | None = None


class DigestSummary(Frozen):
    """What a run did, as its result (the Temporal UI shows it)."""

    day: dt.date
    week: str
    people: int = 0
    sent: int = 0
    already_sent: int = 0
    nothing: int = 0
    failed: int = 0
    error: str | None = None  # the recipients could not be read: no digest this time


class DigestLine(Frozen):
    """One thing to do: a milestone overdue or due soon."""

    # Which line of "Att göra" it is (agreements.attention.Why): deadline, overdue_report,
    # overdue_invoice, unpaid or due.
    why: str
    id: str  # the milestone's id (its anchor on the agreement's page)
    kind: MilestoneKind
    title: str  # in the agreement's language
    date: dt.date  # the effective date
    days: int  # from the digest's day: negative when overdue, 0 today
    status: MilestoneStatus
    amount: int | None = None
    number: str | None = None  # an invoice's number


class DigestGroup(Frozen):
    """One agreement's lines, most urgent first."""

    agreement_id: str
    title: str
    reference: str | None = None
    lines: list[DigestLine]


class Digest(Frozen):
    """One person's digest for one week."""

    person_id: int
    email: str
    name: str
    language: Language = Language.sv
    day: dt.date
    days: int = DAYS
    groups: list[DigestGroup]
    money_only: bool = False  # finance in every organisation: the instalments only

    @property
    def count(self) -> int:
        return sum(len(g.lines) for g in self.groups)

    @property
    def key(self) -> str:
        return digest_key(self.person_id, self.day)

    @property
    def week(self) -> str:
        return week_of(self.day)
