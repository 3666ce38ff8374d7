"""One signature round: the first signing of an agreement, or an amendment.

A child of the agreement workflow. Signers act with their personal token (the signing link
of the web interface wraps it); the coordinator records paper signatures and may cancel.
Reminders follow the agreement's cadence up to its cap; at expiry the coordinator is told.
When the round ends, everyone involved gets the outcome, and on completion the
verification record: every event with a time-zone-labelled timestamp, the method, the IP
where known, and the SHA-256 of the signed terms.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import timedelta

from pydantic import Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.store import EventIn
    from models.lifecycle import (
        EmailSpec,
        FailedInfo,
        RoundInfo,
        RoundOutcome,
        SendOutcome,
        SignatureEvent,
        Signer,
        SignerStatus,
    )
    from models.plan import Frozen, Recipient
    from workflows.common import Clock, record, send_email, wait_until


class RoundInput(Frozen):
    agreement_id: str
    round: RoundInfo
    coordinator: Recipient
    others: list[Recipient] = Field(default_factory=list)  # told of the outcome too
    reminder_every_days: int = 7
    max_reminders: int = 3
    clock_offset_seconds: float = 0.0


class SignRequest(Frozen):
    token: str
    ip: str | None = None
    user_agent: str | None = None


class DeclineRequest(Frozen):
    token: str
    reason: str = Field(min_length=1, max_length=2000)
    ip: str | None = None
    user_agent: str | None = None


class PaperSignature(Frozen):
    signer: str  # the signer's email
    signed_on: dt.date
    recorded_by: str


class CancelRequest(Frozen):
    reason: str = Field(min_length=1, max_length=2000)
    by: str


def reject(message: str) -> ApplicationError:
    return ApplicationError(message, type="Rejected", non_retryable=True)


@workflow.defn(name="SignatureRound")
class SignatureRoundWorkflow:
    @workflow.init
    def __init__(self, data: RoundInput) -> None:
        self.data = data
        self.clock = Clock(data.clock_offset_seconds)
        self.round: RoundInfo | None = data.round
        self.changed = False
        self.cancel: CancelRequest | None = None
        self.events_logged = 0

    # The round as it stands -----------------------------------------------------------

    @workflow.query(name="round")
    def get_round(self) -> RoundInfo:
        assert self.round is not None
        return self.round

    def _signer(self, token: str) -> Signer:
        assert self.round is not None
        for signer in self.round.signers:
            if signer.token == token:
                return signer
        raise reject("the signing link is not valid for this round")

    def _turn(self) -> str | None:
        """Sequential mode: the first signer who has not signed."""
        assert self.round is not None
        for signer in self.round.signers:
            if signer.status is not SignerStatus.signed:
                return signer.email
        return None

    def _check_can_sign(self, signer: Signer) -> None:
        assert self.round is not None
        if self.round.outcome is not RoundOutcome.open:
            raise reject(f"the signature round is over ({self.round.outcome.value})")
        if signer.status is SignerStatus.signed:
            raise reject(f"{signer.name} has already signed")
        if signer.status is SignerStatus.declined:
            raise reject(f"{signer.name} has declined")
        if self.round.mode == "sequential" and self._turn() != signer.email:
            raise reject(f"it is not {signer.name}'s turn to sign yet")

    def _replace(self, signer: Signer, **changes: object) -> None:
        assert self.round is not None
        signers = [
            s.model_copy(update=changes) if s.email == signer.email else s
            for s in self.round.signers
        ]
        self.round = self.round.model_copy(update={"signers": signers})

    def _event(self, what: str, signer: Signer | None = None, **fields: object) -> None:
        assert self.round is not None
        event = SignatureEvent(
            at=self.clock.now(),
            signer=signer.email if signer else None,
            name=signer.name if signer else None,
            what=what,
            **fields,
        )
        self.round = self.round.model_copy(update={"events": [*self.round.events, event]})
        self.changed = True

    # What signers and the coordinator do -----------------------------------------------

    @workflow.update(name="open")
    def open(self, request: SignRequest) -> RoundInfo:
        signer = self._signer(request.token)
        if signer.status in (SignerStatus.invited, SignerStatus.waiting):
            self._replace(signer, status=SignerStatus.opened)
        self._event("opened", signer, method="link", ip=request.ip, user_agent=request.user_agent)
        assert self.round is not None
        return self.round

    @open.validator
    def _validate_open(self, request: SignRequest) -> None:
        self._signer(request.token)

    @workflow.update(name="sign")
    def sign(self, request: SignRequest) -> RoundInfo:
        signer = self._signer(request.token)
        self._replace(signer, status=SignerStatus.signed, signed_at=self.clock.now())
        self._event("signed", signer, method="link", ip=request.ip, user_agent=request.user_agent)
        assert self.round is not None
        return self.round

    @sign.validator
    def _validate_sign(self, request: SignRequest) -> None:
        self._check_can_sign(self._signer(request.token))

    @workflow.update(name="decline")
    def decline(self, request: DeclineRequest) -> RoundInfo:
        signer = self._signer(request.token)
        self._replace(signer, status=SignerStatus.declined)
        self._event(
            "declined",
            signer,
            method="link",
            ip=request.ip,
            reason=request.reason,
            user_agent=request.user_agent,
        )
        assert self.round is not None
        return self.round

    @decline.validator
    def _validate_decline(self, request: DeclineRequest) -> None:
        self._check_can_sign(self._signer(request.token))

    def _by_email(self, email: str) -> Signer:
        assert self.round is not None
        for signer in self.round.signers:
            if signer.email.lower() == email.lower():
                return signer
        raise reject(f"{email} is not a signatory of this agreement")

    @workflow.update(name="sign_paper")
    def sign_paper(self, request: PaperSignature) -> RoundInfo:
        signer = self._by_email(request.signer)
        self._replace(signer, status=SignerStatus.signed, signed_at=self.clock.now())
        self._event("signed", signer, method="paper", reason=f"{request.signed_on.isoformat()}")
        assert self.round is not None
        return self.round

    @sign_paper.validator
    def _validate_sign_paper(self, request: PaperSignature) -> None:
        signer = self._by_email(request.signer)
        if self.round is not None and self.round.mode == "sequential":
            # On paper the order is the paper's: any signer may be recorded.
            if self.round.outcome is not RoundOutcome.open:
                raise reject(f"the signature round is over ({self.round.outcome.value})")
            if signer.status is SignerStatus.signed:
                raise reject(f"{signer.name} has already signed")
            return
        self._check_can_sign(signer)
        if request.signed_on > self.clock.now().date():
            raise reject(f"the signing date {request.signed_on} is in the future")

    @workflow.update(name="cancel")
    def cancel_round(self, request: CancelRequest) -> RoundInfo:
        self.cancel = request
        self.changed = True
        assert self.round is not None
        return self.round

    @cancel_round.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self.round is None or self.round.outcome is not RoundOutcome.open:
            raise reject("there is no open signature round to cancel")

    # The round's life -------------------------------------------------------------------

    @workflow.run
    async def run(self, data: RoundInput) -> RoundInfo:
        assert self.round is not None
        first = self.round.signers if self.round.mode == "parallel" else self.round.signers[:1]
        if self.round.method == "link":
            for signer in first:
                self._event("sent", signer, method="link")
            await asyncio.gather(
                *(self._mail(signer_recipient(s), "signature_request", s) for s in first)
            )
        else:
            self._event("started", method="paper")
        last_contact = {s.email: self.clock.now() for s in first}
        every = timedelta(days=data.reminder_every_days)
        while True:
            # Cleared before the work, not before the wait: a decision that arrives while
            # this loop awaits an activity is never lost.
            self.changed = False
            await self._log_events()
            outcome = self._outcome()
            if outcome is not None:
                break
            if self.round.method == "link":
                # A sequential round invites the next signer as soon as it is their turn.
                for signer in self._awaiting():
                    if signer.status is SignerStatus.waiting:
                        last_contact[signer.email] = self.clock.now()
                        self._replace(signer, status=SignerStatus.invited)
                        self._event("sent", signer, method="link")
                        await self._mail(signer_recipient(signer), "signature_request", signer)
            wake = self.round.expires_at
            if self.round.method == "link":
                for signer in self._awaiting():
                    if signer.reminders < data.max_reminders:
                        wake = min(wake, last_contact[signer.email] + every)
            if await wait_until(self.clock, lambda: self.changed, wake):
                continue
            for signer in self._awaiting():
                since = last_contact[signer.email]
                if signer.reminders < data.max_reminders and self.clock.now() >= since + every:
                    self._replace(signer, reminders=signer.reminders + 1)
                    last_contact[signer.email] = self.clock.now()
                    await self._mail(
                        signer_recipient(signer),
                        "signature_reminder",
                        signer,
                        suffix=str(signer.reminders + 1),
                    )
                    self._event("reminded", signer)
        reason = self.cancel.reason if self.cancel else _decline_reason(self.round)
        self.round = self.round.model_copy(update={"outcome": outcome, "reason": reason})
        self._event(outcome.value)
        await self._log_events()
        await self._announce(outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.round

    def _awaiting(self) -> list[Signer]:
        assert self.round is not None
        if self.round.mode == "sequential":
            turn = self._turn()
            return [s for s in self.round.signers if s.email == turn]
        return [
            s for s in self.round.signers if s.status in (SignerStatus.invited, SignerStatus.opened)
        ]

    def _outcome(self) -> RoundOutcome | None:
        assert self.round is not None
        if self.cancel is not None:
            return RoundOutcome.cancelled
        if any(s.status is SignerStatus.declined for s in self.round.signers):
            return RoundOutcome.declined
        if all(s.status is SignerStatus.signed for s in self.round.signers):
            return RoundOutcome.completed
        if self.clock.now() >= self.round.expires_at:
            return RoundOutcome.expired
        return None

    async def _announce(self, outcome: RoundOutcome) -> None:
        assert self.round is not None
        signers = [signer_recipient(s) for s in self.round.signers]
        coordinator = self.data.coordinator
        if outcome is RoundOutcome.completed:
            people = [*self.data.others, *signers, coordinator]
            template = "signature_completed"
        elif outcome is RoundOutcome.expired:
            people, template = [coordinator], "signature_expired"
        else:
            people = [*signers, coordinator]
            template = f"signature_{outcome.value}"
        seen: set[str] = set()
        jobs = []
        for person in people:
            if person.email in seen:
                continue
            seen.add(person.email)
            jobs.append(self._mail(person, template, None))
        await asyncio.gather(*jobs)

    async def _mail(
        self, to: Recipient, template: str, signer: Signer | None, suffix: str = "0"
    ) -> None:
        assert self.round is not None
        spec = EmailSpec(
            key=f"{self.data.agreement_id}:round-{self.round.number}:{template}:{suffix}:{to.email}",
            agreement_id=self.data.agreement_id,
            terms_sha256=self.round.terms_sha256,
            template=template,
            to=to,
            link_token=signer.token if signer is not None else None,
            round=self.round,
            reason=self.round.reason
            or (self.cancel.reason if self.cancel else None)
            or _decline_reason(self.round),
            planned_at=self.clock.now(),
        )
        result = await send_email(spec)
        if result.outcome is SendOutcome.failed and to.email != self.data.coordinator.email:
            await send_email(
                EmailSpec(
                    key=f"{self.data.agreement_id}:event:send_failed:{to.email}",
                    agreement_id=spec.agreement_id,
                    terms_sha256=spec.terms_sha256,
                    template="send_failed",
                    to=self.data.coordinator,
                    failed=_failed(to.email, result.subject, result.error),
                    planned_at=self.clock.now(),
                )
            )

    async def _log_events(self) -> None:
        assert self.round is not None
        new = self.round.events[self.events_logged :]
        self.events_logged = len(self.round.events)
        for index, event in enumerate(new, start=self.events_logged - len(new)):
            await record(
                EventIn(
                    event_key=f"{workflow.info().workflow_id}:{index}",
                    agreement_id=self.data.agreement_id,
                    at=event.at,
                    kind=f"signature.{event.what}",
                    actor=event.signer,
                    summary=f"round {self.round.number}: {event.what}"
                    + (f" by {event.name}" if event.name else "")
                    + (f" ({event.reason})" if event.reason else ""),
                    data={"method": event.method, "ip": event.ip, "round": self.round.number},
                )
            )


def signer_recipient(signer: Signer) -> Recipient:
    return Recipient(
        email=signer.email,
        name=signer.name,
        party=signer.party,
        role="signatory",
        language=signer.language,
    )


def _decline_reason(info: RoundInfo) -> str | None:
    for event in reversed(info.events):
        if event.what == "declined" and event.signer is not None:
            return event.reason
    return None


def _failed(to: str, subject: str, error: str | None) -> FailedInfo:
    return FailedInfo(to=to, subject=subject, error=error or "")
