"""The agreement at a glance: the SVG drawn on the server is well-formed, has an accessible
name, puts each milestone in its lane with the colour of where it stands, marks today and
the amendments, and draws the periods as bands."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from agreements.web.picture import COLOURS, Words, standing, timeline_svg
from models.agreement import DateRule
from models.plan import MilestoneKind, MilestoneState, MilestoneStatus

SVG = "{http://www.w3.org/2000/svg}"
TODAY = dt.date(2027, 6, 15)


def m(kind: MilestoneKind, day: dt.date, status: MilestoneStatus, title: str) -> MilestoneState:
    return MilestoneState(
        id=title,
        kind=kind,
        date=day,
        effective_date=day,
        rule=DateRule.forward,
        title=title,
        status=status,
    )


LANES = {
    "money": "Pengar",
    "reports": "Rapporter",
    "meetings": "Möten",
    "decisions": "Beslut",
    "end": "Slut",
}
WORDS = Words(
    title="IOP Test i överblick",
    lanes=LANES,
    today="I dag",
    amended="Ändrat",
    status=lambda x: x.status.value,
    day=lambda d: d.isoformat(),
)
D = dt.date
K = MilestoneKind
S = MilestoneStatus


def markers(root: ET.Element) -> dict[str, ET.Element]:
    """Each marker's shape by its title ("date: what – status", or the amendment's)."""
    found = {}
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        shape = g.find(f"{SVG}circle")
        if shape is None:
            shape = g.find(f"{SVG}rect")
        if shape is None:
            shape = g.find(f"{SVG}path")
        assert title is not None and title.text and shape is not None
        what = title.text.split(": ", 1)[-1].split(" – ")[0]
        found[what] = shape
    return found


def test_the_picture() -> None:
    milestones = [
        m(K.invoice, D(2027, 1, 31), S.paid, "Utbetalning 1"),
        m(K.invoice, D(2027, 5, 31), S.to_invoice, "Utbetalning 2"),
        m(K.report_due, D(2027, 3, 31), S.overdue, "Rapport <1>"),
        m(K.meeting, D(2027, 9, 1), S.planned, "Styrgrupp"),
        m(K.notice_deadline, D(2027, 10, 1), S.open, "Uppsägning"),
        m(K.period_end, D(2027, 12, 31), S.planned, "Period 1 slut"),
        m(K.agreement_end, D(2028, 12, 31), S.planned, "Slut"),
    ]
    svg = timeline_svg(milestones, D(2027, 1, 1), D(2028, 12, 31), TODAY, WORDS, [D(2027, 4, 2)])
    root = ET.fromstring(str(svg))  # well-formed, with the title's "<" escaped
    assert root.get("role") == "img" and root.get("aria-labelledby") == "glance-title"
    name = root.find(f"{SVG}title")
    assert name is not None and name.text == "IOP Test i överblick"
    shapes = markers(root)
    assert shapes["Utbetalning 1"].get("fill") == COLOURS["done"]
    assert shapes["Utbetalning 2"].get("fill") == COLOURS["overdue"]  # not invoiced in time
    assert shapes["Rapport <1>"].get("fill") == COLOURS["overdue"]
    assert shapes["Styrgrupp"].get("fill") == COLOURS["coming"]
    assert "Ändrat 2027-04-02" in shapes  # the amendment on the top edge
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"I dag", "2027", "2028", *LANES.values()} <= texts
    shades = ("#eef3f8", "#dfe8f1")
    assert len([r for r in root.findall(f"{SVG}rect") if r.get("fill") in shades]) == 2
    # Lanes, top to bottom: money, reports, meetings, decisions.
    y = {k: float(v.get("cy") or v.get("y") or 0) for k, v in shapes.items()}
    assert y["Utbetalning 1"] < y["Rapport <1>"] < y["Styrgrupp"] < y["Uppsägning"]


def test_where_a_milestone_stands() -> None:
    day = D(2027, 6, 1)
    assert standing(m(K.invoice, day, S.invoiced, "x"), TODAY) == "overdue"
    assert standing(m(K.invoice, TODAY, S.invoiced, "x"), TODAY) == "done"
    assert standing(m(K.meeting, day, S.passed, "x"), TODAY) == "passed"
    assert standing(m(K.meeting, day, S.held, "x"), TODAY) == "done"
