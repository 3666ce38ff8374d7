"""The agreement's state as its decider keeps it, and the workflow's input, which is that
state plus what the run needs to start (or to go on after a continue-as-new)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from models.agreement import Agreement
from models.effects import Effects
from models.lifecycle import RoundInfo, State
from models.plan import Compact, Decisions, Ending


class Core(Compact):
    """Everything the decider decides from; it holds no token and no secret."""

    agreement: Agreement
    state: State = State.draft
    decisions: Decisions = Field(default_factory=Decisions)
    taken_on: dt.datetime | None = None
    sent_until: dt.datetime | None = None  # every planned email up to here has been handled
    prerequisites: list[str] = Field(default_factory=list)
    rounds: int = 0
    round_open: bool = False  # round number `rounds` runs as a child workflow
    last_round: RoundInfo | None = None
    amendment: Agreement | None = None  # proposed terms while their round runs
    calendar_sequence: int = 0
    event_seq: int = 0
    withdrawal_pending: Ending | None = None
    withdrawn: dict[str, dt.date] = Field(default_factory=dict)  # party: its last day
    ending_told: dt.date | None = None  # the end every party has been told of
    run_periods: int = 0  # periods completed; continue-as-new at each boundary


class AgreementInput(Core):
    """The workflow's input, and what it carries over a continue-as-new."""

    clock_offset_seconds: float = 0.0
    # When the client started it (wall clock); emails due from then on are sent even if the
    # first task runs later. None: from the first task on (simulations, older clients).
    handed_over_at: dt.datetime | None = None
    # Who handed it over (the person signed in, or the command line's account): the
    # event log names them on the agreement's first event. None: older clients.
    created_by: str | None = None
    pending: Effects = Field(default_factory=Effects)  # decided, not yet carried out

    def core(self) -> Core:
        return Core.model_validate({name: getattr(self, name) for name in Core.model_fields})
