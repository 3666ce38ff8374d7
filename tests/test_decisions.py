"""Decisions on a running agreement and its signature rounds, through the same Temporal
updates the interfaces use: each one checked against the terms and the state; a rejection
carries its reason and changes nothing. Real workflows on the time-skipping server, a real
SMTP sink on loopback, a real SQLite database."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from agreements.ops import round_tokens
from agreements.simulate import started
from emails.sink import read_mail
from models.agreement import Agreement, SigningMethod, SigningMode
from models.lifecycle import RoundInfo, SignerStatus, State
from models.loader import load_agreement
from models.plan import EndingKind, MilestoneKind, MilestoneState
from models.prerequisites import CHECKLIST
from models.schedule import dates
from workflows.agreement import (
    AgreementWorkflow,
    Amendment,
    ConfirmPrerequisites,
    RenewalRequest,
    ReportDecision,
    Snapshot,
    StartSigning,
    TerminationRequest,
)
from workflows.signing import (
    CancelRequest,
    DeclineRequest,
    PaperSignature,
    SignatureRoundWorkflow,
    SignRequest,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> Agreement:
    return load_agreement(EXAMPLES / f"{name}.toml")


@dataclass
class Running:
    env: WorkflowEnvironment
    handle: WorkflowHandle[Any, Any]
    offset: float
    mail: Path

    async def now(self) -> dt.datetime:
        moment = await self.env.get_current_time() + dt.timedelta(seconds=self.offset)
        return moment.astimezone(dates.STOCKHOLM)

    async def until(self, moment: dt.datetime) -> None:
        wait = moment - await self.now()
        if wait > dt.timedelta(0):
            await self.env.sleep(wait)

    async def state(self) -> Snapshot:
        result: Snapshot = await self.handle.query(AgreementWorkflow.get_state)
        return result

    async def update(self, name: str, request: Any) -> Snapshot:
        result: Snapshot = await self.handle.execute_update(name, request, result_type=Snapshot)
        return result

    async def round(self) -> tuple[WorkflowHandle[Any, Any], RoundInfo]:
        state = await self.state()
        assert state.round_workflow_id is not None
        handle = self.env.client.get_workflow_handle(state.round_workflow_id)
        info: RoundInfo = await handle.query(SignatureRoundWorkflow.get_round)
        return handle, info

    async def delivered(self, template: str, count: int) -> list[str]:
        """The recipients of `template`, once `count` have reached the sink (emails go out
        from activities after the update has answered)."""
        for _ in range(200):
            found = self.sent(template)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        return self.sent(template)

    async def settled(self, state: State) -> Snapshot:
        for _ in range(100):
            snapshot = await self.state()
            if snapshot.state is state:
                return snapshot
            await asyncio.sleep(0.05)
        return await self.state()

    def sent(self, template: str) -> list[str]:
        return [
            str(m["X-Sink-Recipient"])
            for m in read_mail(self.mail)
            if m["X-Agreement-Template"] == template
        ]


@asynccontextmanager
async def running(agreement: Agreement, at: dt.datetime, tmp_path: Path) -> AsyncIterator[Running]:
    """The agreement's workflow started as a draft at `at` (on the agreement's own dates)."""
    async with started(agreement, at, tmp_path) as (env, handle, offset):
        yield Running(env, handle, offset, tmp_path / "mail")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dates.STOCKHOLM)


async def rejected(action: Any, *args: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await action(*args)
    return str(caught.value.cause)


async def test_signing_needs_the_prerequisites_and_a_draft(tmp_path: Path) -> None:
    agreement = example("planteringen")
    async with running(agreement, local(2024, 4, 17, 8, 0), tmp_path) as run:
        reason = await rejected(run.update, "start_signing", StartSigning())
        assert "confirm the IOP prerequisites first: no-market" in reason
        assert (await run.state()).state is State.draft
        reason = await rejected(
            run.update, "confirm_prerequisites", ConfirmPrerequisites(keys=["no-markets"])
        )
        assert "unknown prerequisite no-markets" in reason
        await run.update("confirm_prerequisites", ConfirmPrerequisites(keys=list(CHECKLIST)))
        state = await run.update("start_signing", StartSigning())
        assert state.state is State.signing
        reason = await rejected(run.update, "start_signing", StartSigning())
        assert "starts from a draft" in reason
        # Decisions about a term need a signed agreement.
        reason = await rejected(
            run.update, "decide_renewal", RenewalRequest(party="sff", renew=True)
        )
        assert "not signed yet" in reason


async def test_signature_tokens_and_sequential_order(tmp_path: Path) -> None:
    base = example("planteringen")
    agreement = base.model_copy(
        update={"signing": base.signing.model_copy(update={"mode": SigningMode.sequential})}
    )
    async with running(agreement, local(2024, 4, 17, 8, 0), tmp_path) as run:
        await run.update("confirm_prerequisites", ConfirmPrerequisites(keys=list(CHECKLIST)))
        await run.update("start_signing", StartSigning())
        round_handle, info = await run.round()
        tokens = await round_tokens(run.env.client, round_handle.id)
        first, second = info.signers[0], info.signers[1]
        # Only the first signer is invited in sequential mode.
        assert await run.delivered("signature_request", 1) == [first.email]
        reason = await rejected(
            round_handle.execute_update, SignatureRoundWorkflow.sign, SignRequest(token="forged")
        )
        assert "not valid for this round" in reason
        reason = await rejected(
            round_handle.execute_update,
            SignatureRoundWorkflow.sign,
            SignRequest(token=tokens[second.email]),
        )
        assert "not Patrik Karlsson's turn" in reason
        opened = await round_handle.execute_update(
            SignatureRoundWorkflow.open, SignRequest(token=tokens[first.email], ip="192.0.2.1")
        )
        assert (opened.signer, opened.status) == (first.email, SignerStatus.opened)
        # "Opened" is recorded once: a second one is refused and changes nothing.
        reason = await rejected(
            round_handle.execute_update,
            SignatureRoundWorkflow.open,
            SignRequest(token=tokens[first.email], ip="192.0.2.1"),
        )
        assert "has already opened" in reason
        signed = await round_handle.execute_update(
            SignatureRoundWorkflow.sign, SignRequest(token=tokens[first.email], ip="192.0.2.1")
        )
        assert (signed.number, signed.outcome.value, signed.status) == (
            1,
            "open",
            SignerStatus.signed,
        )
        reason = await rejected(
            round_handle.execute_update,
            SignatureRoundWorkflow.sign,
            SignRequest(token=tokens[first.email]),
        )
        assert "has already signed" in reason
        reason = await rejected(
            round_handle.execute_update,
            SignatureRoundWorkflow.sign_paper,
            PaperSignature(
                signer="nobody@example.se", signed_on=dt.date(2024, 4, 17), recorded_by="c"
            ),
        )
        assert "is not a signatory" in reason
        # Now it is the second signer's turn, and only theirs.
        assert await run.delivered("signature_request", 2) == [first.email, second.email]
        _, info = await run.round()
        assert [s.status.value for s in info.signers[:3]] == ["signed", "invited", "waiting"]
        assert [e.what for e in info.events if e.signer == first.email] == [
            "sent",
            "opened",
            "signed",
        ]
        assert info.events[1].what == "opened" and info.events[1].ip is None  # shown: no IP
        # Paper: a future date is refused in sequential mode too; the date on the paper is
        # the signing date, and who entered it is kept.
        reason = await rejected(
            round_handle.execute_update,
            SignatureRoundWorkflow.sign_paper,
            PaperSignature(signer=second.email, signed_on=dt.date(2099, 12, 31), recorded_by="c"),
        )
        assert "is in the future" in reason
        await round_handle.execute_update(
            SignatureRoundWorkflow.sign_paper,
            PaperSignature(signer=second.email, signed_on=dt.date(2024, 4, 15), recorded_by="c"),
        )
        _, info = await run.round()
        paper = info.signers[1]
        assert paper.signed_on == dt.date(2024, 4, 15)
        assert paper.signed_at is not None and paper.signed_at.date() == dt.date(2024, 4, 15)
        event = next(e for e in info.events if e.method == "paper")
        assert (event.at.date(), event.signed_on, event.recorded_by) == (
            dt.date(2024, 4, 15),
            dt.date(2024, 4, 15),
            "c",
        )


async def test_reminders_expiry_and_restart(tmp_path: Path) -> None:
    agreement = example("planteringen")
    async with running(agreement, local(2024, 4, 17, 8, 0), tmp_path) as run:
        await run.update("confirm_prerequisites", ConfirmPrerequisites(keys=list(CHECKLIST)))
        await run.update("start_signing", StartSigning())
        round_handle, info = await run.round()
        tokens = await round_tokens(run.env.client, round_handle.id)
        for signer in info.signers[:5]:
            await round_handle.execute_update(
                SignatureRoundWorkflow.sign, SignRequest(token=tokens[signer.email])
            )
        last = info.signers[5]
        # Reminded every 7 days, at most 3 times; the round expires after 30 days.
        await run.until(local(2024, 5, 18, 9, 0))
        assert run.sent("signature_reminder") == [last.email] * 3
        assert run.sent("signature_expired") == [agreement.coordinator.email]
        state = await run.state()
        assert state.state is State.draft
        assert state.round is not None and state.round.outcome.value == "expired"
        # The coordinator restarts: a new round, new links for everyone.
        state = await run.update("start_signing", StartSigning())
        assert state.round_workflow_id is not None and state.round_workflow_id.endswith("-2")
        again, _ = await run.round()
        new = await round_tokens(run.env.client, again.id)
        assert len(new) == len(tokens) == 6 and set(new.values()).isdisjoint(tokens.values())


async def test_cancel_tells_everyone_involved(tmp_path: Path) -> None:
    agreement = example("planteringen")
    async with running(agreement, local(2024, 4, 17, 8, 0), tmp_path) as run:
        await run.update("confirm_prerequisites", ConfirmPrerequisites(keys=list(CHECKLIST)))
        await run.update("start_signing", StartSigning())
        round_handle, info = await run.round()
        tokens = await round_tokens(run.env.client, round_handle.id)
        await round_handle.execute_update(
            SignatureRoundWorkflow.sign, SignRequest(token=tokens[info.signers[0].email])
        )
        await round_handle.execute_update(
            SignatureRoundWorkflow.cancel_round, CancelRequest(reason="Fel belopp", by="c")
        )
        await round_handle.result()
        told = set(run.sent("signature_cancelled"))
        assert told == {s.email for s in info.signers} | {agreement.coordinator.email}
        # The round is over: a late decline reaches nothing and changes nothing.
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            await round_handle.execute_update(
                SignatureRoundWorkflow.decline,
                DeclineRequest(token=tokens[info.signers[1].email], reason="x"),
            )


async def test_decisions_are_checked_against_terms_and_state(tmp_path: Path) -> None:
    base = example("helsingborg-inva-sam")
    agreement = base.model_copy(
        update={"signing": base.signing.model_copy(update={"signed": dt.date(2024, 4, 26)})}
    )
    async with running(agreement, local(2026, 2, 10, 9, 0), tmp_path) as run:
        state = await run.settled(State.active)
        assert state.state is State.active  # imported as signed, taken on mid-term
        before = state
        # The last notice deadline (2026-01-30, for the term ending 2026-04-30) has passed.
        reason = await rejected(
            run.update, "decide_renewal", RenewalRequest(party="helsingborgshem", renew=False)
        )
        assert "no renewal decision is open" in reason
        reason = await rejected(
            run.update, "decide_renewal", RenewalRequest(party="nobody", renew=False)
        )
        assert "not a signing party" in reason
        reason = await rejected(
            run.update, "record_report", ReportDecision(report="delrapport", occurrence=9)
        )
        assert "no report delrapport number 9" in reason
        reason = await rejected(
            run.update,
            "terminate",
            TerminationRequest(kind=EndingKind.termination, party="amf", reason="x"),
        )
        assert "no termination with notice" in reason
        reason = await rejected(
            run.update,
            "terminate",
            TerminationRequest(kind=EndingKind.withdrawal, party="amf", reason="x"),
        )
        assert "no withdrawal rule" in reason
        assert await run.state() == before  # nothing changed
        # A report on time is accepted once.
        await run.update("record_report", ReportDecision(report="delrapport", occurrence=2))
        reason = await rejected(
            run.update, "record_report", ReportDecision(report="delrapport", occurrence=2)
        )
        assert "already recorded" in reason


async def test_taken_on_mid_term_sends_only_what_is_ahead(tmp_path: Path) -> None:
    base = example("helsingborg-inva-sam")
    agreement = base.model_copy(
        update={
            "signing": base.signing.model_copy(
                update={"signed": dt.date(2024, 4, 26), "method": SigningMethod.paper}
            )
        }
    )
    async with running(agreement, local(2026, 11, 24, 9, 0), tmp_path) as run:
        # Nothing is sent for what is over; the delrapport due Monday 30 November is still
        # reminded on the day.
        await run.until(local(2026, 11, 30, 9, 0))
        mail = read_mail(run.mail)
        assert [m["X-Agreement-Template"] for m in mail] == ["report_reminder"]
        assert mail[0]["X-Agreement-Planned-At"].startswith("2026-11-30T08:00")


async def test_amendment_runs_its_own_round_and_replans(tmp_path: Path) -> None:
    base = example("lund-radrum")
    agreement = base.model_copy(
        update={"signing": base.signing.model_copy(update={"signed": dt.date(2019, 6, 10)})}
    )
    # Seed 003: from 2020 Kultur- och fritidsförvaltningen pays instead of Socialförvaltningen.
    moved = [
        c.model_copy(update={"payer": "kff"}) if c.payer == "sof" else c
        for c in agreement.contributions
    ]
    amended = agreement.model_copy(update={"contributions": moved})
    async with running(agreement, local(2019, 12, 2, 9, 0), tmp_path) as run:
        await run.settled(State.active)
        reason = await rejected(
            run.update,
            "amend",
            Amendment(agreement=amended.model_copy(update={"id": "other"})),
        )
        assert "is for other" in reason
        state = await run.update("amend", Amendment(agreement=amended))
        assert state.state is State.active  # the agreement runs on while the round does
        round_handle, info = await run.round()
        assert info.purpose == "amendment" and info.method == "paper"
        for signer in info.signers:
            await round_handle.execute_update(
                SignatureRoundWorkflow.sign_paper,
                PaperSignature(
                    signer=signer.email, signed_on=dt.date(2019, 12, 2), recorded_by="c"
                ),
            )
        await round_handle.result()
        for _ in range(100):
            state = await run.state()
            if state.terms_sha256 == info.terms_sha256:
                break
            await asyncio.sleep(0.05)
        assert state.terms_sha256 == info.terms_sha256
        upcoming: list[MilestoneState] = await run.handle.query(AgreementWorkflow.get_upcoming, 400)
        invoices = [m for m in upcoming if m.kind is MilestoneKind.invoice]
        assert invoices and {m.payer for m in invoices} == {"kff"}
        completed = run.sent("signature_completed")
        assert agreement.coordinator.email in completed


async def test_termination_with_notice_ends_after_three_months(tmp_path: Path) -> None:
    base = example("lund-radrum")
    agreement = base.model_copy(
        update={"signing": base.signing.model_copy(update={"signed": dt.date(2019, 6, 10)})}
    )
    async with running(agreement, local(2020, 3, 16, 9, 0), tmp_path) as run:
        await run.settled(State.active)
        state = await run.update(
            "terminate",
            TerminationRequest(
                kind=EndingKind.termination, party="im", reason="Väsentligt ändrade förhållanden"
            ),
        )
        assert state.state is State.ending
        assert state.end == dt.date(2020, 6, 16)
        reason = await rejected(
            run.update,
            "terminate",
            TerminationRequest(kind=EndingKind.rescission, party="sof", reason="x"),
        )
        assert "already ends (termination)" in reason
        told = await run.delivered("agreement_ended", 4)
        assert agreement.coordinator.email in told
        await run.until(local(2020, 6, 18, 9, 0))
        assert (await run.state()).state is State.ended


async def test_postponed_report_moves_its_reminders(tmp_path: Path) -> None:
    base = example("lund-radrum")
    agreement = base.model_copy(
        update={"signing": base.signing.model_copy(update={"signed": dt.date(2019, 6, 10)})}
    )
    async with running(agreement, local(2020, 1, 20, 9, 0), tmp_path) as run:
        await run.settled(State.active)
        reason = await rejected(
            run.update,
            "record_report",
            ReportDecision(report="halvarsrapport", occurrence=1, new_due=dt.date(2020, 1, 15)),
        )
        assert "must move the due date after 2020-01-31" in reason
        await run.update(
            "record_report",
            ReportDecision(report="halvarsrapport", occurrence=1, new_due=dt.date(2020, 2, 28)),
        )
        upcoming: list[MilestoneState] = await run.handle.query(AgreementWorkflow.get_upcoming, 60)
        due = [m for m in upcoming if m.report == "halvarsrapport" and m.occurrence == 1]
        assert [m.effective_date for m in due] == [dt.date(2020, 2, 28)]
        # No overdue notice after the old date; reminders 30, 7 and 0 days before the new one.
        await run.until(local(2020, 2, 28, 9, 0))
        assert not run.sent("report_overdue")
        reminders = [
            str(m["X-Agreement-Planned-At"])[:10]
            for m in read_mail(run.mail)
            if m["X-Agreement-Template"] == "report_reminder"
        ]
        assert reminders == ["2020-01-29", "2020-02-21", "2020-02-28"]
