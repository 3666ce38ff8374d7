"""One signature round: the first signing of an agreement, or an amendment.

A child of the agreement workflow. Signers act with their personal token (the signing link
of the web interface wraps it); the coordinator records paper signatures and may cancel.
The tokens come in `RoundInput.tokens` and never leave the round: no query or answer
carries one, and the round as shown (query, result) carries no IP either. Every action is
checked by a validator first, so a refused one (a forged link, a second "opened", a turn
that is not theirs) writes nothing to the history; every answer is a small `RoundAnswer`.
Reminders follow the agreement's cadence up to its cap; at expiry the coordinator is told.
Each signer gets a receipt when they have signed (on a link or on paper): what they signed
and what happens next; the signer whose signature completes the round gets the completion
email instead, at once. When the round ends, everyone involved gets the outcome, and on
completion the verification record: every event with a time-zone-labelled timestamp, the
method, the IP where known, and the SHA-256 of the signed terms.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import ProviderActivities
    from models.effects import EventIn
    from models.lifecycle import (
        EmailSpec,
        FailedInfo,
        ProviderCollect,
        ProviderStart,
        RecordRequest,
        RoundAnswer,
        RoundInfo,
        RoundOutcome,
        SendOutcome,
        SendResult,
        SignatureEvent,
        Signer,
        SignerStatus,
    )
    from models.plan import Frozen, Recipient
    from models.schedule.dates import STOCKHOLM
    from workflows.common import (
        Clock,
        count_decision,
        record,
        record_all,
        sealed_record,
        send_email,
        send_emails,
        wait_until,
    )

MAX_TOKEN = 200
MAX_IP = 64
MAX_USER_AGENT = 300
MAX_REASON = 2000
MAX_NAME = 320  # an email address, or who recorded something
# The signing provider: each call bounded; a provider away is asked again with backoff for up
# to a day, and asked now and then without a callback (one may be lost).
PROVIDER_TIMEOUT = timedelta(seconds=60)
PROVIDER_DEADLINE = timedelta(days=1)
PROVIDER_LOOK = timedelta(minutes=15)
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)


def _cut(limit: int) -> Any:
    """Shorten a string to `limit` characters: what a browser or proxy sends is recorded
    as far as it is useful, and never refuses a signature."""
    return BeforeValidator(lambda v: v[:limit] if isinstance(v, str) else v)


Ip = Annotated[str | None, _cut(MAX_IP)]
UserAgent = Annotated[str | None, _cut(MAX_USER_AGENT)]


class RoundInput(Frozen):
    agreement_id: str
    round: RoundInfo
    tokens: dict[str, str] = Field(default_factory=dict)  # signer email -> personal token
    coordinator: Recipient
    others: list[Recipient] = Field(default_factory=list)  # told of the outcome too
    reminder_every_days: int = 7
    max_reminders: int = 3
    clock_offset_seconds: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _tokens_on_signers(cls, data: Any) -> Any:
        """A round started before the tokens moved out of `Signer` carries each on its
        signer: take them from there, so such a round goes on working."""
        if not isinstance(data, dict) or data.get("tokens"):
            return data
        round_ = data.get("round")
        signers = round_.get("signers") if isinstance(round_, dict) else None
        if not isinstance(signers, list):
            return data
        tokens = {
            s["email"]: s["token"]
            for s in signers
            if isinstance(s, dict) and isinstance(s.get("email"), str)
            if isinstance(s.get("token"), str)
        }
        return {**data, "tokens": tokens} if tokens else data


class SignRequest(Frozen):
    token: str = Field(max_length=MAX_TOKEN)
    ip: Ip = None
    # In the update's input in history and in the event's trace (the coordinator's page),
    # shown nowhere else.
    user_agent: UserAgent = None


class DeclineRequest(Frozen):
    token: str = Field(max_length=MAX_TOKEN)
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    ip: Ip = None
    user_agent: UserAgent = None


class PaperSignature(Frozen):
    signer: str = Field(max_length=MAX_NAME)  # the signer's email
    signed_on: dt.date  # the date on the paper: never in the future
    recorded_by: str = Field(min_length=1, max_length=MAX_NAME)
    # The scanned signed copy, kept in the document store: its hash goes into the round's
    # record (the pages require one; the API takes a paper signature without).
    scan_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    scan_name: str | None = Field(default=None, max_length=200)


class CancelRequest(Frozen):
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    by: str = Field(max_length=MAX_NAME)


def reject(code: str, message: str, **params: str | None) -> ApplicationError:
    """A refusal for the client, as the agreement's (workflows/agreement.py `reject`): the
    English message, then in the details its stable code and what it names."""
    count_decision("refused")
    return ApplicationError(message, code, params, type="Rejected", non_retryable=True)


def expect(request: object, kind: type) -> None:
    """Refuse what is not the request an action takes (a JSON null decodes to None)."""
    if not isinstance(request, kind):
        raise reject("bad-request", f"not a {kind.__name__}", request=kind.__name__)


@workflow.defn(name="SignatureRound")
class SignatureRoundWorkflow:
    @workflow.init
    def __init__(self, data: RoundInput) -> None:
        self.data = data
        self.clock = Clock(data.clock_offset_seconds)
        self.round: RoundInfo = data.round
        self.email_of = {token: email for email, token in data.tokens.items()}
        self.changed = False
        self.cancel: CancelRequest | None = None
        self.events_logged = 0
        self.last_contact: dict[str, dt.datetime] = {}
        self.receipted: set[str] = set()  # signers whose signature has had its receipt
        self.receipts: list[asyncio.Task[None]] = []  # receipts on their way
        # The user agent of each event a signer's request made (by its index in the round's
        # events), for the event log's trace only: never part of the round as shown.
        self.user_agents: dict[int, str] = {}
        # A round through the signing provider: a callback (or the clock) says look again;
        # what the provider ended it with, when it did.
        self.provider_changed = False
        self.provider_outcome: RoundOutcome | None = None
        self.provider_reason: str | None = None

    # The round as it stands -----------------------------------------------------------

    @workflow.query(name="round")
    def get_round(self) -> RoundInfo:
        """The round as anyone may see it: no token, no IP."""
        return self.round.public()

    @workflow.query(name="signer")
    def signer(self, token: str) -> Signer | None:
        """The signer whose personal token this is (as the signing page shows them), or
        None for a token that is not one of this round's."""
        email = self.email_of.get(token) if isinstance(token, str) else None
        return self._find(email) if email is not None else None

    def _find(self, email: str) -> Signer | None:
        return next((s for s in self.round.signers if s.email == email), None)

    def _signer(self, token: str) -> Signer:
        found = self.signer(token)
        if found is None:
            raise reject("invalid-link", "the signing link is not valid for this round")
        return found

    def _turn(self) -> str | None:
        """Sequential mode: the first signer who has not signed."""
        for signer in self.round.signers:
            if signer.status is not SignerStatus.signed:
                return signer.email
        return None

    def _state(self) -> RoundOutcome:
        """The outcome as the last accepted action leaves it: a decline, a cancel or the
        last signature ends the round at once, before the loop below takes it in."""
        if self.round.outcome is not RoundOutcome.open:
            return self.round.outcome
        return self._outcome() or RoundOutcome.open

    def _check_open(self) -> None:
        outcome = self._state()
        if outcome is not RoundOutcome.open:
            raise reject(
                "round-over",
                f"the signature round is over ({outcome.value})",
                outcome=outcome.value,
            )

    def _check_can_sign(self, signer: Signer) -> None:
        self._check_open()
        if signer.status is SignerStatus.signed:
            raise reject("already-signed", f"{signer.name} has already signed", name=signer.name)
        if signer.status is SignerStatus.declined:
            raise reject("signer-declined", f"{signer.name} has declined", name=signer.name)
        if self.round.mode == "sequential" and self._turn() != signer.email:
            raise reject(
                "not-their-turn", f"it is not {signer.name}'s turn to sign yet", name=signer.name
            )

    def _replace(self, signer: Signer, **changes: object) -> None:
        signers = [
            s.model_copy(update=changes) if s.email == signer.email else s
            for s in self.round.signers
        ]
        self.round = self.round.model_copy(update={"signers": signers})

    def _event(
        self,
        what: str,
        signer: Signer | None = None,
        at: dt.datetime | None = None,
        user_agent: str | None = None,
        **fields: object,
    ) -> None:
        if user_agent:
            self.user_agents[len(self.round.events)] = user_agent
        event = SignatureEvent(
            at=at or self.clock.now(),
            signer=signer.email if signer else None,
            name=signer.name if signer else None,
            what=what,
            **fields,
        )
        self.round = self.round.model_copy(update={"events": [*self.round.events, event]})
        self.changed = True

    def _answer(self, signer: Signer | None = None) -> RoundAnswer:
        count_decision("applied")  # every action's handler answers with this
        now = self._find(signer.email) if signer is not None else None
        return RoundAnswer(
            number=self.round.number,
            purpose=self.round.purpose,
            outcome=self._state(),
            signer=now.email if now else None,
            status=now.status if now else None,
        )

    # What signers and the coordinator do -----------------------------------------------
    # Each validator refuses what would change nothing or is not allowed, so a refused
    # action leaves no trace in the history; each handler answers a small RoundAnswer.

    @workflow.update(name="open")
    def open(self, request: SignRequest) -> RoundAnswer:
        signer = self._signer(request.token)
        self._replace(signer, status=SignerStatus.opened)
        self._event("opened", signer, method="link", ip=request.ip, user_agent=request.user_agent)
        return self._answer(signer)

    @open.validator
    def _validate_open(self, request: SignRequest) -> None:
        """The signer opened their link: recorded once per signer and round, when invited."""
        expect(request, SignRequest)
        signer = self._signer(request.token)
        self._check_open()
        if signer.status is SignerStatus.waiting:
            raise reject(
                "not-their-turn", f"it is not {signer.name}'s turn to sign yet", name=signer.name
            )
        if signer.status is not SignerStatus.invited:
            raise reject(
                "already-opened",
                f"{signer.name} has already opened the link ({signer.status.value})",
                name=signer.name,
                signer_status=signer.status.value,
            )

    @workflow.update(name="sign")
    def sign(self, request: SignRequest) -> RoundAnswer:
        signer = self._signer(request.token)
        self._replace(signer, status=SignerStatus.signed, signed_at=self.clock.now())
        self._event("signed", signer, method="link", ip=request.ip, user_agent=request.user_agent)
        return self._answer(signer)

    @sign.validator
    def _validate_sign(self, request: SignRequest) -> None:
        expect(request, SignRequest)
        self._check_can_sign(self._signer(request.token))

    @workflow.update(name="decline")
    def decline(self, request: DeclineRequest) -> RoundAnswer:
        signer = self._signer(request.token)
        self._replace(signer, status=SignerStatus.declined)
        self._event(
            "declined",
            signer,
            method="link",
            ip=request.ip,
            user_agent=request.user_agent,
            reason=request.reason,
        )
        return self._answer(signer)

    @decline.validator
    def _validate_decline(self, request: DeclineRequest) -> None:
        expect(request, DeclineRequest)
        self._check_can_sign(self._signer(request.token))
        if not request.reason.strip():
            raise reject("reason-missing", "a decline needs a reason")

    def _by_email(self, email: str) -> Signer:
        for signer in self.round.signers:
            if signer.email.lower() == email.lower():
                return signer
        raise reject(
            "not-a-signatory", f"{email} is not a signatory of this agreement", email=email
        )

    @workflow.update(name="sign_paper")
    def sign_paper(self, request: PaperSignature) -> RoundAnswer:
        signer = self._by_email(request.signer)
        now = self.clock.now()
        # The day on the paper is the day it was signed: the moment it is recorded when
        # that is today, else the start of that day (the paper names no time).
        at = (
            now
            if request.signed_on == now.date()
            else dt.datetime.combine(request.signed_on, dt.time(0), tzinfo=STOCKHOLM)
        )
        self._replace(signer, status=SignerStatus.signed, signed_at=at, signed_on=request.signed_on)
        self._event(
            "signed",
            signer,
            at=at,
            method="paper",
            signed_on=request.signed_on,
            recorded_by=request.recorded_by,
            scan_sha256=request.scan_sha256,
        )
        return self._answer(signer)

    @sign_paper.validator
    def _validate_sign_paper(self, request: PaperSignature) -> None:
        """On paper the order is the paper's: in sequential mode any signer may be
        recorded. The date is checked in every mode."""
        expect(request, PaperSignature)
        signer = self._by_email(request.signer)
        self._check_open()
        if signer.status is SignerStatus.signed:
            raise reject("already-signed", f"{signer.name} has already signed", name=signer.name)
        if signer.status is SignerStatus.declined:
            raise reject("signer-declined", f"{signer.name} has declined", name=signer.name)
        if request.signed_on > self.clock.now().date():
            raise reject(
                "future-date",
                f"the signing date {request.signed_on} is in the future",
                on=request.signed_on.isoformat(),
            )

    @workflow.signal(name="provider_changed")
    def provider_changed_signal(self) -> None:
        """The provider's callback came (perhaps twice, late or out of order: it only
        says to ask the provider again)."""
        self.provider_changed = True
        self.changed = True

    @workflow.update(name="cancel")
    def cancel_round(self, request: CancelRequest) -> RoundAnswer:
        if self.cancel is None:
            self.cancel = request
            self.changed = True
        return self._answer()

    @cancel_round.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        expect(request, CancelRequest)
        if self._state() is not RoundOutcome.open:
            raise reject("no-open-round", "there is no open signature round to cancel")

    # The round's life -------------------------------------------------------------------

    @workflow.run
    async def run(self, data: RoundInput) -> RoundInfo:
        first = self.round.signers if self.round.mode == "parallel" else self.round.signers[:1]
        if self.round.method == "link":
            for signer in first:
                self._event("sent", signer, method="link")
                self.last_contact[signer.email] = self.clock.now()
            await asyncio.gather(
                *(self._mail(signer_recipient(s), "signature_request", s) for s in first)
            )
        elif self.round.method == "bankid":
            await self._provider_start()
        else:
            self._event("started", method="paper")
        every = timedelta(days=max(1, data.reminder_every_days))
        while True:
            # Cleared before the work, not before the wait: a decision that arrives while
            # this loop awaits an activity is never lost.
            self.changed = False
            if self.round.document is not None and self.provider_changed:
                self.provider_changed = False
                await self._provider_look()
            await self._log_events()
            self._send_receipts()
            outcome = self._outcome()
            if outcome is not None:
                break
            if self.round.method == "link":
                # A sequential round invites the next signer as soon as it is their turn.
                for signer in self._awaiting():
                    if signer.status is SignerStatus.waiting:
                        self.last_contact[signer.email] = self.clock.now()
                        self._replace(signer, status=SignerStatus.invited)
                        self._event("sent", signer, method="link")
                        await self._mail(signer_recipient(signer), "signature_request", signer)
            wake = self.round.expires_at
            if self.round.method == "link":
                for signer in self._awaiting():
                    if signer.reminders < data.max_reminders:
                        wake = min(wake, self._contacted(signer) + every)
            if self.round.document is not None:
                # Asked now and then without a callback too: one may be lost.
                wake = min(wake, self.clock.now() + PROVIDER_LOOK)
            if await wait_until(self.clock, lambda: self.changed, wake):
                continue
            if self.round.document is not None:
                self.provider_changed = True
                if self.clock.now() < self.round.expires_at:
                    await self._provider_reminders(data, every)
                continue
            for signer in self._awaiting():
                since = self._contacted(signer)
                if signer.reminders < data.max_reminders and self.clock.now() >= since + every:
                    self._replace(signer, reminders=signer.reminders + 1)
                    self.last_contact[signer.email] = self.clock.now()
                    await self._mail(
                        signer_recipient(signer),
                        "signature_reminder",
                        signer,
                        suffix=str(signer.reminders + 1),
                    )
                    self._event("reminded", signer)
        self._send_receipts()  # signatures that came in while the loop was sending
        if self.round.document is not None:
            await self._provider_finish(outcome)
        reason = (
            self.cancel.reason
            if self.cancel
            else self.provider_reason or _decline_reason(self.round)
        )
        self.round = self.round.model_copy(update={"outcome": outcome, "reason": reason})
        self._event(outcome.value, recorded_by=self.cancel.by if self.cancel else None)
        await self._log_events()
        await self._announce(outcome)
        await asyncio.gather(*self.receipts)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.round.public()

    # Signing through the provider (BankID): the provider invites and reminds the signers and
    # collects their signatures; the round asks it where things stand and records that.

    async def _provider_start(self) -> None:
        request = ProviderStart(agreement_id=self.data.agreement_id, round=self.round)
        try:
            document = await workflow.execute_activity_method(
                ProviderActivities.provider_start,
                request,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                schedule_to_close_timeout=PROVIDER_DEADLINE,
                retry_policy=PROVIDER_RETRY,
            )
        except Exception as error:  # refused, or unreachable for a day: the round fails
            self.provider_outcome = RoundOutcome.failed
            self.provider_reason = _cause(error)
            return
        self.round = self.round.model_copy(update={"document": document})
        for signer in self.round.signers:
            self._event("sent", signer, method="bankid")

    async def _provider_look(self) -> None:
        """Ask the provider and record what changed since the last look: who opened, who
        signed, who declined, and whether the provider has ended the document."""
        assert self.round.document is not None
        try:
            status = await workflow.execute_activity_method(
                ProviderActivities.provider_status,
                self.round.document,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                schedule_to_close_timeout=PROVIDER_DEADLINE,
                retry_policy=PROVIDER_RETRY,
            )
        except Exception as error:  # unreachable for a day, or refusing: asked again later
            workflow.logger.warning("signing provider: %s", _cause(error))
            return
        by_email = {s.email.lower(): s for s in status.signers}
        for signer in self.round.signers:
            seen = by_email.get(signer.email.lower())
            if seen is None or signer.status in (SignerStatus.signed, SignerStatus.declined):
                continue
            if seen.signed_at is not None:
                at = seen.signed_at.astimezone(STOCKHOLM)
                self._replace(signer, status=SignerStatus.signed, signed_at=at)
                self._event("signed", signer, at=at, method="bankid")
            elif seen.declined_at is not None:
                self._replace(signer, status=SignerStatus.declined)
                at = seen.declined_at.astimezone(STOCKHOLM)
                self._event("declined", signer, at=at, method="bankid", reason=seen.reason or "-")
            elif seen.seen_at is not None and signer.status is SignerStatus.invited:
                self._replace(signer, status=SignerStatus.opened)
                self._event("opened", signer, at=seen.seen_at.astimezone(STOCKHOLM))
        match status.state:
            case "expired":
                self.provider_outcome = RoundOutcome.expired
            case "cancelled" if self.cancel is None:
                self.provider_outcome = RoundOutcome.cancelled
                self.provider_reason = "cancelled at the signing provider"
            case "failed":
                self.provider_outcome = RoundOutcome.failed
                self.provider_reason = "the signing provider could not complete the document"

    async def _provider_reminders(self, data: RoundInput, every: timedelta) -> None:
        """The provider reminds those who have not signed, as often as link rounds do."""
        assert self.round.document is not None
        awaiting = self._awaiting()
        due = [
            s
            for s in awaiting
            if s.reminders < data.max_reminders and self.clock.now() >= self._contacted(s) + every
        ]
        if not due:
            return
        try:
            await workflow.execute_activity_method(
                ProviderActivities.provider_remind,
                self.round.document,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                schedule_to_close_timeout=timedelta(hours=1),
                retry_policy=PROVIDER_RETRY,
            )
        except Exception as error:
            workflow.logger.warning("signing provider reminder: %s", _cause(error))
            return
        for signer in due:
            self._replace(signer, reminders=signer.reminders + 1)
            self.last_contact[signer.email] = self.clock.now()
            self._event("reminded", signer)

    async def _provider_finish(self, outcome: RoundOutcome) -> None:
        """Completed: keep the provider's sealed file and evidence. Ended here (cancelled
        by the coordinator, expired by the round's clock): end it at the provider too, so
        nobody signs what no longer counts."""
        document = self.round.document
        assert document is not None
        if outcome is RoundOutcome.completed:
            try:
                evidence = await workflow.execute_activity_method(
                    ProviderActivities.provider_collect,
                    ProviderCollect(
                        agreement_id=self.data.agreement_id,
                        round_number=self.round.number,
                        document=document,
                    ),
                    start_to_close_timeout=PROVIDER_TIMEOUT,
                    schedule_to_close_timeout=PROVIDER_DEADLINE,
                    retry_policy=PROVIDER_RETRY,
                )
            except Exception as error:
                workflow.logger.warning("signing provider: no sealed file: %s", _cause(error))
                return
            self.round = self.round.model_copy(update={"provider": evidence})
        elif self.provider_outcome is None:
            try:
                await workflow.execute_activity_method(
                    ProviderActivities.provider_cancel,
                    document,
                    start_to_close_timeout=PROVIDER_TIMEOUT,
                    schedule_to_close_timeout=timedelta(hours=6),
                    retry_policy=PROVIDER_RETRY,
                )
            except Exception as error:
                workflow.logger.warning("signing provider: not cancelled: %s", _cause(error))

    def _contacted(self, signer: Signer) -> dt.datetime:
        """When the signer was last sent something (the round's start if never)."""
        return self.last_contact.setdefault(signer.email, self.round.started_at)

    def _awaiting(self) -> list[Signer]:
        if self.round.mode == "sequential":
            turn = self._turn()
            return [s for s in self.round.signers if s.email == turn]
        return [
            s for s in self.round.signers if s.status in (SignerStatus.invited, SignerStatus.opened)
        ]

    def _outcome(self) -> RoundOutcome | None:
        if self.cancel is not None:
            return RoundOutcome.cancelled
        if self.provider_outcome is not None:
            return self.provider_outcome
        if any(s.status is SignerStatus.declined for s in self.round.signers):
            return RoundOutcome.declined
        if all(s.status is SignerStatus.signed for s in self.round.signers):
            return RoundOutcome.completed
        if self.clock.now() >= self.round.expires_at:
            return RoundOutcome.expired
        return None

    def _send_receipts(self) -> None:
        """A receipt to each signer who has signed since the last look, once. Not to the
        signer whose signature completed the round: the completion email with the
        verification record goes to them at once. Whether a signer gets one does not hang
        on when the round looks (the run looks once more after the loop), so the same
        signatures give the same receipts every time. A receipt goes on its own: one that
        the mail server keeps refusing for a while holds up neither the round nor its
        outcome (the run waits for them only at its very end).

        Added while rounds were running (`signer-receipt`): a round that had a signature
        before this code ran replays without a receipt for it and sends none for the rest
        of its run; a round that had none sends them from its first signature on."""
        due = [
            s
            for s in self.round.signers
            if s.status is SignerStatus.signed and s.email not in self.receipted
        ]
        if not due:
            return
        self.receipted.update(s.email for s in due)
        if not workflow.patched("signer-receipt"):
            return
        last = self._completed_by()
        for signer in due:
            if signer.email != last:
                mail = self._mail(signer_recipient(signer), "signature_receipt", None)
                self.receipts.append(asyncio.create_task(mail))

    def _completed_by(self) -> str | None:
        """The signer whose signature completed the round (the last one recorded), if it is
        complete."""
        if not all(s.status is SignerStatus.signed for s in self.round.signers):
            return None
        for event in reversed(self.round.events):
            if event.what == "signed":
                return event.signer
        return None

    async def _announce(self, outcome: RoundOutcome) -> None:
        signers = [signer_recipient(s) for s in self.round.signers]
        coordinator = self.data.coordinator
        attachment = None
        if outcome is RoundOutcome.completed:
            people = [*self.data.others, *signers, coordinator]
            template = "signature_completed"
            if workflow.patched("sealed-record"):
                request = RecordRequest(agreement_id=self.data.agreement_id, round=self.round)
                attachment = await sealed_record(request)
        elif outcome is RoundOutcome.expired:
            people, template = [coordinator], "signature_expired"
        else:
            people = [*signers, coordinator]
            template = f"signature_{outcome.value}"
        seen: set[str] = set()
        unique = []
        for person in people:
            if person.email not in seen:
                seen.add(person.email)
                unique.append(person)
        if not workflow.patched("round-announce-together"):
            await asyncio.gather(*(self._mail(person, template, None) for person in unique))
            return
        # One activity for all of them; one that met a passing fault goes again on its own.
        specs = [
            self._spec(person, template, None).model_copy(update={"attachment": attachment})
            if attachment is not None
            else self._spec(person, template, None)
            for person in unique
        ]
        sent = await send_emails(specs)
        results: list[SendResult | None] = [*sent] if sent is not None else [None] * len(specs)
        await asyncio.gather(
            *(
                self._send(spec)
                if result is None or result.outcome is SendOutcome.retry
                else self._sent(spec, result)
                for spec, result in zip(specs, results, strict=True)
            )
        )

    def _spec(
        self, to: Recipient, template: str, signer: Signer | None, suffix: str = "0"
    ) -> EmailSpec:
        return EmailSpec(
            key=f"{self.data.agreement_id}:round-{self.round.number}:{template}:{suffix}:{to.email}",
            agreement_id=self.data.agreement_id,
            terms_sha256=self.round.terms_sha256,
            template=template,
            to=to,
            link_token=self.data.tokens.get(signer.email) if signer is not None else None,
            round=self.round,
            reason=self.round.reason
            or (self.cancel.reason if self.cancel else None)
            or _decline_reason(self.round),
            planned_at=self.clock.now(),
        )

    async def _mail(
        self, to: Recipient, template: str, signer: Signer | None, suffix: str = "0"
    ) -> None:
        await self._send(self._spec(to, template, signer, suffix))

    async def _send(self, spec: EmailSpec) -> None:
        await self._sent(spec, await send_email(spec))

    async def _sent(self, spec: EmailSpec, result: SendResult) -> None:
        """After an email was sent: one that failed for good is reported to the coordinator
        (unless it was to the coordinator)."""
        to = spec.to
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
        """The round's events since the last look, in the event log: together in one
        activity (`round-events-together`); one activity each in rounds that began before."""
        new = self.round.events[self.events_logged :]
        self.events_logged = len(self.round.events)
        events = [
            self._event_in(index, event)
            for index, event in enumerate(new, start=self.events_logged - len(new))
        ]
        if not events:
            return
        if workflow.patched("round-events-together"):
            await record_all(events, deadline=None)
            return
        for one in events:
            await record(one)

    def _event_in(self, index: int, event: SignatureEvent) -> EventIn:
        signer = self._find(event.signer) if event.signer is not None else None
        data: dict[str, str | int | float | bool | None] = {
            "method": event.method,
            "ip": event.ip,
            "round": self.round.number,
            # What the log says in words (i18n/events.py): who, for which party, why.
            "purpose": self.round.purpose,
            "name": event.name,
            "party_name": signer.party_name if signer is not None else None,
            "reason": event.reason,
        }
        # The store moves the IP address and user agent to the event's trace, which
        # gallring weeds (activities/store.py): the event log itself keeps neither.
        agent = self.user_agents.get(index)
        if agent:
            data["user_agent"] = agent
        paper = ""
        if event.signed_on is not None:
            data["signed_on"] = event.signed_on.isoformat()
            paper = f" on paper dated {event.signed_on.isoformat()}"
        if event.recorded_by is not None:
            data["recorded_by"] = event.recorded_by
            paper += f", recorded by {event.recorded_by}"
        return EventIn(
            event_key=f"{workflow.info().workflow_id}:{index}",
            agreement_id=self.data.agreement_id,
            at=event.at,
            kind=f"signature.{event.what}",
            # Who did it: the signer, or who entered it for them (paper, cancel).
            actor=event.recorded_by or event.signer,
            summary=f"round {self.round.number}: {event.what}"
            + (f" by {event.name}" if event.name else "")
            + paper
            + (f" ({event.reason})" if event.reason else ""),
            data=data,
        )


def _cause(error: BaseException) -> str:
    return str(getattr(error, "cause", None) or error)[:500]


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
