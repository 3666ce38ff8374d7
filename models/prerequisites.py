"""The IOP prerequisite checklist a draft confirms before signing can start.

Taken from Helsingborg social services' guidelines for IOP (seed 002, "Punkter vi
behöver tänka på innan vi skriver ett IOP-avtal" and the follow-up duty), which
match the grounds listed in seeds 000, 003 and 004.
"""

from __future__ import annotations

from dataclasses import dataclass

from i18n import N_


@dataclass(frozen=True)
class ChecklistItem:
    key: str  # stable: kept in the terms (`prerequisites`) and in decisions
    text: str  # what is confirmed, a message of the catalog (i18n.text translates it)


_ITEMS = (
    ChecklistItem(
        "no-market",
        N_("There is no market or competition to protect (otherwise: public procurement)."),
    ),
    ChecklistItem(
        "not-an-order",
        N_("The agreement is not an order for a service."),
    ),
    ChecklistItem(
        "idea-driven",
        N_("It rests on a non-profit initiative and a need the parties identified together."),
    ),
    ChecklistItem(
        "all-contribute",
        N_("Every party contributes resources, in money or in kind."),
    ),
    ChecklistItem(
        "budget-plan",
        N_("There is a long-term budget plan and room to contribute skills and resources."),
    ),
    ChecklistItem(
        "follow-up-plan",
        N_("There is a joint plan to follow up and evaluate the effects."),
    ),
    ChecklistItem(
        "trust",
        N_("The agreement rests on trust, not on control and sanctions."),
    ),
)

CHECKLIST: dict[str, ChecklistItem] = {item.key: item for item in _ITEMS}
