"""Histories recorded from the examples' whole lives (tests/histories, written by
`python -m tests.record_histories`) replay against today's workflow code: a change that
would break agreements already running fails here, not in production."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from agreements.simulate import simulate
from models.agreement import Agreement
from models.loader import load_agreement
from worker import WORKFLOWS, workflow_runner

HISTORIES = Path(__file__).resolve().parent / "histories"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES = sorted(HISTORIES.glob("*.json"))


def test_every_example_has_recorded_histories() -> None:
    names = {path.name.split(".")[0] for path in FILES}
    assert names == {path.stem for path in EXAMPLES.glob("*.toml")}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def ten_years() -> Agreement:
    base = load_agreement(EXAMPLES / "helsingborg-inva-sam.toml")
    term = base.term.model_copy(update={"max_total_months": 120})
    return base.model_copy(update={"term": term})


async def test_a_ten_period_life_continues_as_new_with_bounded_history(
    tmp_path: Path,
) -> None:
    """Each period boundary starts a fresh run carrying the state: no run grows with the
    agreement's age. Bound: 600 events per run (a year of seed 000 is about 330)."""
    histories: list[WorkflowHistory] = []
    sent, state = await simulate(ten_years(), workdir=tmp_path, histories=histories)
    assert state.end == dt.date(2034, 4, 30)
    runs = [h for h in histories if h.workflow_id == "agreement-helsingborg-inva-sam"]
    assert len(runs) == 10
    assert max(len(h.events) for h in runs) < 600
    # Every year's invoice went out, once, across the runs.
    invoices = [e for e in sent if e.template == "invoice_reminder"]
    assert len({e.key for e in invoices}) == len(invoices) == 2 * 2 * 10 - 2
