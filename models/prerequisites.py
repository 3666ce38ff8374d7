"""The IOP prerequisite checklist a draft confirms before signing can start.

Taken from Helsingborg social services' guidelines for IOP (seed 002, "Punkter vi
behöver tänka på innan vi skriver ett IOP-avtal" and the follow-up duty), which
match the grounds listed in seeds 000, 003 and 004.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChecklistItem:
    key: str
    sv: str
    en: str


_ITEMS = (
    ChecklistItem(
        "no-market",
        "Det finns ingen marknad eller konkurrenssituation att vårda (annars: upphandling).",
        "There is no market or competition to protect (otherwise: public procurement).",
    ),
    ChecklistItem(
        "not-an-order",
        "Avtalet är ingen beställning av en tjänst.",
        "The agreement is not an order for a service.",
    ),
    ChecklistItem(
        "idea-driven",
        "Det bygger på ett idéburet initiativ och ett behov som parterna identifierat gemensamt.",
        "It rests on a non-profit initiative and a need the parties identified together.",
    ),
    ChecklistItem(
        "all-contribute",
        "Alla parter bidrar med resurser, i pengar eller andra insatser.",
        "Every party contributes resources, in money or in kind.",
    ),
    ChecklistItem(
        "budget-plan",
        "Det finns en långsiktig budgetplan och utrymme att bidra med kompetens och resurser.",
        "There is a long-term budget plan and room to contribute skills and resources.",
    ),
    ChecklistItem(
        "follow-up-plan",
        "Det finns en gemensam plan för uppföljning och utvärdering av effekterna.",
        "There is a joint plan to follow up and evaluate the effects.",
    ),
    ChecklistItem(
        "trust",
        "Avtalet bygger på tillit, inte på kontroll och sanktioner.",
        "The agreement rests on trust, not on control and sanctions.",
    ),
)

CHECKLIST: dict[str, ChecklistItem] = {item.key: item for item in _ITEMS}
