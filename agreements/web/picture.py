"""The agreement at a glance: its timeline drawn as SVG on the server (no script).

The term's periods are bands; each milestone is a marker in its lane (money, reports,
meetings, decisions, the end), coloured by where it stands (done, coming, overdue, passed
with nothing recorded); a line marks today, and amendments are marked on the top edge.
Every marker carries a <title> (its date, what and status in words) for a pointer and a
screen reader; the detailed table below the picture says the same in text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from models.plan import MilestoneKind, MilestoneState, MilestoneStatus

WIDTH = 1000
LEFT = 110  # room for the lanes' names
RIGHT = 20
LANE = 30
TOP = 26  # room for the amendments' marks and today's label

# Lanes, top to bottom, and the kinds in each.
LANES: list[tuple[str, tuple[MilestoneKind, ...]]] = [
    ("money", (MilestoneKind.invoice, MilestoneKind.in_kind)),
    ("reports", (MilestoneKind.report_due,)),
    ("meetings", (MilestoneKind.meeting,)),
    (
        "decisions",
        (
            MilestoneKind.notice_deadline,
            MilestoneKind.extension_deadline,
            MilestoneKind.review_deadline,
            MilestoneKind.withdrawal_opens,
            MilestoneKind.signing,
            MilestoneKind.milestone,
        ),
    ),
    ("end", (MilestoneKind.period_end, MilestoneKind.agreement_end)),
]
DONE = {
    MilestoneStatus.received,
    MilestoneStatus.approved,
    MilestoneStatus.paid,
    MilestoneStatus.held,
    MilestoneStatus.decided,
    MilestoneStatus.invoiced,
}
# Where a milestone stands, as the picture colours it (the legend names them).
COLOURS = {
    "done": "#1a7f37",
    "coming": "#005a9c",
    "overdue": "#b42318",
    "passed": "#595959",
}


def standing(m: MilestoneState, today: dt.date) -> str:
    """done, overdue, passed or coming: what the marker's colour says."""
    if m.status in DONE and not (m.status is MilestoneStatus.invoiced and m.effective_date < today):
        return "done"
    if m.status is MilestoneStatus.overdue:
        return "overdue"
    if m.effective_date < today and m.status in (
        MilestoneStatus.to_invoice,
        MilestoneStatus.invoiced,
        MilestoneStatus.returned,
    ):
        return "overdue"
    if m.effective_date < today:
        return "passed"
    return "coming"


@dataclass(frozen=True)
class Words:
    """What the picture says, in the page's language."""

    title: str  # the picture's accessible name
    lanes: dict[str, str]
    today: str
    amended: str
    status: Callable[[MilestoneState], str]  # a milestone's status in words
    day: Callable[[dt.date], str]


def timeline_svg(
    milestones: Sequence[MilestoneState],
    start: dt.date,
    end: dt.date,
    today: dt.date,
    words: Words,
    amendments: Sequence[dt.date] = (),
) -> Markup:
    """The picture for a page, as safe markup."""
    dates = [m.effective_date for m in milestones]
    first = min([start, *dates])
    last = max([end, *dates, first + dt.timedelta(days=1)])
    span = (last - first).days or 1
    inner = WIDTH - LEFT - RIGHT
    height = TOP + LANE * len(LANES) + 30

    def x(day: dt.date) -> float:
        return round(LEFT + inner * (day - first).days / span, 1)

    parts: list[str] = []
    # The term's periods as bands between the period ends.
    ends = sorted(
        {m.effective_date for m in milestones if m.kind is MilestoneKind.period_end} | {end}
    )
    edge = start
    for n, boundary in enumerate(ends):
        if boundary <= edge:
            continue
        shade = "#eef3f8" if n % 2 == 0 else "#dfe8f1"
        parts.append(
            f'<rect x="{x(edge)}" y="{TOP}" width="{max(x(boundary) - x(edge), 1)}" '
            f'height="{LANE * len(LANES)}" fill="{shade}"/>'
        )
        edge = boundary + dt.timedelta(days=1)
    # The lanes' names and lines.
    for i, (key, _) in enumerate(LANES):
        y = TOP + LANE * i + LANE / 2
        parts.append(
            f'<text x="{LEFT - 8}" y="{y + 5}" text-anchor="end" font-size="14" '
            f'fill="#1a1a1a">{escape(words.lanes[key])}</text>'
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#c7d3df"/>'
        )
    # Years along the bottom.
    base = TOP + LANE * len(LANES)
    for year in range(first.year, last.year + 2):
        day = dt.date(year, 1, 1)
        if first <= day <= last:
            parts.append(
                f'<line x1="{x(day)}" x2="{x(day)}" y1="{TOP}" y2="{base + 4}" '
                f'stroke="#8a99a8"/><text x="{x(day) + 3}" y="{base + 20}" font-size="14" '
                f'fill="#1a1a1a">{year}</text>'
            )
    # Amendments on the top edge.
    for day in amendments:
        if first <= day <= last:
            parts.append(
                f"<g><title>{escape(words.amended)} {escape(words.day(day))}</title>"
                f'<path d="M{x(day) - 6},{TOP - 14} h12 l-6,10 z" fill="#6b3fa0"/></g>'
            )
    # The milestones.
    lane_of = {kind: i for i, (_, kinds) in enumerate(LANES) for kind in kinds}
    for m in milestones:
        lane = lane_of.get(m.kind)
        if lane is None:
            continue
        y = TOP + LANE * lane + LANE / 2
        colour = COLOURS[standing(m, today)]
        label = f"{words.day(m.effective_date)}: {m.title} – {words.status(m)}"
        cx = x(m.effective_date)
        shape = (
            f'<rect x="{cx - 6}" y="{y - 6}" width="12" height="12" fill="{colour}"/>'
            if lane == 3  # decisions: squares
            else f'<circle cx="{cx}" cy="{y}" r="6" fill="{colour}"/>'
        )
        parts.append(f"<g><title>{escape(label)}</title>{shape}</g>")
    # Today.
    if first <= today <= last:
        parts.append(
            f'<line x1="{x(today)}" x2="{x(today)}" y1="{TOP - 4}" y2="{base}" '
            f'stroke="#1a1a1a" stroke-width="2" stroke-dasharray="4 3"/>'
            f'<text x="{x(today) + 4}" y="{TOP - 8}" font-size="14" font-weight="600" '
            f'fill="#1a1a1a">{escape(words.today)}</text>'
        )
    body = "".join(parts)
    return Markup(
        f'<svg class="glance" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="glance-title" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="glance-title">{escape(words.title)}</title>{body}</svg>'
    )
