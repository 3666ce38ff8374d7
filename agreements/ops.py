"""Operations on agreements through Temporal, with one error type that carries a reason a
coordinator can read: a rejection from the workflow, an unknown agreement, an agreement
that already exists, a server that cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import uuid
from typing import Any

from sqlalchemy import Engine, and_, or_
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.store import write_event
from documents.check import check_pdf
from documents.store import store_for
from i18n import text
from i18n.words import word_for
from models.agreement import Agreement, Document, DocumentKind
from models.codec import PayloadKeyError
from models.config import Settings
from models.db import SchemaError, ready
from models.effects import EventIn
from models.lifecycle import Attachment, RoundAnswer, RoundInfo, Signer, terms_sha256
from models.loader import AgreementFileError, parse_agreement
from models.plan import (
    Decisions,
    EndingKind,
    MilestoneKind,
    MilestoneState,
    MilestoneStatus,
)
from models.records import (
    AgreementRecord,
    EventRecord,
    MilestoneRecord,
    OutboxRecord,
    SignerTrace,
    TermsRecord,
    utcnow,
)
from models.schedule import dates
from models.schedule.engine import plan
from workflows.agreement import (
    AgreementInput,
    AgreementWorkflow,
    EditDraft,
    Snapshot,
    workflow_id,
)
from workflows.decider import round_workflow_id
from workflows.signing import RoundInput, SignatureRoundWorkflow

log = logging.getLogger(__name__)


class OperationError(Exception):
    """Refused or impossible; `str()` is the reason, in English words a coordinator can act
    on. `code` is stable (the workflow's refusal code when it refused, else one of ops' own)
    and `params` what the reason names: `i18n.refusals.explain` says it in the reader's
    language. An error without a code is shown as its text."""

    def __init__(self, message: str, code: str = "", **params: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.params = params


async def connect(config: Settings, runtime: Any = None) -> Client:
    """A client of the configured Temporal, or a refusal that says why not; a process that
    runs a worker gives the `runtime` serving its metrics (agreements/telemetry.py)."""
    from worker import connect as connect_client

    try:
        return await connect_client(config, runtime)
    except PayloadKeyError as error:
        raise OperationError(str(error), "payload-key", problem=str(error)) from None
    except (RuntimeError, OSError) as error:
        raise OperationError(
            f"cannot reach Temporal at {config.temporal_target()}: is the service running "
            f"(agreements up)? ({error})",
            "unreachable",
            target=config.temporal_target(),
            error=str(error),
        ) from None


def refusal(error: BaseException) -> tuple[str, str, dict[str, Any]]:
    """The workflow's own words: the message of its rejection, without the error type
    that `str()` of an ApplicationError puts in front ("Rejected: …"), with its code and
    parameters from the error's details (workflows/agreement.py `reject`)."""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, ApplicationError):
        details = list(cause.details)
        code = details[0] if details and isinstance(details[0], str) else ""
        params = details[1] if len(details) > 1 and isinstance(details[1], dict) else {}
        return cause.message, code, params
    if isinstance(cause, RPCError):
        return cause.message, "", {}
    return str(cause), "", {}


SIGNED_FLAG = "signing.signed in the agreement file"


def taken_on(
    agreement: Agreement,
    signed: dt.date | None = None,
    today: dt.date | None = None,
    flag: str = SIGNED_FLAG,
) -> Agreement:
    """The agreement as the service takes it on today (the Stockholm date by default), or
    an OperationError saying why not. `signed`: the day it was signed, when it came to the
    service already signed (it overrides the file's `signing.signed`). An agreement whose
    term has started must say when it was signed (`flag` names how, in the words of the
    interface asking): it is then taken on as signed and nothing is sent for what is past.
    (On the term's first day nothing is past yet: it can still be signed as a draft.)
    One whose term is over is refused: nothing is left to remind anyone of. The command
    line, the API and the page all create through here."""
    today = today or stockholm_today()
    if signed is not None:
        agreement = agreement.model_copy(
            update={"signing": agreement.signing.model_copy(update={"signed": signed})}
        )
    start = agreement.term.start
    on = agreement.signing.signed
    if on is not None and on > today:
        shown = flag if signed else "signing.signed"
        raise OperationError(
            f"{agreement.id}: the day it was signed ({shown})"
            f" cannot be in the future: {on} is after today, {today}",
            "signed-in-future",
            agreement=agreement.id,
            flag=shown,
            on=on.isoformat(),
            today=today.isoformat(),
        )
    # The end as the agreement itself will run it: renewals as recorded (none yet).
    result = plan(agreement, dates.local_time(today, dt.time(0, 0)), Decisions(signed_on=on))
    if result.end < today:
        hint = ""
        if result.ending is EndingKind.not_extended:
            hint = (
                " (no extension was approved in the service; if it was extended, give the"
                " end it now runs to as term.end)"
            )
        raise OperationError(
            f"{agreement.id}: its term ran {start} – {result.end} and is over{hint}: there is"
            " nothing left to remind anyone of, so the service does not take it on",
            "term-over" if not hint else "term-over-not-extended",
            agreement=agreement.id,
            start=start.isoformat(),
            end=result.end.isoformat(),
        )
    if on is None and start < today:  # on its first day nothing is past yet
        raise OperationError(
            f"{agreement.id}: its term started on {start}, so the agreement is already under"
            f" way: say the day it was signed ({flag}). It is then taken on as signed, and"
            " nothing is sent for what is already past",
            "under-way",
            agreement=agreement.id,
            start=start.isoformat(),
            flag=flag,
        )
    return agreement


async def create(
    client: Client,
    config: Settings,
    agreement: Agreement,
    signed: dt.date | None = None,
    flag: str = SIGNED_FLAG,
    by: str | None = None,
) -> Snapshot:
    """Start the agreement's workflow as a draft, or as signed when it already is
    (`signed`, or the file's `signing.signed`); `taken_on` says what is refused. `by` is
    who hands it over, as the event log names them."""
    agreement = taken_on(agreement, signed, flag=flag)
    documents_kept(config, agreement)
    try:
        handle = await client.start_workflow(
            AgreementWorkflow.run,
            AgreementInput(
                agreement=agreement, handed_over_at=dt.datetime.now(dt.UTC), created_by=by
            ),
            id=workflow_id(agreement.id),
            task_queue=config.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise OperationError(
            f"an agreement with id {agreement.id} already exists", "exists", agreement=agreement.id
        ) from None
    result: Snapshot = await handle.query(AgreementWorkflow.get_state)
    return result


async def state(client: Client, agreement_id: str) -> Snapshot:
    handle = client.get_workflow_handle(workflow_id(agreement_id))
    try:
        result: Snapshot = await handle.query(AgreementWorkflow.get_state)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise OperationError(
                f"no agreement with id {agreement_id}", "no-agreement", agreement=agreement_id
            ) from None
        raise _temporal(agreement_id, error) from None
    return result


async def upcoming(client: Client, agreement_id: str, days: int) -> list[MilestoneState]:
    handle = client.get_workflow_handle(workflow_id(agreement_id))
    try:
        result: list[MilestoneState] = await handle.query(AgreementWorkflow.get_upcoming, days)
    except RPCError as error:
        raise _temporal(agreement_id, error) from None
    return result


async def timeline(client: Client, agreement_id: str) -> list[MilestoneState]:
    handle = client.get_workflow_handle(workflow_id(agreement_id))
    try:
        result: list[MilestoneState] = await handle.query(AgreementWorkflow.get_timeline)
    except RPCError as error:
        raise _temporal(agreement_id, error) from None
    return result


MAX_IDEMPOTENCY_KEY = 200


def update_id_for(update: str, key: str, request: Any = None) -> str:
    """The Temporal update id for a caller's idempotency key (an `Idempotency-Key` header,
    `--idempotency-key`, a form's hidden field). Temporal runs an update once per id within
    a workflow run and answers a repeat with the first outcome, so a retried request
    applies once. The id names the update, so the same key on another decision is a new
    decision; with `request` it also carries a digest of what is asked, so one form key
    used for two different requests (a page kept open, resubmitted with other values) is
    two decisions, while a double-click or a reloaded POST is one. Raises OperationError
    naming what is wrong with a key that is empty, too long or not printable ASCII."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise OperationError(
            f"Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY} characters, not {len(key)}",
            "key-length",
            field="Idempotency-Key",
            most=MAX_IDEMPOTENCY_KEY,
            length=len(key),
        )
    if not all(" " <= c <= "~" for c in key):
        raise OperationError(
            "Idempotency-Key: must be printable ASCII only (A-Z, a-z, digits, punctuation, space)",
            "key-characters",
            field="Idempotency-Key",
        )
    if request is None:
        return f"{update}:{key}"
    body = request.model_dump_json() if hasattr(request, "model_dump_json") else repr(request)
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"{update}:{key}:{digest}"


# How long a decision refused with "closing" waits before it is asked again (about 10 s in
# all); after the last, the refusal is the answer.
CLOSING_PAUSES: tuple[float | None, ...] = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 4.0, None)


async def decide(
    client: Client,
    agreement_id: str,
    update: str,
    request: Any,
    config: Settings | None = None,
    update_id: str | None = None,
) -> Snapshot:
    """Send one decision; a rejection comes back as an OperationError with its reason, and
    with `config` it is also written to the agreement's event log. With `update_id` (see
    `update_id_for`) a repeat of an accepted decision answers as the first time and
    changes nothing."""
    terms = getattr(request, "agreement", None)
    if config is not None and isinstance(terms, Agreement):
        documents_kept(config, terms)
    handle = client.get_workflow_handle(workflow_id(agreement_id))
    try:
        for pause in CLOSING_PAUSES:
            try:
                result: Snapshot = await handle.execute_update(
                    update, request, id=update_id, result_type=Snapshot
                )
                break
            except WorkflowUpdateFailedError as error:
                # The agreement is moving on to its next run, which takes the decision a
                # moment later: asked again here, so no person or client has to.
                if pause is None or refusal(error)[1] != "closing":
                    raise
                await asyncio.sleep(pause)
    except WorkflowUpdateFailedError as error:
        raise await refused(config, agreement_id, update, request, *refusal(error)) from None
    except RPCError as error:
        # Only now ask whether the agreement exists at all, for a clear error (one call for
        # a decision, not two, on the way that counts).
        await state(client, agreement_id)
        raise _temporal(agreement_id, error) from None
    return result


async def round_action(
    client: Client,
    agreement_id: str,
    update: str,
    request: Any,
    config: Settings | None = None,
    round_number: int | None = None,
) -> RoundAnswer:
    """An action on the agreement's current signature round (paper signature, cancel, or
    a signer's open/sign/decline through their link); refusals as in `decide`. The answer
    is small (the round's number and outcome, and the signer's status), never the round.
    With `round_number` (a signing link names its round) that round is addressed
    directly, without asking the agreement first."""
    if round_number is None:
        snapshot = await state(client, agreement_id)
        if snapshot.round_workflow_id is None:
            reason = f"{agreement_id} has no signature round; start one first"
            raise await refused(config, agreement_id, update, request, reason, "no-round-yet", {})
        round_id = snapshot.round_workflow_id
    else:
        round_id = round_workflow_id(agreement_id, round_number)
    handle = client.get_workflow_handle(round_id)
    try:
        result: RoundAnswer = await handle.execute_update(update, request, result_type=RoundAnswer)
    except WorkflowUpdateFailedError as error:
        raise await refused(config, agreement_id, update, request, *refusal(error)) from None
    except RPCError as error:
        try:
            running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        except RPCError:
            running = False  # no such round
        if running:
            raise _temporal(agreement_id, error) from None
        reason = f"the signature round of {agreement_id} is over"
        raise await refused(
            config, agreement_id, update, request, reason, "round-ended", {}
        ) from None
    return result


async def signing_view(
    client: Client, agreement_id: str, round_number: int, token: str
) -> tuple[RoundInfo, Signer] | None:
    """The round a signing link names and the signer its token belongs to, as the signing
    page shows them (no token, no IP): two queries, nothing written. None when there is
    no such round or the token is not one of its signers'."""
    handle = client.get_workflow_handle(round_workflow_id(agreement_id, round_number))
    signer, info = await asyncio.gather(
        handle.query(SignatureRoundWorkflow.signer, token),
        handle.query(SignatureRoundWorkflow.get_round),
        return_exceptions=True,
    )
    for answer in (signer, info):
        if isinstance(answer, RPCError) and answer.status is not RPCStatusCode.NOT_FOUND:
            raise _temporal(agreement_id, answer)
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer  # a cancellation
    if not isinstance(signer, Signer) or not isinstance(info, RoundInfo):
        return None  # no such round (NOT_FOUND), or a token that is not one of its
    return info, signer


async def round_tokens(client: Client, round_id: str) -> dict[str, str]:
    """Signer email -> personal token of a round, from its input in the round's history:
    the only place outside the round they are kept. For simulations and tests, which act
    for every signer without reading their emails."""
    handle = client.get_workflow_handle(round_id)
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        [data] = await client.data_converter.decode(payloads, [RoundInput])
        return dict(data.tokens)
    return {}


def _temporal(agreement_id: str, error: RPCError) -> OperationError:
    """Temporal could not answer about an agreement (not a refusal: a fault)."""
    return OperationError(
        f"{agreement_id}: {error.message}", "temporal", agreement=agreement_id, error=error.message
    )


async def refused(
    config: Settings | None,
    agreement_id: str,
    decision: str,
    request: Any,
    reason: str,
    code: str = "",
    params: dict[str, Any] | None = None,
) -> OperationError:
    """The error for a refused decision on an agreement that exists, after writing the
    refusal to its event log (kind `refused`: what was asked, by whom, and why not, with the
    refusal's code and parameters), so the coordinator's timeline shows attempts that
    changed nothing. A signer's token is never written; their IP address and user agent go
    to the event's trace (`signer_traces`). Recording is best effort: the person asking is
    told the reason either way."""
    params = params or {}
    if code in ("no-round-yet", "round-ended"):
        params = {"agreement": agreement_id, **params}
    if config is not None:
        actor = getattr(request, "by", None) or getattr(request, "recorded_by", None)
        if actor is None and hasattr(request, "token"):
            actor = "signer link"
        data = {"decision": decision, "reason": reason, "code": code}
        if params:
            data["params"] = json.dumps(params, ensure_ascii=False, sort_keys=True)
        # A signer's IP address and user agent go to the event's trace, not to the log
        # itself (activities/store.py `write_event`), where gallring can weed them.
        for traced in ("ip", "user_agent"):
            value = getattr(request, traced, None)
            if isinstance(value, str) and value:
                data[traced] = value
        try:
            await asyncio.to_thread(_record_refusal, config, agreement_id, actor, data)
        except (SQLAlchemyError, OperationError) as error:
            log.warning("refusal of %s on %s not recorded: %s", decision, agreement_id, error)
    return OperationError(reason, code, **params)


def _record_refusal(
    config: Settings, agreement_id: str, actor: str | None, data: dict[str, str]
) -> None:
    """The refusal in the event log; `write_event` takes an "ip" or "user_agent" out of
    its data into the event's SignerTrace row, in the same transaction."""
    event = EventIn(
        event_key=f"{agreement_id}:refused:{uuid.uuid4().hex}",
        agreement_id=agreement_id,
        at=utcnow(),
        kind="refused",
        actor=actor,
        summary=f"{data['decision']} refused: {data['reason']}",
        data=data,
    )
    write_event(_db(config), event)


async def current_round(client: Client, agreement_id: str) -> RoundInfo | None:
    """The agreement's latest round as anyone may see it (no token, no IP)."""
    snapshot = await state(client, agreement_id)
    if snapshot.round_workflow_id is None:
        return snapshot.round
    handle = client.get_workflow_handle(snapshot.round_workflow_id)
    try:
        info: RoundInfo = await handle.query(SignatureRoundWorkflow.get_round)
    except RPCError:
        return snapshot.round
    return info


# The read model (what the activities wrote) ----------------------------------------------


def _db(config: Settings) -> Engine:
    try:
        return ready(config.db_url())
    except SchemaError as error:
        raise OperationError(str(error), "database", error=str(error)) from None


def database(config: Settings) -> Engine:
    """The service's database at the newest schema; OperationError (code `database`) with
    what to run when it is not."""
    return _db(config)


def agreements(config: Settings) -> list[AgreementRecord]:
    with Session(_db(config)) as session:
        return list(session.exec(select(AgreementRecord).order_by(col(AgreementRecord.id))))


def agreement(config: Settings, agreement_id: str) -> AgreementRecord:
    """One agreement's row in the read model; OperationError if there is none."""
    with Session(_db(config)) as session:
        row = session.get(AgreementRecord, agreement_id)
    if row is None:
        raise OperationError(
            f"{agreement_id}: no such agreement", "no-agreement", agreement=agreement_id
        )
    return row


def outbox(config: Settings, agreement_id: str | None = None) -> list[OutboxRecord]:
    with Session(_db(config)) as session:
        query = select(OutboxRecord).order_by(col(OutboxRecord.created_at))
        if agreement_id is not None:
            query = query.where(OutboxRecord.agreement_id == agreement_id)
        return list(session.exec(query))


def events(config: Settings, agreement_id: str) -> list[EventRecord]:
    with Session(_db(config)) as session:
        query = (
            select(EventRecord)
            .where(EventRecord.agreement_id == agreement_id)
            .order_by(col(EventRecord.id))
        )
        return list(session.exec(query))


def signer_traces(config: Settings, agreement_id: str) -> list[SignerTrace]:
    """Where the agreement's signers' requests came from, for its coordinator: one row per
    event that had an IP address or user agent (opened, signed, declined, a refused link),
    oldest first. `ip` reads "pseud:…" and `user_agent` None once weeded (`weeded_at`)."""
    with Session(_db(config)) as session:
        query = (
            select(SignerTrace)
            .where(SignerTrace.agreement_id == agreement_id)
            .order_by(col(SignerTrace.at), col(SignerTrace.id))
        )
        return list(session.exec(query))


ROLE_KINDS: dict[str, set[str] | None] = {
    "finance": {"invoice"},
    "contact": {
        "report_due",
        "meeting",
        "notice_deadline",
        "extension_deadline",
        "review_deadline",
        "milestone",
    },
    "coordinator": None,  # everything
}


def stockholm_today() -> dt.date:
    return dt.datetime.now(dates.STOCKHOLM).date()


def milestones(
    config: Settings, agreement_id: str, today: dt.date | None = None
) -> list[MilestoneState]:
    """The agreement's milestones from the read model, by effective date, each with its
    status as it reads on `today` (the Stockholm date by default): overdue, passed."""
    today = today or stockholm_today()
    with Session(_db(config)) as session:
        query = (
            select(MilestoneRecord)
            .where(MilestoneRecord.agreement_id == agreement_id)
            .order_by(col(MilestoneRecord.effective_date), col(MilestoneRecord.id))
        )
        return [row.state().as_of(today) for row in session.exec(query)]


MAX_DAYS = 36600
# Invoices that are still to send or to be paid: a finance officer sees them after their date.
OUTSTANDING = (MilestoneStatus.to_invoice.value, MilestoneStatus.invoiced.value)


def upcoming_all(
    config: Settings, days: int, role: str, today: dt.date | None = None
) -> list[tuple[AgreementRecord, MilestoneState]]:
    """Milestones from `today` (the Stockholm date by default) to `days` later (0 to 36600),
    across every agreement that has not ended, of the kinds `role` deals with, by effective
    date then agreement; each with its status as of `today`. One query on the read model.

    For role finance it also lists, before them, every instalment whose date has passed
    and that is not paid yet (still to invoice, or invoiced): what is outstanding."""
    if role not in ROLE_KINDS:
        raise OperationError(
            f"role {role!r} is not one of {', '.join(ROLE_KINDS)}",
            "unknown-role",
            role=role,
            roles=", ".join(ROLE_KINDS),
        )
    wanted = ROLE_KINDS[role]
    today = today or stockholm_today()
    horizon = today + dt.timedelta(days=max(0, min(days, MAX_DAYS)))
    effective = col(MilestoneRecord.effective_date)
    when = and_(effective >= today, effective <= horizon)
    if role == "finance":
        outstanding = and_(
            effective < today,
            col(MilestoneRecord.kind) == MilestoneKind.invoice.value,
            col(MilestoneRecord.status).in_(OUTSTANDING),
        )
        when = or_(when, outstanding)
    query = (
        select(AgreementRecord, MilestoneRecord)
        .join(MilestoneRecord, col(MilestoneRecord.agreement_id) == col(AgreementRecord.id))
        .where(col(AgreementRecord.state) != "ended", when)
        .order_by(effective, col(AgreementRecord.id), col(MilestoneRecord.id))
    )
    if wanted is not None:
        query = query.where(col(MilestoneRecord.kind).in_(sorted(wanted)))
    with Session(_db(config)) as session:
        return [(a, m.state().as_of(today)) for a, m in session.exec(query)]


def instalments_between(
    config: Settings, start: dt.date, end: dt.date, today: dt.date | None = None
) -> list[tuple[AgreementRecord, MilestoneState]]:
    """Every instalment whose effective date lies from `start` to `end` (inclusive), of
    every agreement, ended ones too, by date then agreement; each with its status as of
    `today` (to invoice, invoiced, paid, or overdue when its date has passed unpaid)."""
    if end < start or (end - start).days > MAX_DAYS:
        raise OperationError(
            f"the period {start} – {end} is not a period of at most {MAX_DAYS} days",
            "bad-period",
            start=start.isoformat(),
            end=end.isoformat(),
            most=MAX_DAYS,
        )
    today = today or stockholm_today()
    effective = col(MilestoneRecord.effective_date)
    query = (
        select(AgreementRecord, MilestoneRecord)
        .join(MilestoneRecord, col(MilestoneRecord.agreement_id) == col(AgreementRecord.id))
        .where(
            col(MilestoneRecord.kind) == MilestoneKind.invoice.value,
            effective >= start,
            effective <= end,
        )
        .order_by(effective, col(AgreementRecord.id), col(MilestoneRecord.id))
    )
    with Session(_db(config)) as session:
        return [(a, m.state().as_of(today)) for a, m in session.exec(query)]


def upcoming_csv(
    language: str, rows: list[tuple[AgreementRecord, MilestoneState]], terms: dict[str, Agreement]
) -> str:
    """The coming milestones as a spreadsheet reads them (semicolon-separated, as Swedish
    spreadsheets expect): headers, kinds and statuses in `language`, parties by name, dates
    ISO; `terms` by agreement id names the parties."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        [
            text(language, "Agreement"),
            text(language, "Reference"),
            text(language, "Date as written"),
            text(language, "Date"),
            text(language, "Kind"),
            text(language, "What"),
            text(language, "Amount (SEK)"),
            text(language, "Payer"),
            text(language, "Payee"),
            text(language, "Status"),
            text(language, "Status set on"),
            text(language, "Invoice number"),
        ]
    )
    for a, m in rows:
        parties = terms.get(a.id)
        writer.writerow(
            [
                inert(a.title),
                inert(a.reference or ""),
                m.date.isoformat(),
                m.effective_date.isoformat(),
                word_for(language, MilestoneKind, m.kind),
                inert(m.title),
                m.amount if m.amount is not None else "",
                inert(party_name(parties, m.payer)),
                inert(party_name(parties, m.payee)),
                word_for(language, MilestoneStatus, m.status),
                m.status_on.isoformat() if m.status_on else "",
                inert(m.number or ""),
            ]
        )
    return buffer.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def inert(value: str) -> str:
    """Text someone typed (a title, a reference, a party, an invoice number), as a
    spreadsheet shows it and never runs it: one that would start a formula gets an
    apostrophe first, which Excel, LibreOffice and Google Sheets take as "this is text"."""
    return f"'{value}" if value.startswith(FORMULA_START) else value


def party_name(terms: Agreement | None, key: str | None) -> str:
    """A party's name for its key (a pair "kommun;forening" reads "Kommunen, Föreningen")."""
    if not key:
        return ""
    parties = terms.parties if terms is not None else {}
    return ", ".join(parties[k].name if k in parties else k for k in key.split(";"))


def terms_of(
    config: Settings, rows: list[tuple[AgreementRecord, MilestoneState]]
) -> dict[str, Agreement]:
    """The terms of each agreement in `rows`, by id, to name their parties; one whose terms
    are not stored yet (a moment after a change) is left out and shows party keys once."""
    terms: dict[str, Agreement] = {}
    for a, _ in rows:
        if a.id not in terms:
            with contextlib.suppress(OperationError):
                terms[a.id] = stored_terms(config, a.terms_sha256)
    return terms


def take_document(config: Settings, data: bytes, name: str, kind: DocumentKind) -> Document:
    """Check an uploaded file (a PDF that opens, not encrypted, not too large) and keep it in
    the document store; the document as the terms name it. DocumentRefused says why not."""
    checked = check_pdf(data, name)
    sha256 = store_for(config.data_dir).put(data)
    return Document(sha256=sha256, name=name, kind=kind, size=checked.size, pages=checked.pages)


async def add_document(
    client: Client,
    config: Settings,
    agreement_id: str,
    document: Document,
    by: str | None = None,
    update_id: str | None = None,
) -> Snapshot:
    """A document (already taken: `take_document`) added to a draft's terms. A document the
    draft has already is not added twice."""
    for attempt in range(5):  # another change came in between: add it to that one
        snapshot = await state(client, agreement_id)
        terms = await terms_soon(config, snapshot.terms_sha256)
        if any(d.sha256 == document.sha256 for d in terms.documents):
            return snapshot
        data = terms.model_dump(mode="json")
        data["documents"] = [*data["documents"], document.model_dump(mode="json")]
        try:
            new = parse_agreement(data, "documents")
        except AgreementFileError as error:
            raise OperationError(
                "; ".join(str(p) for p in error.problems),
                "invalid-terms",
                problems="; ".join(str(p) for p in error.problems),
            ) from None
        change = EditDraft(agreement=new, by=by, based_on=snapshot.terms_sha256)
        try:
            return await decide(
                client, agreement_id, "edit_draft", change, config=config, update_id=update_id
            )
        except OperationError as error:
            if error.code != "draft-changed" or attempt == 4:
                raise
    raise AssertionError("unreachable")


def documents_kept(config: Settings, agreement: Agreement) -> None:
    """Refuse terms that name a document the store does not have (a file from elsewhere, or
    a store not shared): the signers could not open what they sign."""
    store = store_for(config.data_dir)
    missing = [d.name for d in agreement.documents if not store.has(d.sha256)]
    if missing:
        raise OperationError(
            f"the document store has no {', '.join(missing)}; upload the documents again",
            "document-missing",
            names=", ".join(missing),
        )


def document_bytes(config: Settings, sha256: str) -> bytes:
    try:
        return store_for(config.data_dir).get(sha256)
    except KeyError:
        raise OperationError("no such document", "no-document") from None


def documents_of(config: Settings, agreement_id: str) -> dict[str, Document]:
    """Every document any version of the agreement's terms has named, by hash: what may be
    opened from its page (an amended agreement's earlier documents too)."""
    with Session(_db(config)) as session:
        rows = session.exec(
            select(TermsRecord.terms_json).where(TermsRecord.agreement_id == agreement_id)
        ).all()
    found: dict[str, Document] = {}
    for raw in rows:
        for document in Agreement.model_validate_json(raw).documents:
            found.setdefault(document.sha256, document)
    return found


def sealed_records(config: Settings, agreement_id: str) -> list[tuple[int, Attachment]]:
    """The sealed signing records of the agreement's completed rounds by round number,
    first round first (activities/record.py names each in the event log)."""
    with Session(_db(config)) as session:
        rows = session.exec(
            select(EventRecord)
            .where(EventRecord.agreement_id == agreement_id, EventRecord.kind == "record.sealed")
            .order_by(col(EventRecord.id))
        ).all()
    return [(int(json.loads(row.data_json)["round"]), _record(row)) for row in rows]


def _record(row: EventRecord) -> Attachment:
    data = json.loads(row.data_json or "{}")
    return Attachment(sha256=data["sha256"], filename=data["filename"], size=int(data["size"]))


def sealed_record(config: Settings, agreement_id: str, number: int) -> Attachment | None:
    """The sealed signing record of round `number`, if it has one."""
    key = f"{agreement_id}:record:{number}"
    with Session(_db(config)) as session:
        row = session.exec(select(EventRecord).where(EventRecord.event_key == key)).first()
    return None if row is None else _record(row)


async def terms_soon(config: Settings, sha256: str, wait: float = 15.0) -> Agreement:
    """The stored terms, waiting up to `wait` seconds for them: a page shown right after
    creating or amending an agreement may come before the worker has written the new
    terms (it does so in the step's first activity)."""
    deadline = asyncio.get_running_loop().time() + wait
    pause = 0.05
    while True:
        try:
            return await asyncio.to_thread(stored_terms, config, sha256)
        except OperationError as error:
            if error.code != "terms-not-stored" or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


def stored_terms(config: Settings, sha256: str) -> Agreement:
    """The terms stored under their SHA-256 (a moment after a change they may not be yet)."""
    with Session(_db(config)) as session:
        row = session.get(TermsRecord, sha256)
        if row is None:
            raise OperationError(
                "the agreement's terms are not stored yet; try again", "terms-not-stored"
            )
        terms = Agreement.model_validate_json(row.terms_json)
    assert terms_sha256(terms) == sha256
    return terms


# The archive package (archive/sip.py) and what was sent is kept --------------------------


def terms_versions(config: Settings, agreement_id: str) -> list[TermsRecord]:
    """Every version of the agreement's terms, oldest first."""
    with Session(_db(config)) as session:
        query = (
            select(TermsRecord)
            .where(TermsRecord.agreement_id == agreement_id)
            .order_by(col(TermsRecord.created_at), col(TermsRecord.sha256))
        )
        return list(session.exec(query))


def kept_message(config: Settings, key: str) -> bytes | None:
    """The exact message an outbox row sent, while it is kept (None: never kept, or weeded).
    Read on purpose only: a signer's email holds their personal signing link."""
    with Session(_db(config)) as session:
        row = session.exec(select(OutboxRecord.message).where(OutboxRecord.key == key)).first()
    return None if row is None else bytes(row)
