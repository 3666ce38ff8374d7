"""FastAPI application: the JSON API (`/api`, OpenAPI at `/docs`), the coordinators' pages,
the signing pages reached only through a signer's personal link, and calendar feeds.

People sign in through the municipality's identity provider (OpenID Connect) and get a
session kept on the server; integrations use personal API tokens; the deployment's own
token is the local key, taken from this machine only (agreements/web/gate.py). What a
person may see and do follows their roles in the organisation that owns each agreement
(agreements/access.py), and the server names them as the actor of every decision. Signers
never sign in: their signed link is their key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import fastapi_offline
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from google.protobuf import json_format
from markupsafe import Markup
from pydantic import Field, ValidationError
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.service import RPCError

from agreements import access, finance, ops
from agreements.access import Right, Who
from agreements.attention import SOON, Round, Why, attention
from agreements.health import readiness
from agreements.web import drafting
from agreements.web.gate import SIGN_IN_COOKIE, SIGN_IN_LASTS, Gate, SignInFailed
from agreements.web.picture import Words, timeline_svg
from agreements.web.security import MAX_BODY, Guard, Scope, Throttle, same
from documents.check import DocumentRefused
from documents.store import store_for
from emails.calendar import calendar, personal_calendar
from emails.links import LinkError, SigningLink, read_link
from emails.render import contribution_terms, day, kronor, render_subject
from i18n import N_, language_of, text, translations
from i18n.events import event_text
from i18n.refusals import explain
from i18n.words import actor, hook_word, role_word, round_event, scope_word, word_for
from models.agreement import (
    Agreement,
    ContributionKind,
    DocumentKind,
    PartyKind,
    RenewalKind,
    Role,
    SigningMethod,
    SigningMode,
)
from models.codec import Sealed, keys_for
from models.config import Settings
from models.lifecycle import (
    RoundAnswer,
    RoundInfo,
    RoundOutcome,
    Signer,
    SignerStatus,
    State,
)
from models.loader import (
    AgreementFileError,
    copy_of,
    dumps_agreement,
    loads_agreement,
    template_from,
)
from models.plan import (
    SETTABLE,
    EndingKind,
    Frozen,
    MilestoneKind,
    MilestoneState,
    MilestoneStatus,
    PlannedMilestone,
    Scenario,
)
from models.prerequisites import CHECKLIST
from models.records import EventRecord
from models.schedule.dates import STOCKHOLM
from models.schedule.engine import coordinator, plan, recipients
from models.schedule.engine import everyone as all_contacts
from models.webhooks import WebhookEndpoint
from signing.callbacks import callback_ok
from webhooks import events as hook_events
from webhooks import registry as hook_registry
from webhooks import targets as hook_targets
from webhooks.shapes import Enabled, EndpointIn, delivery_json, endpoint_json
from workflows.agreement import (
    Amendment,
    ConfirmPrerequisites,
    EditDraft,
    MilestoneUpdate,
    RenewalRequest,
    ReportDecision,
    Snapshot,
    StartSigning,
    TerminationRequest,
    WithdrawalOutcome,
    workflow_id,
)
from workflows.decider import round_workflow_id
from workflows.signing import (
    MAX_IP,
    MAX_NAME,
    MAX_REASON,
    MAX_USER_AGENT,
    CancelRequest,
    DeclineRequest,
    PaperSignature,
    SignRequest,
)

log = logging.getLogger(__name__)
TEMPLATE_DIR = Path(__file__).parent / "templates"
# Swagger UI's files, as fastapi-offline packages them (kept current with Swagger UI 5,
# which reads the OpenAPI 3.1 that FastAPI writes).
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"
# The picture's lanes (agreements/web/picture.py LANES), as the page names them.
STATIC = Path(__file__).parent / "static"
LANE_NAMES = {
    "money": N_("Money"),
    "reports": N_("Reports"),
    "meetings": N_("Meetings"),
    "decisions": N_("Decisions"),
    "end": N_("Periods end"),
}
# The statuses a person sets through `record_milestone` (invoiced, paid, held, approved,
# returned), in the order models.plan.SETTABLE names them.
SETTABLE_STATUSES = tuple(dict.fromkeys(s for kind in SETTABLE.values() for s in kind))
# How far ahead the agreement page offers to record an instalment as invoiced (an invoice
# is often sent some weeks before its date); later ones through the API or the command line.
INVOICE_AHEAD = dt.timedelta(days=60)
# Where an email of the outbox stands (OutboxRecord.status), as the agreement page says it.
OUTBOX_STATUS: dict[str, str] = {
    "pending": N_("waiting to be sent"),
    "sending": N_("being sent"),
    "handed": N_("handed to the mail server"),
    "sent": N_("sent"),
    "failed": N_("could not be sent"),
}


def milestone_actions(m: PlannedMilestone, state: str, on: dt.date | None = None) -> list[str]:
    """The statuses the agreement page offers to set on a timeline row: an instalment to
    invoice (up to INVOICE_AHEAD before its date) -> invoiced; invoiced -> paid; a meeting
    whose day has come -> held; a received report -> approved or returned. Nothing before
    the agreement is signed."""
    if state not in ("signed", "active", "ending", "ended"):
        return []
    status = getattr(m, "status", None)
    on = on or ops.stockholm_today()
    match m.kind, status:
        case MilestoneKind.invoice, MilestoneStatus.to_invoice:
            return ["invoiced"] if m.effective_date <= on + INVOICE_AHEAD else []
        case MilestoneKind.invoice, MilestoneStatus.invoiced:
            return ["paid"]
        case MilestoneKind.meeting, MilestoneStatus.planned | MilestoneStatus.passed:
            return ["held"] if m.effective_date <= on else []
        case MilestoneKind.report_due, MilestoneStatus.received:
            return ["approved", "returned"]
    return []


def stockholm_time(value: dt.datetime | None) -> str:
    """A moment as a person in Sweden reads it: '2027-03-31 14:05 CEST' (a naive value is
    UTC, as the records store it)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M %Z")


def checklist_text(language: str, key: str) -> str:
    """What a prerequisite confirms, in `language` (never its key)."""
    item = CHECKLIST.get(key)
    return text(language, item.text) if item else key


def event_line(language: str, record: EventRecord) -> str:
    """One line of the event log in `language`."""
    try:
        data = json.loads(record.data_json or "{}")
    except ValueError:
        data = {}
    return event_text(language, record.kind, record.summary, data if isinstance(data, dict) else {})


def outbox_status(language: str, status: str) -> str:
    found = OUTBOX_STATUS.get(status)
    return text(language, found) if found else status


def picture_words(lang: str, title: str) -> Words:
    """What the timeline picture says, in the page's language."""

    def status(m: Any) -> str:
        return word_for(lang, MilestoneStatus, m.status) if m.status else ""

    return Words(
        title=text(lang, "%(title)s at a glance", title=title),
        lanes={key: text(lang, name) for key, name in LANE_NAMES.items()},
        today=text(lang, "Today"),
        amended=text(lang, "Amended"),
        status=status,
        day=functools.partial(day, language=lang),
    )


@functools.cache
def templates(language: str) -> Jinja2Templates:
    """The pages in one language: Jinja2's i18n extension with that language's catalog
    (installed per environment, so one environment per language), and the words for the
    service's own keys bound to it."""
    lang = language_of(language)
    result = Jinja2Templates(directory=str(TEMPLATE_DIR))
    env = result.env
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(
        kronor=kronor, day=functools.partial(day, language=lang), when=stockholm_time
    )
    env.globals.update(
        lang=lang,
        today=ops.stockholm_today,
        milestone_actions=milestone_actions,
        word=functools.partial(word_for, lang),
        actor=functools.partial(actor, lang),
        round_event=functools.partial(round_event, lang),
        role_word=functools.partial(role_word, lang),
        scope_word=functools.partial(scope_word, lang),
        hook_word=functools.partial(hook_word, lang),
        checklist=functools.partial(checklist_text, lang),
        party_name=ops.party_name,
        event_line=functools.partial(event_line, lang),
        outbox_status=functools.partial(outbox_status, lang),
        contribution=functools.partial(contribution_terms, language=lang),
        State=State,
        SignerStatus=SignerStatus,
        RoundOutcome=RoundOutcome,
        MilestoneStatus=MilestoneStatus,
        MilestoneKind=MilestoneKind,
        EndingKind=EndingKind,
        RenewalKind=RenewalKind,
        Role=Role,
        PartyKind=PartyKind,
        DocumentKind=DocumentKind,
        ContributionKind=ContributionKind,
        SigningMethod=SigningMethod,
        SigningMode=SigningMode,
    )
    return result


# The Swedish pages (what a test renders a template with directly).
TEMPLATES = templates("sv")


def accept_language(header: str | None) -> str:
    """The language of an API answer from Accept-Language: Swedish unless the client
    prefers English to Swedish."""
    ranked: list[tuple[float, str]] = []
    for part in (header or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        tag = tag.strip().lower()
        if weight > 0 and (tag.startswith("en") or tag.startswith("sv")):
            ranked.append((weight, tag[:2]))
    ranked.sort(key=lambda r: -r[0])  # stable: the first of equal weight wins
    return ranked[0][1] if ranked else "sv"


class Refused(HTTPException):
    """An API error answer: `detail` in the request's language, with the refusal's stable
    `code` and `params` when it has them."""

    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, headers)
        self.code = code
        self.params = params


class MilestoneBody(Frozen):
    """A status set on one milestone (the milestone is named in the path): `invoiced` with
    the invoice's `number`, then `paid`; `held` for a meeting; `approved`, or `returned`
    with a `note` saying what is missing, for a received report. `on` is the day it
    happened (default today, never in the future)."""

    status: MilestoneStatus
    on: dt.date | None = None
    number: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=2000)
    by: str = Field(default="coordinator", max_length=200)


# The day an agreement was signed before it came to the service (POST /api/agreements).
SignedOn = Annotated[
    dt.date | None,
    Query(
        description=(
            "The day it was signed, when it is already signed (YYYY-MM-DD): it is taken on "
            "as signed and nothing is sent for what is past. Required once its term has "
            "started."
        ),
    ),
]
# The organisation a new agreement belongs to (POST /api/agreements).
Organisation = Annotated[
    str | None,
    Query(
        max_length=64,
        description=(
            "The id of the organisation the agreement belongs to; needed when the person "
            "coordinates for more than one."
        ),
    ),
]
# A client's retry of a decision carries the same key and applies once (service.ops.update_id_for).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Any printable ASCII up to 200 characters, new for each decision: a retry "
            "with the same key answers as the first request and changes nothing."
        ),
    ),
]


def create_app(config: Settings, client: Client | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = client or await ops.connect(config)
        yield

    app = FastAPI(
        title="Avtalstjänsten",
        description="Agreement lifecycles for IOP and grant agreements.",
        lifespan=lifespan,
        # Served below, behind login, with Swagger UI from this service (no CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.config = config

    def too_large(scope: Scope) -> bytes:
        refusal = ops.OperationError("request too large", "too-large", size=MAX_BODY // 1024)
        message = explain(api_language(Request(scope)), refusal)
        body = {"detail": message, "code": refusal.code, "params": refusal.params}
        return json.dumps(body, ensure_ascii=False).encode()

    app.add_middleware(
        Guard, https=config.public_base_url.startswith("https://"), too_large=too_large
    )
    app.mount("/static/docs", StaticFiles(directory=SWAGGER_UI), name="docs-static")
    # The pages' one small script (live.js): the plan beside the drafting form and the
    # outbox's progress, without a build step; every page works without it.
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    secret = config.signing_secret.get_secret_value()
    throttle = Throttle()
    gate = Gate(config, throttle)
    app.state.gate = gate

    def temporal(request: Request) -> Client:
        result: Client = request.app.state.client
        return result

    def held_back(request: Request) -> tuple[str, int, ops.OperationError | None]:
        """The client's address; while too many sign-ins from it have failed, also how
        many seconds it waits and the refusal that says so."""
        address = request.client.host if request.client else "unknown"
        wait = throttle.wait(address)
        if not wait:
            return address, 0, None
        minutes = math.ceil(wait / 60)
        held = ops.OperationError("too many failed attempts", "too-many-attempts", minutes=minutes)
        return address, wait, held

    def bearer(request: Request, authorization: Annotated[str | None, Header()] = None) -> Who:
        """Who an API request comes from: a personal token (`avt_…`), or the local key from
        this machine; a session cookie too, so the API page works once signed in."""
        address, wait, held = held_back(request)
        if held is not None:
            raise Refused(
                429,
                explain(api_language(request), held),
                code=held.code,
                params=held.params,
                headers={"Retry-After": str(wait)},
            )
        # A session cookie reads (the API page once signed in) but never decides: a
        # decision carries its token, so no other page can make a browser send one.
        if authorization:
            who = gate.from_bearer(request)
        elif request.method in ("GET", "HEAD"):
            who = gate.from_cookie(request)
        else:
            who = None
        if who is None:
            if authorization is not None:
                throttle.failed(address, "API token")
            raise Refused(
                401,
                text(
                    api_language(request),
                    "A valid API token is required (Authorization: Bearer …).",
                ),
                code="token-required",
            )
        request.state.who = who
        return who

    def page_language(request: Request, language: str | None = None) -> str:
        """Swedish first; `?lang=en` switches (and is remembered), a signer's page follows
        the signer's language unless they switch."""
        asked = request.query_params.get("lang")
        lang = asked if asked in ("sv", "en") else request.cookies.get("lang") or language or "sv"
        return lang if lang in ("sv", "en") else "sv"

    def api_language(request: Request) -> str:
        return accept_language(request.headers.get("accept-language"))

    def page(
        request: Request, name: str, status: int = 200, language: str | None = None, **values: Any
    ) -> HTMLResponse:
        lang = page_language(request, language)
        who: Who | None = getattr(request.state, "who", None)
        values.setdefault("csrf", gate.csrf(who))
        values.setdefault("me", who)
        values["lang"] = lang
        response = templates(lang).TemplateResponse(request, name, values, status_code=status)
        asked = request.query_params.get("lang")
        if asked in ("sv", "en"):
            response.set_cookie("lang", asked, samesite="lax")
        return response

    def problem(
        request: Request, message: str, status: int = 400, language: str | None = None
    ) -> HTMLResponse:
        """A page saying what went wrong (`message` is in the page's language already)."""
        lang = page_language(request, language)
        title = text(lang, "That did not work")
        return page(
            request,
            "message.html",
            status,
            language,
            title=title,
            message=message,
            back=way_back(request),
        )

    def way_back(request: Request) -> tuple[str, str] | None:
        """Where an error page leads back to (address, what it is): the agreement, the
        signing page, the page the form was on, or the start."""
        path = request.url.path
        parts = path.strip("/").split("/")
        if parts[0] == "a" and len(parts) >= 2:
            return f"/a/{parts[1]}", N_("Back to the agreement")
        if parts[0] == "sign":  # after an action; a link that does not work leads nowhere
            if request.method == "POST" and len(parts) >= 2:
                return f"/sign/{parts[1]}", N_("Back to the signing page")
            return None
        if parts[0] in ("people", "me"):
            return f"/{parts[0]}", N_("Back")
        if getattr(request.state, "who", None) is None:
            return "/login", N_("To the sign-in")
        return "/todo", N_("To your to-do list")

    def refusal(
        request: Request, error: BaseException, status: int = 400, language: str | None = None
    ) -> HTMLResponse:
        """A page explaining a refusal or an error, in the page's language."""
        return problem(request, explain(page_language(request, language), error), status, language)

    def refused(
        request: Request,
        status: int,
        error: BaseException,
        headers: dict[str, str] | None = None,
    ) -> Refused:
        """An API error answer for `error`, in the language the request accepts."""
        return Refused(
            status,
            explain(api_language(request), error),
            code=getattr(error, "code", None) or None,
            params=getattr(error, "params", None),
            headers=headers,
        )

    @app.exception_handler(Refused)
    async def refused_answer(request: Request, error: Refused) -> JSONResponse:
        """As FastAPI answers an HTTPException (`detail`), plus the stable `code` and its
        `params` when the refusal has them."""
        body: dict[str, Any] = {"detail": error.detail}
        if error.code is not None:
            body["code"] = error.code
            body["params"] = jsonable_encoder(error.params or {})
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    def entitled(request: Request, agreement_id: str, right: Right) -> ops.OperationError | None:
        """None when the person asking may do `right` on the agreement; otherwise the
        refusal: `not-allowed` when they may read it but their role does not allow this,
        `no-agreement` when it is not theirs to see (as if it did not exist)."""
        who: Who = request.state.who
        owner = access.owner(gate.db, agreement_id)
        if who.can(right, owner):
            return None
        if right is not Right.read and who.can(Right.read, owner):
            return ops.OperationError(
                "your role does not allow this",
                "not-allowed",
                agreement=agreement_id,
                role=role_of(who, owner, right),
            )
        return ops.OperationError(
            f"{agreement_id}: no such agreement", "no-agreement", agreement=agreement_id
        )

    def role_of(who: Who, organisation: str | None, right: Right) -> list[str]:
        """What stops `who`: a token's scope when that is it, else their role there."""
        if who.scope is not None and right not in who.scope:
            return [scope for scope, rights in access.SCOPES.items() if rights == who.scope]
        role = who.roles.get(organisation) if organisation else None
        return [role.value] if role else []

    def may(request: Request, agreement_id: str, right: Right = Right.read) -> None:
        """The API's check: 404 for an agreement the person may not see, 403 for a decision
        their role does not allow."""
        if wrong := entitled(request, agreement_id, right):
            raise refused(request, 403 if wrong.code == "not-allowed" else 404, wrong)

    def visible(request: Request, rows: list[Any], key: Any = lambda r: r.id) -> list[Any]:
        """The rows of agreements the person asking may read."""
        who: Who = request.state.who
        owned = access.owners(gate.db)
        return [r for r in rows if who.can(Right.read, owned.get(key(r)))]

    def owned_by(
        request: Request, agreement_id: str, organisation: str | None
    ) -> ops.OperationError | None:
        """Make a new agreement the organisation's (None: done, or no organisation exists
        yet on a trial with the local key); otherwise the refusal."""
        who: Who = request.state.who
        if who.local:
            choices = [o.id for o in access.organisations(gate.db)]
        else:
            choices = who.organisations(Right.create)
        if organisation is None and len(choices) == 1:
            organisation = choices[0]
        if organisation is None and who.local and not choices:
            return None
        if organisation is None or not who.can(Right.create, organisation):
            if organisation is not None and not who.can(Right.read, organisation):
                organisation = None  # not one of theirs: say which are
            if not choices:
                return ops.OperationError(
                    "your role does not allow this",
                    "not-allowed",
                    agreement=agreement_id,
                    role=sorted({r.value for r in who.roles.values()}),
                )
            return ops.OperationError(
                "name the organisation the agreement belongs to",
                "organisation-needed",
                organisations=", ".join(choices),
            )
        claimed = access.claim(gate.db, agreement_id, organisation, who.actor)
        if claimed == "other":
            return ops.OperationError(
                f"{agreement_id} belongs to another organisation",
                "other-organisation",
                agreement=agreement_id,
            )
        request.state.claimed = claimed
        return None

    async def create_owned(
        request: Request, agreement: Agreement, signed: dt.date | None, flag: str
    ) -> Snapshot:
        """Create the agreement; a claim made for it is released when that fails."""
        try:
            by = request.state.who.actor[:MAX_NAME]
            result: Snapshot = await ops.create(
                temporal(request), config, agreement, signed, flag=flag, by=by
            )
        except BaseException:
            if getattr(request.state, "claimed", None) == "new":
                access.release(gate.db, agreement.id)
            raise
        return result

    def right_for(update: str, body: Any) -> Right:
        """Recording an invoice or a payment is finance's; every other decision is a
        coordinator's."""
        money = (MilestoneStatus.invoiced, MilestoneStatus.paid)
        if update == "record_milestone" and getattr(body, "status", None) in money:
            return Right.money
        return Right.decide

    def stamped(request: Request, body: Any) -> Any:
        """The request with the person asking as who made it: the server names the actor,
        never the client (whatever `by` or `recorded_by` a client sends is replaced)."""
        who: Who = request.state.who
        for name in ("by", "recorded_by"):
            if name in type(body).model_fields:
                return body.model_copy(update={name: who.actor[:MAX_NAME]})
        return body

    async def run(request: Request, work: Any) -> Any:
        try:
            return await work
        except ops.OperationError as error:
            raise refused(request, 409, error) from None

    def ops_run(request: Request, work: Any, status: int) -> Any:
        try:
            return work()
        except ops.OperationError as error:
            raise refused(request, status, error) from None

    # --- API -------------------------------------------------------------------------------

    api = [Depends(bearer)]

    @app.get("/api/agreements", dependencies=api)
    def api_list(request: Request) -> list[dict[str, Any]]:
        """The agreements of the organisations the token's person belongs to."""
        return [r.model_dump(mode="json") for r in visible(request, ops.agreements(config))]

    @app.post("/api/agreements", dependencies=api, status_code=201)
    async def api_create(
        request: Request, signed: SignedOn = None, organisation: Organisation = None
    ) -> Snapshot:
        """The agreement file (TOML) as the body. An agreement whose term has started is
        taken on only with `?signed=YYYY-MM-DD` (or `signing.signed` in the file): as
        signed, sending nothing for what is past; one whose term is over is refused (422).
        It belongs to `?organisation=` (needed when the person coordinates for more than
        one)."""
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            agreement = loads_agreement(body, source="request")
        except AgreementFileError as error:
            raise refused(request, 422, error) from None
        flag = "?signed=YYYY-MM-DD"
        ops_run(request, lambda: ops.taken_on(agreement, signed, flag=flag), 422)
        if wrong := owned_by(request, agreement.id, organisation):
            raise refused(request, 403 if wrong.code == "not-allowed" else 422, wrong)
        result: Snapshot = await run(request, create_owned(request, agreement, signed, flag))
        return result

    @app.get("/api/agreements/{agreement_id}", dependencies=api)
    async def api_show(agreement_id: str, request: Request) -> Snapshot:
        may(request, agreement_id)
        try:
            result: Snapshot = await ops.state(temporal(request), agreement_id)
        except ops.OperationError as error:
            raise refused(request, 404, error) from None
        return result

    @app.get("/api/agreements/{agreement_id}/milestones", dependencies=api)
    def api_milestones(agreement_id: str, request: Request) -> list[MilestoneState]:
        """Every milestone with its status as of today, from the read model."""
        may(request, agreement_id)
        ops_run(request, lambda: ops.agreement(config, agreement_id), 404)
        return ops.milestones(config, agreement_id)

    @app.get("/api/upcoming", dependencies=api)
    def api_upcoming(
        request: Request, days: int = 60, role: str = "coordinator"
    ) -> list[dict[str, Any]]:
        """Coming milestones across every agreement that has not ended, for one role
        (finance also sees instalments not yet paid), from the read model."""
        rows = ops_run(request, lambda: ops.upcoming_all(config, days, role), 422)
        rows = visible(request, rows, key=lambda r: r[0].id)
        return [{"agreement": a.id, **m.model_dump(mode="json")} for a, m in rows]

    def finance_rows(
        request: Request, start: dt.date, end: dt.date, organisation: str
    ) -> list[dict[str, Any]]:
        """The finance export's rows for the agreements the person may read (and of one
        organisation when named), as agreements/finance.py writes them."""
        items = ops.instalments_between(config, start, end)
        items = visible(request, items, key=lambda r: r[0].id)
        if organisation:
            owned = access.owners(gate.db)
            items = [r for r in items if owned.get(r[0].id) == organisation]
        return finance.rows(items, ops.terms_of(config, items))

    def finance_file(found: list[dict[str, Any]], start: dt.date, language: str) -> Response:
        name = text(language, "instalments") + f"-{start.isoformat()}.csv"
        return Response(
            finance.as_csv(found, language),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/api/finance/instalments", dependencies=api)
    def api_finance(
        request: Request,
        start: Annotated[dt.date, Query(alias="from")],
        end: Annotated[dt.date, Query(alias="to")],
        organisation: Annotated[str, Query(max_length=64)] = "",
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> Any:
        """Every instalment from `from` to `to` (effective dates, inclusive) with its status,
        payer and payee by name and organisation number, amount and invoice number: as JSON,
        or (`format=csv`) as Swedish Excel opens it."""
        found = ops_run(request, lambda: finance_rows(request, start, end, organisation), 422)
        if format == "csv":
            return finance_file(found, start, api_language(request))
        return found

    @app.get("/api/agreements/{agreement_id}/outbox", dependencies=api)
    def api_outbox(agreement_id: str, request: Request) -> list[dict[str, Any]]:
        may(request, agreement_id)
        return [r.model_dump(mode="json") for r in ops.outbox(config, agreement_id)]

    # --- webhooks: an organisation's endpoints, for its administrators -----------------------

    def hooks_of(request: Request) -> list[str]:
        """The organisations whose webhooks the person asking may manage."""
        who: Who = request.state.who
        if who.local and who.scope is None:
            return [o.id for o in access.organisations(gate.db)]
        return who.organisations(Right.administer)

    def hook_refused(request: Request, error: Exception, status: int = 422) -> Refused:
        return refused(request, 404 if "no-" in getattr(error, "code", "") else status, error)

    def own_endpoint(request: Request, endpoint_id: str) -> WebhookEndpoint:
        found = hook_registry.endpoint(gate.db, endpoint_id)
        if found is None or found.organisation_id not in hooks_of(request):
            raise hook_refused(request, hook_registry.EndpointRefused("webhook-no-endpoint"))
        return found

    @app.get("/api/webhooks", dependencies=api)
    def api_webhooks(request: Request) -> dict[str, Any]:
        """The webhook endpoints of the organisations the person administers (never their
        secrets), and the event types an endpoint can ask for."""
        mine = hooks_of(request)
        return {
            "types": list(hook_events.TYPES),
            "endpoints": [endpoint_json(e) for e in hook_registry.endpoints(gate.db, mine)],
        }

    @app.post("/api/webhooks", dependencies=api, status_code=201)
    def api_add_webhook(request: Request, body: EndpointIn) -> dict[str, Any]:
        """Register an endpoint for one of the organisations the person administers. The
        answer holds its signing secret (`secret`): shown this once, never again."""
        mine = hooks_of(request)
        organisation = body.organisation or (mine[0] if len(mine) == 1 else None)
        if organisation is None or organisation not in mine:
            who: Who = request.state.who
            raise refused(
                request,
                403,
                ops.OperationError(
                    "your role does not allow this",
                    "not-allowed",
                    agreement="-",
                    role=sorted({r.value for r in who.roles.values()}),
                ),
            )
        try:
            row = hook_registry.add_endpoint(
                gate.db,
                organisation,
                body.url,
                body.types,
                body.description,
                request.state.who.actor,
                config.webhooks_allow_private,
            )
        except (hook_registry.EndpointRefused, hook_targets.TargetRefused) as error:
            raise refused(request, 422, error) from None
        log.info("webhook endpoint %s added for %s", row.id, organisation)
        return {**endpoint_json(row), "secret": row.secret}

    @app.post("/api/webhooks/{endpoint_id}/enabled", dependencies=api)
    def api_webhook_enabled(request: Request, endpoint_id: str, body: Enabled) -> dict[str, Any]:
        """Turn an endpoint on or off."""
        own_endpoint(request, endpoint_id)
        return endpoint_json(hook_registry.set_enabled(gate.db, endpoint_id, body.enabled))

    @app.get("/api/webhooks/{endpoint_id}/deliveries", dependencies=api)
    def api_webhook_deliveries(
        request: Request, endpoint_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> list[dict[str, Any]]:
        """The endpoint's deliveries, newest first, each with its attempts and answers."""
        own_endpoint(request, endpoint_id)
        rows = hook_registry.deliveries(gate.db, endpoint_id, limit)
        tried = hook_registry.attempts(gate.db, [r.id for r in rows])
        return [delivery_json(r, tried[r.id]) for r in rows]

    @app.post("/api/webhooks/deliveries/{delivery_id}/resend", dependencies=api, status_code=202)
    def api_webhook_resend(request: Request, delivery_id: str) -> dict[str, Any]:
        """Send a delivery again: the same body under the same webhook-id."""
        try:
            row = hook_registry.resend(gate.db, delivery_id, hooks_of(request))
        except hook_registry.EndpointRefused as error:
            raise hook_refused(request, error, 409) from None
        return delivery_json(row, [])

    def update_id(request: Request, update: str, key: str | None) -> str | None:
        """The update id for an idempotency key, or a 400 naming what is wrong with it."""
        if key is None:
            return None
        try:
            return ops.update_id_for(update, key)
        except ops.OperationError as error:
            raise refused(request, 400, error) from None

    async def decide(
        request: Request, agreement_id: str, update: str, body: Any, key: str | None = None
    ) -> Snapshot:
        may(request, agreement_id, right_for(update, body))
        body = stamped(request, body)
        uid = update_id(request, update, key)
        result: Snapshot = await run(
            request,
            ops.decide(temporal(request), agreement_id, update, body, config=config, update_id=uid),
        )
        return result

    async def round_action(
        request: Request, agreement_id: str, action: str, body: Any
    ) -> RoundAnswer:
        may(request, agreement_id, Right.decide)
        result: RoundAnswer = await run(
            request,
            ops.round_action(
                temporal(request), agreement_id, action, stamped(request, body), config=config
            ),
        )
        return result

    async def terms_body(request: Request) -> Agreement:
        """An agreement file (TOML) as the request body; 422 with every problem."""
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            return loads_agreement(body, source="request")
        except AgreementFileError as error:
            raise refused(request, 422, error) from None

    @app.post("/api/agreements/{agreement_id}/prerequisites", dependencies=api)
    async def api_confirm(
        agreement_id: str, body: ConfirmPrerequisites, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        return await decide(request, agreement_id, "confirm_prerequisites", body, key)

    @app.put("/api/agreements/{agreement_id}/draft", dependencies=api)
    async def api_edit_draft(
        agreement_id: str, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        """Replace a draft's terms with the agreement file in the body (TOML, same id)."""
        draft = EditDraft(agreement=await terms_body(request), by="-")
        return await decide(request, agreement_id, "edit_draft", draft, key)

    @app.post("/api/agreements/{agreement_id}/documents", dependencies=api)
    async def api_add_document(
        agreement_id: str,
        request: Request,
        file: UploadFile,
        kind: Annotated[DocumentKind, Form()] = DocumentKind.attachment,
        name: Annotated[str, Form(max_length=200)] = "",
        key: IdempotencyKey = None,
    ) -> Snapshot:
        """Add a document (a PDF: the agreement text or an attachment) to a draft: checked,
        kept by its SHA-256, and named in the terms, so the signers sign it with them."""
        may(request, agreement_id, Right.decide)
        data = await file.read()
        title = name.strip() or Path(file.filename or "").stem.strip()[:200] or "dokument"
        try:
            document = await asyncio.to_thread(ops.take_document, config, data, title, kind)
        except DocumentRefused as error:
            said = error.said(api_language(request))
            raise Refused(422, said, code=error.code, params=error.params) from None
        by = request.state.who.actor[:MAX_NAME]
        uid = update_id(request, "add_document", key)
        result: Snapshot = await run(
            request,
            ops.add_document(temporal(request), config, agreement_id, document, by, uid),
        )
        return result

    @app.get("/api/agreements/{agreement_id}/documents/{sha256}", dependencies=api)
    async def api_document(agreement_id: str, sha256: str, request: Request) -> Response:
        """One of the agreement's documents (of any version of its terms), as PDF."""
        may(request, agreement_id, Right.read)
        found = await asyncio.to_thread(ops.documents_of, config, agreement_id)
        if sha256 not in found:
            raise refused(request, 404, ops.OperationError("no such document", "no-document"))
        data = ops_run(request, lambda: ops.document_bytes(config, sha256), 404)
        return pdf(data, f"{found[sha256].name}.pdf")

    @app.post("/api/agreements/{agreement_id}/signing", dependencies=api)
    async def api_sign_start(
        agreement_id: str, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        return await decide(request, agreement_id, "start_signing", StartSigning(by="-"), key)

    @app.post("/api/agreements/{agreement_id}/signing/cancel", dependencies=api)
    async def api_sign_cancel(
        agreement_id: str, body: CancelRequest, request: Request
    ) -> RoundAnswer:
        return await round_action(request, agreement_id, "cancel", body)

    @app.post("/api/agreements/{agreement_id}/signing/paper", dependencies=api)
    async def api_sign_paper(
        agreement_id: str, body: PaperSignature, request: Request
    ) -> RoundAnswer:
        """`recorded_by` is the person asking, whatever the body says."""
        return await round_action(request, agreement_id, "sign_paper", body)

    @app.post("/api/agreements/{agreement_id}/reports", dependencies=api)
    async def api_report(
        agreement_id: str, body: ReportDecision, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        return await decide(request, agreement_id, "record_report", body, key)

    @app.post("/api/agreements/{agreement_id}/milestones/{milestone_id:path}", dependencies=api)
    async def api_milestone(
        agreement_id: str,
        milestone_id: str,
        body: MilestoneBody,
        request: Request,
        key: IdempotencyKey = None,
    ) -> Snapshot:
        """Set a milestone's status. Milestone ids contain colons (`invoice:kommun:forening:1:1`,
        as the timeline and `GET /api/agreements/{id}` show them); they may be sent as they
        are or percent-encoded."""
        try:
            update = MilestoneUpdate(milestone=milestone_id, **body.model_dump())
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise HTTPException(422, problems) from None
        return await decide(request, agreement_id, "record_milestone", update, key)

    @app.post("/api/agreements/{agreement_id}/renewals", dependencies=api)
    async def api_renewal(
        agreement_id: str, body: RenewalRequest, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        return await decide(request, agreement_id, "decide_renewal", body, key)

    @app.post("/api/agreements/{agreement_id}/ending", dependencies=api)
    async def api_terminate(
        agreement_id: str, body: TerminationRequest, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        return await decide(request, agreement_id, "terminate", body, key)

    @app.post("/api/agreements/{agreement_id}/withdrawal", dependencies=api)
    async def api_withdrawal(
        agreement_id: str, body: WithdrawalOutcome, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        """The remaining parties' decision on a party's withdrawal: `end_all` true ends the
        agreement altogether, false goes on without the party."""
        return await decide(request, agreement_id, "withdrawal_outcome", body, key)

    @app.post("/api/agreements/{agreement_id}/amendments", dependencies=api)
    async def api_amend(
        agreement_id: str, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        amendment = Amendment(agreement=await terms_body(request), by="-")
        return await decide(request, agreement_id, "amend", amendment, key)

    # --- calendar feed ----------------------------------------------------------------------

    @app.get("/a/{agreement_id}/calendar.ics")
    async def feed(agreement_id: str, key: str, request: Request, p: int = 0) -> Response:
        """A calendar program's feed: `p` is the person it was given to and `key` binds it
        to them and the agreement; their right to read the agreement is checked each time,
        so a person who leaves the organisation (or is deactivated) loses the feed."""
        not_found = Refused(404, text(api_language(request), "Not found."), code="not-found")
        if not same(key, gate.feed_key(agreement_id, p or None)):
            raise not_found
        who = await asyncio.to_thread(access.person_by_id, gate.db, p) if p else None
        if who is None and not (p == 0 and gate.is_local(request)):
            raise not_found
        owner = await asyncio.to_thread(access.owner, gate.db, agreement_id)
        if who is not None and not who.can(Right.read, owner):
            raise not_found
        # From the read model only: a calendar program polls the feed, Temporal is not asked.
        try:
            record = await asyncio.to_thread(ops.agreement, config, agreement_id)
        except ops.OperationError:
            raise not_found from None
        try:
            terms = ops.stored_terms(config, record.terms_sha256)
        except ops.OperationError as error:
            raise refused(request, 503, error, headers={"Retry-After": "1"}) from None
        today = ops.stockholm_today()
        rows = await run(request, asyncio.to_thread(ops.milestones, config, agreement_id, today))
        coming = [m for m in rows if m.effective_date >= today]
        body = calendar(terms, coming, dt.datetime.now(dt.UTC))
        return Response(body, media_type="text/calendar; charset=utf-8")

    @app.get("/me/calendar.ics")
    async def my_feed(key: str, request: Request, p: int = 0) -> Response:
        """A person's own feed: the coming milestones of every agreement they may read now
        (finance: the instalments), each with an alarm. Bound to the person like an
        agreement's feed; it follows their roles at every fetch."""
        not_found = Refused(404, text(api_language(request), "Not found."), code="not-found")
        if not p or not same(key, gate.feed_key("*", p)):
            raise not_found
        who = await asyncio.to_thread(access.person_by_id, gate.db, p)
        if who is None:
            raise not_found
        today = ops.stockholm_today()
        owned = await asyncio.to_thread(access.owners, gate.db)
        entries = []
        for record in await asyncio.to_thread(ops.agreements, config):
            owner = owned.get(record.id)
            if record.state == State.ended.value or not who.can(Right.read, owner):
                continue
            try:
                terms = ops.stored_terms(config, record.terms_sha256)
            except ops.OperationError:
                continue  # its terms are written a moment after it starts: next fetch
            rows = await asyncio.to_thread(ops.milestones, config, record.id, today)
            money_only = who.money_only(owner)
            coming = [
                m
                for m in rows
                if m.effective_date >= today and (not money_only or m.kind is MilestoneKind.invoice)
            ]
            entries.append((terms, coming))
        name = text(api_language(request), "Agreements: %(name)s", name=who.name or who.email)
        body = personal_calendar(name, entries, dt.datetime.now(dt.UTC))
        return Response(body, media_type="text/calendar; charset=utf-8")

    # --- signing pages ----------------------------------------------------------------------
    # A signing link is read-only until the signer acts: a GET reads the round through
    # queries and records "opened" only while the signer is still just invited (the round
    # refuses a second one), so reloading a link writes nothing. Tokens stay between the
    # link and the round: the queries answer the signer's public view.

    async def signing_context(
        request: Request, value: str
    ) -> tuple[SigningLink, RoundInfo, Signer, Agreement]:
        link = read_link(secret, value, dt.datetime.now(dt.UTC))
        view = await ops.signing_view(temporal(request), link.agreement, link.round, link.token)
        if view is None or view[1].email != link.signer:
            raise LinkError("The link is not valid.", "link-invalid")
        info, signer = view
        return link, info, signer, await ops.terms_soon(config, info.terms_sha256)

    def client_facts(request: Request) -> tuple[str | None, str | None]:
        """IP and user agent, cut to what is worth keeping before they reach the round."""
        ip = request.client.host if request.client else None
        agent = request.headers.get("user-agent")
        return (ip[:MAX_IP] if ip else None), (agent[:MAX_USER_AGENT] if agent else None)

    def outcome_page(
        request: Request, signer: Signer, info: RoundInfo, terms: Agreement, value: str = ""
    ) -> HTMLResponse:
        """The signer's page once they have acted or the round is over: with the sealed
        signing record to download once every party has signed."""
        record = None
        if value and info.outcome is RoundOutcome.completed:
            link = read_link(secret, value, dt.datetime.now(dt.UTC))
            record = ops.sealed_record(config, link.agreement, link.round)
        return page(
            request,
            "signed.html",
            language=signer.language,
            signer=signer,
            info=info,
            terms=terms,
            record=record,
            value=value,
        )

    @app.get("/sign/{value}/documents/{sha256}")
    async def signing_document(value: str, sha256: str, request: Request) -> Response:
        """A document of the round's terms, opened by a signer from their link."""
        try:
            _, _, _, terms = await signing_context(request, value)
        except (LinkError, ops.OperationError) as error:
            return refusal(request, error, 403)
        document = next((d for d in terms.documents if d.sha256 == sha256), None)
        if document is None:
            return refusal(request, ops.OperationError("no such document", "no-document"), 404)
        try:
            data = await asyncio.to_thread(ops.document_bytes, config, sha256)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        return pdf(data, f"{document.name}.pdf")

    @app.get("/sign/{value}/record")
    async def signing_record(value: str, request: Request) -> Response:
        """The sealed signing record of the signer's round, once it is complete."""
        try:
            link, _, _, _ = await signing_context(request, value)
        except (LinkError, ops.OperationError) as error:
            return refusal(request, error, 403)
        return await record_file(request, link.agreement, link.round)

    @app.post("/callbacks/signing/{agreement_id}/{number}/{mac}")
    async def provider_callback(
        agreement_id: str, number: int, mac: str, request: Request
    ) -> Response:
        """The signing provider says a round's document changed. Only a hint (it may come
        twice, late or out of order): the round asks the provider itself. A callback whose
        address was not made by this service is refused."""
        if not callback_ok(secret, agreement_id, number, mac):
            return JSONResponse({"detail": "not a callback of this service"}, status_code=403)
        handle = temporal(request).get_workflow_handle(round_workflow_id(agreement_id, number))
        with contextlib.suppress(RPCError):  # the round is over (or never was): nothing to tell
            await handle.signal("provider_changed")
        return JSONResponse({"ok": True})

    @app.get("/sign/{value}", response_class=HTMLResponse)
    async def sign_page(value: str, request: Request) -> HTMLResponse:
        try:
            link, info, signer, terms = await signing_context(request, value)
        except (LinkError, ops.OperationError) as error:
            return refusal(request, error, 403)
        if (
            signer.status in (SignerStatus.signed, SignerStatus.declined)
            or info.outcome is not RoundOutcome.open
        ):
            return outcome_page(request, signer, info, terms, value)
        if signer.status is SignerStatus.invited:
            ip, agent = client_facts(request)
            try:
                # No event log row for a refusal: a reload racing the first "opened" is
                # refused by the round and the page shows all the same.
                answer = await ops.round_action(
                    temporal(request),
                    link.agreement,
                    "open",
                    SignRequest(token=link.token, ip=ip, user_agent=agent),
                    round_number=link.round,
                )
                signer = signer.model_copy(update={"status": answer.status or signer.status})
            except ops.OperationError:
                pass
        return page(
            request,
            "sign.html",
            language=signer.language,
            signer=signer,
            info=info,
            terms=terms,
            value=value,
            max_reason=MAX_REASON,
        )

    @app.post("/sign/{value}", response_class=HTMLResponse)
    async def sign_post(
        value: str,
        request: Request,
        action: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        try:
            link, info, signer, terms = await signing_context(request, value)
        except (LinkError, ops.OperationError) as error:
            return refusal(request, error, 403)
        ip, agent = client_facts(request)
        body: SignRequest | DeclineRequest
        reason = reason.strip()
        lang = page_language(request, signer.language)
        if action == "sign":
            body = SignRequest(token=link.token, ip=ip, user_agent=agent)
        elif action == "decline" and not reason:
            return problem(request, text(lang, "Say why you decline."), 400, lang)
        elif action == "decline" and len(reason) > MAX_REASON:
            too_long = text(
                lang,
                "The reason may be at most %(most)s characters (yours has %(length)s): "
                "shorten it and try again.",
                most=MAX_REASON,
                length=len(reason),
            )
            return problem(request, too_long, 400, lang)
        elif action == "decline":
            body = DeclineRequest(token=link.token, reason=reason, ip=ip, user_agent=agent)
        else:
            return problem(request, text(lang, "Unknown action."), 400, lang)
        try:
            answer = await ops.round_action(
                temporal(request),
                link.agreement,
                action,
                body,
                config=config,
                round_number=link.round,
            )
        except ops.OperationError as error:
            return refusal(request, error, 409, lang)
        signer = signer.model_copy(update={"status": answer.status or signer.status})
        info = info.model_copy(update={"outcome": answer.outcome})
        return outcome_page(request, signer, info, terms, value)

    # --- coordinators' pages ----------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, out: int = 0) -> HTMLResponse:
        return login_form(request, status=200, out=bool(out))

    def login_form(request: Request, status: int, **values: Any) -> HTMLResponse:
        """The sign-in page: the identity provider's button when one is set, and the local
        key's form on this machine only."""
        return page(
            request,
            "login.html",
            status=status,
            oidc=gate.oidc,
            oidc_name=config.oidc_name,
            local=gate.is_local(request),
            **values,
        )

    @app.get("/login/oidc")
    async def login_oidc(request: Request) -> Response:
        lang = page_language(request)
        if not gate.oidc:
            absent = text(lang, "Sign-in through an identity provider is not set up.")
            return problem(request, absent, 404)
        cookie: list[str] = []
        try:
            redirect: Response = await gate.start(request, cookie)
        except Exception as error:  # the provider's discovery document could not be read
            log.warning("sign-in could not start: %r", error)
            message = text(
                lang, "The identity provider cannot be reached just now: try again in a while."
            )
            return problem(request, message, 503)
        redirect.set_cookie(
            SIGN_IN_COOKIE,
            cookie[0],
            max_age=int(SIGN_IN_LASTS.total_seconds()),
            httponly=True,
            secure=gate.https,
            samesite="lax",
            path="/login",
        )
        return redirect

    @app.get("/login/callback")
    async def login_callback(request: Request) -> Response:
        lang = page_language(request)
        try:
            claims = await gate.finish(request)
        except SignInFailed as error:
            log.warning("sign-in failed: %s", error)
            message = text(lang, "The sign-in did not go through: start it again.")
            return login_form(request, status=400, error=message)
        issuer = str(claims.get("iss") or config.oidc_issuer)
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        name = claims.get("name") if isinstance(claims.get("name"), str) else None
        person = await asyncio.to_thread(
            access.signed_in, gate.db, issuer, str(claims["sub"]), email, name
        )
        if person is None:
            log.warning("sign-in refused: no active person for subject %s", claims["sub"])
            message = text(
                lang,
                "You are signed in with your organisation as %(email)s, but you have no "
                "access to the agreement service. Ask an administrator to add you.",
                email=email or str(claims["sub"]),
            )
            return login_form(request, status=403, error=message)
        response = RedirectResponse("/todo", status_code=303)
        gate.open(response, person.id)
        response.delete_cookie(SIGN_IN_COOKIE, path="/login")
        log.info("signed in: person %s", person.id)
        return response

    @app.post("/login")
    def login(request: Request, token: Annotated[str, Form()]) -> Response:
        address, wait, held = held_back(request)
        lang = page_language(request)
        if held is not None:
            refused = login_form(request, status=429, error=explain(lang, held))
            refused.headers["Retry-After"] = str(wait)
            return refused
        if not gate.is_local(request):
            message = text(lang, "The local key is taken on the server itself only.")
            return login_form(request, status=403, error=message)
        if not same(token, gate.local_key):
            throttle.failed(address, "login")
            return login_form(request, status=401, error=text(lang, "Wrong key."))
        response = RedirectResponse("/todo", status_code=303)
        gate.open(response, None)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        who = gate.from_cookie(request)
        response = RedirectResponse("/login?out=1", status_code=303)
        if who is not None:
            request.state.who = who
            if wrong := forged(request, csrf):
                return wrong
        gate.close(request, response)
        return response

    def require_login(request: Request) -> None:
        who = gate.from_cookie(request)
        if who is None:
            raise HTTPException(303, headers={"Location": "/login"})
        request.state.who = who

    def forged(request: Request, csrf: str) -> HTMLResponse | None:
        """A page refusing a form that is not from this service (CSRF check), or None."""
        if same(csrf, gate.csrf(request.state.who)) and csrf:
            return None
        lang = page_language(request)
        message = text(lang, "The form is not from this service: open the page again and retry.")
        return problem(request, message, 403)

    pages = [Depends(require_login)]

    def reader(request: Request) -> None:
        """Someone signed in on the pages, or a client with a token."""
        who = gate.from_cookie(request) or gate.from_bearer(request)
        if who is None:
            raise HTTPException(303, headers={"Location": "/login"})
        request.state.who = who

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(reader)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(reader)])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Avtalstjänsten – API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    @app.get("/todo", response_class=HTMLResponse, dependencies=pages)
    async def todo_page(request: Request) -> HTMLResponse:
        """Att göra: what needs attention today in the person's agreements, each line
        saying what to do and linking to where it is done."""
        who: Who = request.state.who
        owned = await asyncio.to_thread(access.owners, gate.db)
        listed = await asyncio.to_thread(ops.agreements, config)
        seen = [a for a in listed if who.can(Right.read, owned.get(a.id))]
        money_only = {a.id for a in seen if who.money_only(owned.get(a.id))}
        rounds = []
        for a in seen:
            if a.state != State.signing.value or a.id in money_only:
                continue
            try:
                info = await ops.current_round(temporal(request), a.id)
            except ops.OperationError:
                continue
            if info is not None and info.outcome is RoundOutcome.open:
                done = sum(1 for x in info.signers if x.status is SignerStatus.signed)
                rounds.append(Round(a.id, done, len(info.signers), info.expires_at))
        items = await asyncio.to_thread(
            attention,
            gate.db,
            {a.id for a in seen},
            ops.stockholm_today(),
            rounds,
            money_only,
        )
        return page(request, "todo.html", items=items, Why=Why, soon=SOON)

    @app.get("/", response_class=HTMLResponse, dependencies=pages)
    def index(
        request: Request,
        q: Annotated[str, Query(max_length=200)] = "",
        organisation: Annotated[str, Query(max_length=64)] = "",
        state: Annotated[str, Query(max_length=16)] = "",
        year: Annotated[str, Query(max_length=4)] = "",
        copy: Annotated[str, Query(max_length=64)] = "",
    ) -> HTMLResponse:
        """The person's agreements, searched (title, reference, id) and filtered by
        organisation, state and a year the term touches."""
        return listing(request, q, organisation, state, year, copy)

    def listing(
        request: Request,
        q: str = "",
        organisation: str = "",
        state: str = "",
        year: str = "",
        copy: str = "",
        status: int = 200,
        **kept: Any,
    ) -> HTMLResponse:
        """The list page; `kept` holds a form sent back with what was wrong with it."""
        rows = visible(request, ops.agreements(config))
        owned = access.owners(gate.db)
        mine = sorted({owned[r.id] for r in rows if r.id in owned})
        words = q.casefold().split()
        if words:
            rows = [
                r
                for r in rows
                if all(w in f"{r.title} {r.reference or ''} {r.id}".casefold() for w in words)
            ]
        if organisation:
            rows = [r for r in rows if owned.get(r.id) == organisation]
        if state in State.__members__:
            rows = [r for r in rows if r.state == state]
        if year.isdigit():
            rows = [r for r in rows if r.start.year <= int(year) <= r.end.year]
        names = organisation_names()
        draft = ""
        if copy and not entitled(request, copy, Right.read):
            try:
                earlier = ops.stored_terms(config, ops.agreement(config, copy).terms_sha256)
            except ops.OperationError:
                earlier = None
            if earlier is not None:
                lang = page_language(request)
                title = text(lang, "%(title)s (copy)", title=earlier.title)
                draft = template_from(earlier, f"{earlier.id}-2"[:64], title)
        kept.setdefault("draft", draft)
        return page(
            request,
            "list.html",
            status=status,
            rows=rows,
            organisations=creatable(request),
            filters={"q": q, "organisation": organisation, "state": state, "year": year},
            owners=[(o, names.get(o, o)) for o in mine],
            states=list(State),
            filtered=bool(words or organisation or state or year),
            **kept,
        )

    def creatable(request: Request) -> list[Any]:
        """The organisations the person asking may create agreements for."""
        who: Who = request.state.who
        return [o for o in access.organisations(gate.db) if who.can(Right.create, o.id)]

    @app.post("/create", dependencies=pages)
    async def create_page(
        request: Request,
        csrf: Annotated[str, Form()],
        terms: Annotated[str, Form()],
        signed: Annotated[str, Form()] = "",
        organisation: Annotated[str, Form()] = "",
    ) -> Response:
        if wrong := forged(request, csrf):
            return wrong
        lang = page_language(request)

        def again(problems: list[str], status: int) -> HTMLResponse:
            """The list page with the form as it was sent and what is wrong above it:
            nothing typed is lost."""
            return listing(
                request,
                status=status,
                draft=terms,
                draft_problems=problems,
                draft_signed=signed.strip()[:10],
                draft_organisation=organisation,
            )

        try:
            day = dt.date.fromisoformat(signed.strip()) if signed.strip() else None
        except ValueError:
            message = text(
                lang, "Already signed on: %(value)s is not a date (YYYY-MM-DD).", value=signed[:40]
            )
            return again([message], 422)
        flag = "«" + text(lang, "Already signed on") + "»"
        try:
            agreement = loads_agreement(terms, source=text(lang, "the agreement file"))
            agreement = ops.taken_on(agreement, day, flag=flag)
        except AgreementFileError as error:
            return again([p.located(lang) for p in error.problems], 422)
        except ops.OperationError as error:
            return again([explain(lang, error)], 422)
        if not_theirs := owned_by(request, agreement.id, organisation.strip() or None):
            return again(
                [explain(lang, not_theirs)], 403 if not_theirs.code == "not-allowed" else 422
            )
        try:
            await create_owned(request, agreement, day, flag)
        except ops.OperationError as error:
            return again([explain(lang, error)], 409)
        return RedirectResponse(f"/a/{agreement.id}", status_code=303)

    # --- drafting in the form (agreements/web/drafting.py) ---------------------------------

    PLAN_EMAILS = 300  # emails listed beside the form (all are counted)

    def draft_plan(agreement: Agreement | None, lang: str) -> dict[str, Any] | None:
        """Every milestone and email the draft will bring, from the schedule engine, with
        the picture the agreement's page will show."""
        if agreement is None:
            return None
        result = plan(agreement, dt.datetime.now(dt.UTC), scenario=Scenario.plan)
        states = drafting.first_states(result)
        today = ops.stockholm_today()
        by_id = {m.id: m for m in result.milestones}
        emails = [
            {
                "send_at": e.send_at,
                "to": e.to.name,
                "subject": render_subject(agreement, by_id[e.milestone_id], e),
            }
            for e in result.emails[:PLAN_EMAILS]
        ]
        signers = sum(
            1
            for party in agreement.parties.values()
            if party.signs
            for c in party.contacts
            if Role.signatory in c.roles
        )
        return {
            "start": result.start,
            "end": result.end,
            "periods": result.periods,
            "ending": result.ending,
            "milestones": states,
            "emails": emails,
            "email_count": len(result.emails),
            "signers": signers,
            "picture": timeline_svg(
                states, result.start, result.end, today, picture_words(lang, agreement.title)
            ),
        }

    def party_choices(fields: drafting.Fields, lang: str) -> list[tuple[str, str]]:
        """The parties as the form's lists offer them: by row, named as typed so far."""
        return [
            (str(p), fields.get(f"party.{p}.name") or text(lang, "Party %(n)s", n=n))
            for n, p in enumerate(drafting.rows(fields, "party"), start=1)
        ]

    KEPT_PARTS = {
        "reviews": N_("reviews"),
        "reminders": N_("reminder times"),
        "signing": N_("signing reminders"),
        "term": N_("the last possible end"),
        "termination": N_("rescission"),
        "withdrawal": N_("when withdrawal opens"),
        "meetings": N_("meeting dates"),
    }

    def kept_note(fields: drafting.Fields, lang: str) -> str | None:
        """What the terms hold that the form does not show, said once under the form."""
        try:
            kept = json.loads(fields.get("kept") or "{}")
        except ValueError:
            return None
        names = [text(lang, KEPT_PARTS.get(k, k)) for k in kept if isinstance(kept, dict)]
        if not names:
            return None
        return text(
            lang,
            "Kept as they are (the form does not show them; change them in the agreement "
            "file): %(parts)s.",
            parts=", ".join(names),
        )

    def drafting_page(
        request: Request,
        fields: drafting.Fields,
        *,
        editing: Snapshot | None = None,
        show_problems: bool = False,
        status: int = 200,
        signed: str = "",
        organisation: str = "",
        extra: list[str] | None = None,
        field_errors: dict[str, list[str]] | None = None,
    ) -> HTMLResponse:
        """The drafting form with the plan beside it; the problems next to their fields
        once the person has asked to check or save."""
        lang = page_language(request)
        draft = drafting.build(fields, lang)
        for message in extra or []:
            draft.add(None, message)
        for name, messages in (field_errors or {}).items():
            for message in messages:
                draft.add(name, message)
        show_problems = show_problems or bool(field_errors)
        errors = draft.errors if show_problems else {}
        shown = (len(draft.general) + sum(map(len, errors.values()))) if show_problems else 0
        if editing is None:
            heading, action = text(lang, "New agreement"), "/draft"
            save, cancel = text(lang, "Add the agreement"), "/"
        else:
            heading = text(lang, "Change: %(title)s", title=editing.title)
            action = f"/a/{editing.agreement_id}/draft"
            cancel = f"/a/{editing.agreement_id}"
            save = (
                text(lang, "Save the draft")
                if editing.state is State.draft
                else text(lang, "Send the amendment for signing")
            )
        intro = None
        if editing is not None and editing.state is not State.draft:
            intro = text(
                lang,
                "The agreement is signed: a change is an amendment, which every party signs "
                "before it applies. The short name and the start stay as they are.",
            )
        return page(
            request,
            "draft.html",
            status=status,
            f=fields,
            draft=draft,
            errors=errors,
            shown_problems=shown,
            plan=draft_plan(draft.agreement, lang),
            plan_problems=draft.count,
            plan_url=f"{action}/plan",
            parties=party_choices(fields, lang),
            rows=drafting.rows,
            document_facts=drafting.document_facts,
            where=functools.partial(drafting.where, fields=fields, lang=lang),
            checklist_keys=list(CHECKLIST),
            organisations=creatable(request),
            organisation=organisation,
            signed=signed,
            editing=editing,
            heading=heading,
            intro=intro,
            action=action,
            save_label=save,
            cancel=cancel,
            kept_note=kept_note(fields, lang),
            form_key=uuid.uuid4().hex if editing is not None else None,
        )

    def may_create(request: Request) -> bool:
        who: Who = request.state.who
        return bool(creatable(request)) or who.local

    @app.get("/draft", response_class=HTMLResponse, dependencies=pages)
    def new_draft(request: Request, copy: Annotated[str, Query(max_length=64)] = "") -> Response:
        """A new agreement in the form: empty, or as a copy of an earlier one."""
        lang = page_language(request)
        if not may_create(request):
            return problem(request, text(lang, "Your role does not let you add agreements."), 403)
        fields = drafting.blank()
        if copy and not entitled(request, copy, Right.read):
            try:
                earlier = ops.stored_terms(config, ops.agreement(config, copy).terms_sha256)
            except ops.OperationError as error:
                return refusal(request, error, 404)
            title = text(lang, "%(title)s (copy)", title=earlier.title)
            fields = drafting.fields_of(copy_of(earlier, earlier.id, title))
            fields["id"] = ""  # made from the new title, or typed
        return drafting_page(request, fields)

    async def draft_form(request: Request) -> tuple[drafting.Fields, Any]:
        form = await request.form(max_fields=6000, max_files=20)
        return drafting.read_form(form), form

    async def with_uploads(
        request: Request, fields: drafting.Fields, form: Any
    ) -> tuple[drafting.Fields, dict[str, list[str]]]:
        """The form with the documents it brought (checked, then kept in the store), and
        what was wrong with those that were not taken, by the upload field."""
        lang = page_language(request)
        kind = DocumentKind.text if form.get("upload_kind") == "text" else DocumentKind.attachment
        refused: list[str] = []
        for upload in form.getlist("upload"):
            if isinstance(upload, str) or not upload.filename:
                continue
            data = await upload.read()
            name = Path(upload.filename).stem.strip()[:200] or text(lang, "Document")
            try:
                document = await asyncio.to_thread(ops.take_document, config, data, name, kind)
            except DocumentRefused as error:
                refused.append(error.said(lang))
                continue
            fields = drafting.with_document(fields, document)
        texts = [
            n
            for n in drafting.rows(fields, "document")
            if fields.get(f"document.{n}.kind") == "text"
        ]
        if texts:  # there is one agreement text: what comes next is an attachment
            fields["upload_kind"] = DocumentKind.attachment.value
        return fields, ({"upload": refused} if refused else {})

    @app.post("/draft/plan", response_class=HTMLResponse, dependencies=pages)
    @app.post("/a/{agreement_id}/draft/plan", response_class=HTMLResponse, dependencies=pages)
    async def draft_plan_fragment(request: Request, agreement_id: str = "") -> Response:
        """The plan beside the form, for the page's script to show as the person types.
        Nothing is written."""
        fields, form = await draft_form(request)
        if wrong := forged(request, str(form.get("csrf", ""))):
            return wrong
        if agreement_id and (wrong_right := entitled(request, agreement_id, Right.decide)):
            return refusal(request, wrong_right, 404)
        lang = page_language(request)
        draft = drafting.build(fields, lang)
        return templates(lang).TemplateResponse(
            request,
            "_plan.html",
            {"plan": draft_plan(draft.agreement, lang), "plan_problems": draft.count},
        )

    @app.post("/draft", response_class=HTMLResponse, dependencies=pages)
    async def save_new_draft(request: Request) -> Response:
        fields, form = await draft_form(request)
        if wrong := forged(request, str(form.get("csrf", ""))):
            return wrong
        lang = page_language(request)
        signed = str(form.get("signed", "")).strip()[:10]
        organisation = str(form.get("organisation", "")).strip()[:64]
        action = str(form.get("do", "save"))
        again = functools.partial(drafting_page, request, signed=signed, organisation=organisation)
        if action.startswith("more:"):
            return again(drafting.grown(fields, action[5:]))
        fields, refused = await with_uploads(request, fields, form)
        if action == "upload" or refused:
            return again(fields, field_errors=refused, status=422 if refused else 200)
        draft = drafting.build(fields, lang)
        if action != "save" or draft.agreement is None:
            return again(fields, show_problems=True, status=200 if action != "save" else 422)
        try:
            day_signed = dt.date.fromisoformat(signed) if signed else None
        except ValueError:
            message = text(
                lang, "Already signed on: %(value)s is not a date (YYYY-MM-DD).", value=signed
            )
            return again(fields, show_problems=True, status=422, extra=[message])
        flag = "«" + text(lang, "Already signed on") + "»"
        try:
            agreement = ops.taken_on(draft.agreement, day_signed, flag=flag)
        except ops.OperationError as error:
            return again(fields, show_problems=True, status=422, extra=[explain(lang, error)])
        if not_theirs := owned_by(request, agreement.id, organisation or None):
            code = 403 if not_theirs.code == "not-allowed" else 422
            return again(fields, show_problems=True, status=code, extra=[explain(lang, not_theirs)])
        try:
            await create_owned(request, agreement, day_signed, flag)
        except ops.OperationError as error:
            return again(fields, show_problems=True, status=409, extra=[explain(lang, error)])
        return RedirectResponse(f"/a/{agreement.id}", status_code=303)

    async def editable(request: Request, agreement_id: str) -> Snapshot | Response:
        """The agreement to change in the form, or the page saying why it cannot be."""
        if wrong := entitled(request, agreement_id, Right.decide):
            return refusal(request, wrong, 403 if wrong.code == "not-allowed" else 404)
        try:
            snapshot = await ops.state(temporal(request), agreement_id)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        if snapshot.state not in (State.draft, State.signed, State.active, State.ending):
            lang = page_language(request)
            message = text(
                lang,
                "A %(state)s agreement cannot be changed.",
                state=word_for(lang, State, snapshot.state),
            )
            return problem(request, message, 409)
        return snapshot

    @app.get("/a/{agreement_id}/draft", response_class=HTMLResponse, dependencies=pages)
    async def change_page(agreement_id: str, request: Request) -> Response:
        """The agreement's terms in the form: a draft to edit, or an amendment to send."""
        found = await editable(request, agreement_id)
        if not isinstance(found, Snapshot):
            return found
        try:
            terms = await ops.terms_soon(config, found.terms_sha256)
        except ops.OperationError as error:
            return refusal(request, error, 503)
        return drafting_page(request, drafting.fields_of(terms), editing=found)

    @app.post("/a/{agreement_id}/draft", response_class=HTMLResponse, dependencies=pages)
    async def save_change(agreement_id: str, request: Request) -> Response:
        fields, form = await draft_form(request)
        if wrong := forged(request, str(form.get("csrf", ""))):
            return wrong
        found = await editable(request, agreement_id)
        if not isinstance(found, Snapshot):
            return found
        fields["id"] = agreement_id  # the short name is the agreement's for good
        lang = page_language(request)
        action = str(form.get("do", "save"))
        if action.startswith("more:"):
            return drafting_page(request, drafting.grown(fields, action[5:]), editing=found)
        fields, refused = await with_uploads(request, fields, form)
        if action == "upload" or refused:
            status = 422 if refused else 200
            return drafting_page(
                request, fields, editing=found, field_errors=refused, status=status
            )
        draft = drafting.build(fields, lang)
        if action != "save" or draft.agreement is None:
            status = 200 if action != "save" else 422
            return drafting_page(request, fields, editing=found, show_problems=True, status=status)
        by = request.state.who.actor[:MAX_NAME]
        body: Any
        if found.state is State.draft:
            # Made from the terms the form was opened with: refused when someone changed
            # the draft since, rather than dropping their change.
            read = str(fields.get("based_on", ""))
            based_on = read if re.fullmatch(r"[0-9a-f]{64}", read) else None
            update = "edit_draft"
            body = EditDraft(agreement=draft.agreement, by=by, based_on=based_on)
        else:
            update, body = "amend", Amendment(agreement=draft.agreement, by=by)
        key = str(form.get("idempotency_key", ""))
        try:
            uid = ops.update_id_for(update, key, body) if key else None
            await ops.decide(
                temporal(request), agreement_id, update, body, config=config, update_id=uid
            )
        except ops.OperationError as error:
            return drafting_page(
                request,
                fields,
                editing=found,
                show_problems=True,
                status=409,
                extra=[explain(lang, error)],
            )
        return RedirectResponse(f"/a/{agreement_id}", status_code=303)

    async def coming(request: Request, days: int, role: str) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(ops.upcoming_all, config, days, role)
        return [{"agreement": a, "m": m} for a, m in visible(request, rows, lambda r: r[0].id)]

    @app.get("/upcoming", response_class=HTMLResponse, dependencies=pages)
    async def upcoming_page(
        request: Request, days: int = 60, role: str = "finance"
    ) -> HTMLResponse:
        try:
            rows = await coming(request, days, role)
        except ops.OperationError as error:
            return refusal(request, error, 422)
        who: Who = request.state.who
        names = organisation_names()
        mine = who.organisations(Right.read) if not who.local else sorted(names)
        today = ops.stockholm_today()
        return page(
            request,
            "upcoming.html",
            rows=rows,
            days=days,
            role=role,
            export_from=today.replace(month=1, day=1).isoformat(),
            export_to=today.replace(month=12, day=31).isoformat(),
            export_organisations=[(o, names.get(o, o)) for o in mine],
        )

    @app.get("/finance.csv", dependencies=pages)
    def finance_page_file(
        request: Request,
        start: Annotated[str, Query(alias="from", max_length=10)] = "",
        end: Annotated[str, Query(alias="to", max_length=10)] = "",
        organisation: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        """The finance export from the pages: the period's instalments as CSV."""
        lang = page_language(request)
        try:
            first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        except ValueError:
            message = text(lang, "Give the period as two dates (YYYY-MM-DD), from and to.")
            return problem(request, message, 422)
        try:
            found = finance_rows(request, first, last, organisation)
        except ops.OperationError as error:
            return refusal(request, error, 422)
        return finance_file(found, first, lang)

    @app.get("/upcoming.csv", dependencies=pages)
    async def upcoming_file(request: Request, days: int = 60, role: str = "finance") -> Response:
        try:
            rows = await asyncio.to_thread(ops.upcoming_all, config, days, role)
        except ops.OperationError as error:
            return refusal(request, error, 422)
        rows = visible(request, rows, lambda r: r[0].id)
        lang = page_language(request)
        terms = await asyncio.to_thread(ops.terms_of, config, rows)
        name = text(lang, "upcoming") + ".csv"
        return Response(
            ops.upcoming_csv(lang, rows, terms).encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/a/{agreement_id}", response_class=HTMLResponse, dependencies=pages)
    async def agreement_page(agreement_id: str, request: Request) -> HTMLResponse:
        if wrong := entitled(request, agreement_id, Right.read):
            return refusal(request, wrong, 404)
        who: Who = request.state.who
        owner = access.owner(gate.db, agreement_id)
        try:
            snapshot = await ops.state(temporal(request), agreement_id)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        info = await ops.current_round(temporal(request), agreement_id)
        try:  # the worker stores new terms a moment after the workflow takes them
            terms = await ops.terms_soon(config, snapshot.terms_sha256)
            timeline = await ops.timeline(temporal(request), agreement_id)
        except ops.OperationError as error:
            return refusal(request, error, 503)
        events = ops.events(config, agreement_id)
        money_only = who.money_only(owner)
        shown = [m for m in timeline if m.kind is MilestoneKind.invoice] if money_only else timeline
        return page(
            request,
            "agreement.html",
            glance=glance(request, snapshot, shown, events),
            s=snapshot,
            info=info,
            terms=terms,
            timeline=timeline,
            emails=ops.outbox(config, agreement_id),
            records=ops.sealed_records(config, agreement_id),
            events=events,
            feed=f"/a/{agreement_id}/calendar.ics?p={who.person_id or 0}"
            f"&key={gate.feed_key(agreement_id, who.person_id)}",
            # Signers' addresses and browsers: for the coordinators, until gallring.
            traces=ops.signer_traces(config, agreement_id) if who.can(Right.decide, owner) else [],
            may_decide=who.can(Right.decide, owner),
            may_money=who.can(Right.money, owner),
            # Finance sees the money: the instalments, not every report and meeting.
            money_only=money_only,
            # The Temporal Web UI is a console without sign-in that can cancel a workflow:
            # linked for the organisation's administrators only, on the embedded default.
            console=console_link(snapshot) if who.can(Right.administer, owner) else None,
            # One per render, in every decision's form: a double-click or a reloaded POST
            # of the same form applies once (ops.update_id_for).
            form_key=uuid.uuid4().hex,
        )

    async def confirmation(
        request: Request, agreement_id: str, action: str, extra: dict[str, str] | None = None
    ) -> HTMLResponse:
        """Before an action that cannot be undone: what it will do, in words, and the same
        form once more with `confirmed=yes` (its idempotency key with it, so a double click
        on the confirmation still decides once). A file the form sent is kept already and
        goes on as its hash (`extra`)."""
        form = await request.form()
        fields = [(k, v) for k, v in form.multi_items() if k != "confirmed" and isinstance(v, str)]
        fields = [(k, v) for k, v in fields if k not in (extra or {})] + list((extra or {}).items())
        values = {k: v for k, v in fields}
        try:
            snapshot = await ops.state(temporal(request), agreement_id)
            terms = await ops.terms_soon(config, snapshot.terms_sha256)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        lang = page_language(request)
        return page(
            request,
            "confirm.html",
            s=snapshot,
            action=action,
            fields=fields,
            what=consequence(lang, action, values, terms),
        )

    def glance(
        request: Request, snapshot: Snapshot, timeline: list[Any], events: list[EventRecord]
    ) -> Markup:
        """The agreement at a glance (agreements/web/picture.py), in the page's language."""
        lang = page_language(request)
        today = ops.stockholm_today()
        words = picture_words(lang, snapshot.title)
        amended = [
            (e.at if e.at.tzinfo else e.at.replace(tzinfo=dt.UTC)).astimezone(STOCKHOLM).date()
            for e in events
            if e.kind == "amendment.signed"
        ]
        return timeline_svg(timeline, snapshot.start, snapshot.end, today, words, amended)

    def console_link(snapshot: Snapshot) -> str | None:
        """The agreement's workflow in the Temporal Web UI: AGREEMENTS_TEMPORAL_UI_URL's, or
        the embedded dev server's; none for a cluster whose UI is not named."""
        if config.temporal_ui_url:
            ui = config.temporal_ui_url.rstrip("/")
        elif config.embedded_temporal():
            ui = f"http://127.0.0.1:{config.temporal_ui_port}"
        else:
            return None
        return (
            f"{ui}/namespaces/{config.temporal_namespace}/workflows/"
            f"{workflow_id(snapshot.agreement_id)}"
        )

    def pdf(data: bytes, filename: str, disposition: str = "inline") -> Response:
        """A PDF for the browser: a document to open (inline), a record to keep."""
        name = quote(filename)
        return Response(
            data,
            media_type="application/pdf",
            headers={"Content-Disposition": f"{disposition}; filename*=UTF-8''{name}"},
        )

    @app.get("/a/{agreement_id}/documents/{sha256}", dependencies=pages)
    async def agreement_document(agreement_id: str, sha256: str, request: Request) -> Response:
        """One of the agreement's documents (of any version of its terms), for those who may
        read the agreement."""
        if wrong := entitled(request, agreement_id, Right.read):
            return refusal(request, wrong, 404)
        try:
            document = (await asyncio.to_thread(ops.documents_of, config, agreement_id))[sha256]
            data = await asyncio.to_thread(ops.document_bytes, config, sha256)
        except KeyError:
            return refusal(request, ops.OperationError("no such document", "no-document"), 404)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        return pdf(data, f"{document.name}.pdf")

    async def record_file(request: Request, agreement_id: str, number: int) -> Response:
        """The sealed signing record of round `number` as a file to keep, or a page saying
        there is none."""
        found = await asyncio.to_thread(ops.sealed_record, config, agreement_id, number)
        try:
            if found is None:
                raise ops.OperationError("no such record", "no-document")
            data = await asyncio.to_thread(ops.document_bytes, config, found.sha256)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        return pdf(data, found.filename, "attachment")

    @app.get("/a/{agreement_id}/records/{number}", dependencies=pages)
    async def agreement_record(agreement_id: str, number: int, request: Request) -> Response:
        """The sealed signing record of round `number`, for those who may read the
        agreement."""
        if wrong := entitled(request, agreement_id, Right.read):
            return refusal(request, wrong, 404)
        return await record_file(request, agreement_id, number)

    # --- the archive package (E-ARK SIP, archive/sip.py), for those who may read -----------

    async def archive_file(agreement_id: str) -> Response:
        """The agreement's archive package as a ZIP to keep, made now. Built in a temporary
        file (it holds every document), then sent from it in pieces."""
        import tempfile

        from fastapi.responses import StreamingResponse

        from archive.sip import write_package

        out = tempfile.TemporaryFile()  # noqa: SIM115  (closed once sent, in `pieces`)
        try:
            objid = await asyncio.to_thread(
                write_package, config, agreement_id, out, dt.datetime.now(dt.UTC)
            )
            out.seek(0)
        except BaseException:
            out.close()
            raise

        def pieces() -> Any:
            with out:
                while piece := out.read(1 << 20):
                    yield piece

        name = quote(f"{objid}.zip")
        return StreamingResponse(
            pieces(),
            media_type="application/zip",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"},
        )

    @app.get("/a/{agreement_id}/archive.zip", dependencies=pages)
    async def agreement_archive(agreement_id: str, request: Request) -> Response:
        """The agreement's archive package (E-ARK SIP) as a ZIP file."""
        if wrong := entitled(request, agreement_id, Right.read):
            return refusal(request, wrong, 404)
        try:
            return await archive_file(agreement_id)
        except ops.OperationError as error:
            return refusal(request, error, 404)

    @app.get("/api/agreements/{agreement_id}/archive", dependencies=api)
    async def api_archive(agreement_id: str, request: Request) -> Response:
        """The agreement's archive package (E-ARK SIP, FGS Paketstruktur 2.0) as a ZIP file:
        every version of the terms, the documents, the sealed signing records, the event log
        and the emails sent, with METS and PREMIS."""
        may(request, agreement_id, Right.read)
        try:
            return await archive_file(agreement_id)
        except ops.OperationError as error:
            raise refused(request, 404, error) from None

    @app.get("/a/{agreement_id}/outbox", response_class=HTMLResponse, dependencies=pages)
    def outbox_fragment(agreement_id: str, request: Request) -> Response:
        """The agreement's emails as its page shows them: fetched again by the page's
        script while some are still going out."""
        if wrong := entitled(request, agreement_id, Right.read):
            return refusal(request, wrong, 404)
        try:
            ops.agreement(config, agreement_id)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        lang = page_language(request)
        return templates(lang).TemplateResponse(
            request, "_outbox.html", {"emails": ops.outbox(config, agreement_id)}
        )

    @app.get("/a/{agreement_id}/terms.toml", dependencies=pages)
    async def terms_file(agreement_id: str, request: Request) -> Response:
        """The agreement's current terms as an agreement file, to keep or to edit: as the
        agreement has them now (a change just made is in it, though the list may not show
        it yet); from the agreement list when Temporal cannot say."""
        if wrong := entitled(request, agreement_id, Right.read):
            return refusal(request, wrong, 404)
        try:
            try:
                sha256 = (await ops.state(temporal(request), agreement_id)).terms_sha256
            except ops.OperationError:
                sha256 = ops.agreement(config, agreement_id).terms_sha256
            terms = await ops.terms_soon(config, sha256)
        except ops.OperationError as error:
            return refusal(request, error, 404)
        return Response(
            dumps_agreement(terms).encode(),
            media_type="application/toml; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{agreement_id}.toml"'},
        )

    @app.post("/a/{agreement_id}/{action}", dependencies=pages)
    async def agreement_action(
        agreement_id: str,
        action: str,
        request: Request,
        csrf: Annotated[str, Form()],
        party: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        signer: Annotated[str, Form()] = "",
        date: Annotated[str, Form()] = "",
        report: Annotated[str, Form()] = "",
        period: Annotated[int, Form()] = 0,
        keys: Annotated[str, Form()] = "",
        terms: Annotated[str, Form()] = "",
        end_all: Annotated[str, Form()] = "",
        milestone: Annotated[str, Form()] = "",
        status: Annotated[str, Form()] = "",
        number: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        idempotency_key: Annotated[str, Form()] = "",
        confirmed: Annotated[str, Form()] = "",
        scan: Annotated[UploadFile | None, File()] = None,
        scan_sha256: Annotated[str, Form(max_length=64)] = "",
        scan_name: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        if wrong_form := forged(request, csrf):
            return wrong_form
        if action == "sign-paper" and scan is not None and scan.filename:
            # Kept at once (by its hash), so the confirmation carries the hash, not the file.
            name = Path(scan.filename).stem.strip()[:200] or "skanning"
            data = await scan.read()
            try:
                kept = await asyncio.to_thread(
                    ops.take_document, config, data, name, DocumentKind.attachment
                )
            except DocumentRefused as error:
                return problem(request, error.said(page_language(request)), 422)
            scan_sha256, scan_name = kept.sha256, kept.name
        if action in CONFIRMED and confirmed != "yes":
            if not_theirs := entitled(request, agreement_id, Right.decide):
                code = 403 if not_theirs.code == "not-allowed" else 404
                return refusal(request, not_theirs, code)
            scanned = {"scan_sha256": scan_sha256, "scan_name": scan_name} if scan_sha256 else {}
            return await confirmation(request, agreement_id, action, scanned)
        money = action == "milestone" and status in (MilestoneStatus.invoiced, MilestoneStatus.paid)
        if wrong_right := entitled(request, agreement_id, Right.money if money else Right.decide):
            return refusal(request, wrong_right, 403 if wrong_right.code == "not-allowed" else 404)
        by = request.state.who.actor[:MAX_NAME]
        client_ = temporal(request)
        lang = page_language(request)
        source = text(lang, "the agreement file")
        if idempotency_key:
            try:
                ops.update_id_for(action, idempotency_key)
            except ops.OperationError as error:
                return refusal(request, error, 400)
        decision: tuple[str, Any] | None = None  # (update, request) for ops.decide
        try:
            match action:
                case "confirm":
                    decision = (
                        "confirm_prerequisites",
                        ConfirmPrerequisites(keys=keys.split(), by=by),
                    )
                case "sign-start":
                    decision = ("start_signing", StartSigning(by=by))
                case "edit":
                    draft = loads_agreement(terms, source=source)
                    decision = ("edit_draft", EditDraft(agreement=draft, by=by))
                case "amend":
                    amended = loads_agreement(terms, source=source)
                    decision = ("amend", Amendment(agreement=amended, by=by))
                case "sign-cancel":
                    await ops.round_action(
                        client_,
                        agreement_id,
                        "cancel",
                        CancelRequest(reason=reason or "-", by=by),
                        config=config,
                    )
                case "sign-paper":
                    if not scan_sha256 or not store_for(config.data_dir).has(scan_sha256):
                        message = text(lang, "Upload the scanned signed copy (PDF).")
                        return problem(request, message, 400)
                    await ops.round_action(
                        client_,
                        agreement_id,
                        "sign_paper",
                        PaperSignature(
                            signer=signer,
                            signed_on=dt.date.fromisoformat(date),
                            recorded_by=by,
                            scan_sha256=scan_sha256,
                            scan_name=scan_name or None,
                        ),
                        config=config,
                    )
                case "report":
                    # "key:number" from the list of reports still to come in; a bare key
                    # with its number in `period` from older pages.
                    key, _, number = report.partition(":")
                    decision = (
                        "record_report",
                        ReportDecision(
                            report=key, occurrence=int(number) if number else period, by=by
                        ),
                    )
                case "notice" | "approve":
                    decision = (
                        "decide_renewal",
                        RenewalRequest(party=party, renew=action == "approve", by=by),
                    )
                case "terminate" | "withdraw" | "rescind":
                    kind = {
                        "terminate": EndingKind.termination,
                        "withdraw": EndingKind.withdrawal,
                        "rescind": EndingKind.rescission,
                    }[action]
                    decision = (
                        "terminate",
                        TerminationRequest(
                            kind=kind, party=party or None, reason=reason or "-", by=by
                        ),
                    )
                case "withdrawal":
                    if end_all not in ("yes", "no"):
                        choose = text(
                            lang,
                            "Choose whether the agreement ends altogether or goes on without "
                            "the party.",
                        )
                        return problem(request, choose, 400)
                    decision = (
                        "withdrawal_outcome",
                        WithdrawalOutcome(end_all=end_all == "yes", by=by),
                    )
                case "milestone":
                    wrong = milestone_form_problem(lang, status, date, number, note)
                    if wrong:
                        return problem(request, wrong, 400)
                    decision = (
                        "record_milestone",
                        MilestoneUpdate(
                            milestone=milestone,
                            status=MilestoneStatus(status),
                            on=dt.date.fromisoformat(date) if date else None,
                            number=number.strip() or None,
                            note=note.strip() or None,
                            by=by,
                        ),
                    )
                case _:
                    return problem(request, text(lang, "Unknown action."), 404)
            if decision is not None:
                update, body = decision
                uid = ops.update_id_for(update, idempotency_key, body) if idempotency_key else None
                await ops.decide(client_, agreement_id, update, body, config=config, update_id=uid)
        except AgreementFileError as error:
            return refusal(request, error, 422)
        except ops.OperationError as error:
            return refusal(request, error, 409)
        except ValueError as error:
            problem_text = text(lang, "Check the fields: %(problem)s", problem=explain(lang, error))
            return problem(request, problem_text, 400)
        return RedirectResponse(f"/a/{agreement_id}", status_code=303)

    # --- a person's own page, and the administrators' page --------------------------------

    def organisation_names() -> dict[str, str]:
        return {o.id: o.name for o in access.organisations(gate.db)}

    def my_page(request: Request, status: int = 200, **values: Any) -> HTMLResponse:
        who: Who = request.state.who
        mine = access.tokens(gate.db, who.person_id) if who.person_id is not None else []
        feed = (
            f"/me/calendar.ics?p={who.person_id}&key={gate.feed_key('*', who.person_id)}"
            if who.person_id is not None
            else None
        )
        return page(
            request,
            "me.html",
            status=status,
            feed=feed,
            names=organisation_names(),
            tokens=mine,
            scopes=list(access.SCOPES),
            email_language=(
                access.email_language(gate.db, who.person_id) if who.person_id is not None else None
            ),
            digest_days=config.digest_days,
            **values,
        )

    @app.get("/me", response_class=HTMLResponse, dependencies=pages)
    def me_page(request: Request) -> HTMLResponse:
        return my_page(request)

    @app.post("/me/language", response_class=HTMLResponse, dependencies=pages)
    def choose_language(
        request: Request,
        csrf: Annotated[str, Form()],
        language: Annotated[str, Form(max_length=8)] = "sv",
    ) -> Response:
        """The language of the person's own emails (the weekly digest)."""
        if wrong := forged(request, csrf):
            return wrong
        who: Who = request.state.who
        if who.person_id is None or language not in ("sv", "en"):
            lang = page_language(request)
            return problem(request, text(lang, "Choose Svenska or English."), 400)
        access.choose_email_language(gate.db, who.person_id, language)
        return RedirectResponse("/me#digest", status_code=303)

    @app.post("/me/tokens", response_class=HTMLResponse, dependencies=pages)
    def make_token(
        request: Request,
        csrf: Annotated[str, Form()],
        name: Annotated[str, Form(max_length=200)] = "",
        scope: Annotated[str, Form()] = "read",
    ) -> HTMLResponse:
        if wrong := forged(request, csrf):
            return wrong
        who: Who = request.state.who
        lang = page_language(request)
        if who.person_id is None:
            return problem(request, text(lang, "The local key has no personal tokens."), 400)
        if scope not in access.SCOPES:
            return problem(request, text(lang, "Unknown scope."), 400)
        row, token = access.make_token(gate.db, who.person_id, name, scope)
        log.info("API token %s made by person %s", row.id, who.person_id)
        return my_page(request, status=201, new_token=token, new_row=row)

    @app.post("/me/tokens/{token_id}/revoke", dependencies=pages)
    def revoke_token(request: Request, token_id: str, csrf: Annotated[str, Form()]) -> Response:
        if wrong := forged(request, csrf):
            return wrong
        who: Who = request.state.who
        if who.person_id is not None:
            access.revoke_token(gate.db, who.person_id, token_id)
        return RedirectResponse("/me", status_code=303)

    def administered(request: Request) -> list[str]:
        who: Who = request.state.who
        if who.local:
            return [o.id for o in access.organisations(gate.db)]
        return who.organisations(Right.administer)

    def people_page_for(request: Request, status: int = 200, **values: Any) -> HTMLResponse:
        mine = administered(request)
        rows = [
            (person, [m for m in memberships if m.organisation_id in mine])
            for person, memberships in access.people(gate.db)
        ]
        return page(
            request,
            "people.html",
            status=status,
            orgs=[o for o in access.organisations(gate.db) if o.id in mine],
            rows=[(p, ms) for p, ms in rows if ms],
            roles=[r.value for r in access.PersonRole],
            **values,
        )

    @app.get("/people", response_class=HTMLResponse, dependencies=pages)
    def people_page(request: Request) -> HTMLResponse:
        who: Who = request.state.who
        if not who.anywhere(Right.administer):
            lang = page_language(request)
            return problem(request, text(lang, "Only administrators manage people."), 403)
        return people_page_for(request)

    @app.post("/people/{action}", response_class=HTMLResponse, dependencies=pages)
    def people_action(
        request: Request,
        action: str,
        csrf: Annotated[str, Form()],
        email: Annotated[str, Form(max_length=320)] = "",
        name: Annotated[str, Form(max_length=200)] = "",
        organisation: Annotated[str, Form(max_length=64)] = "",
        role: Annotated[str, Form()] = "",
    ) -> Response:
        if wrong := forged(request, csrf):
            return wrong
        who: Who = request.state.who
        lang = page_language(request)
        if action == "organisation":
            if not who.local:
                return problem(request, text(lang, "Only the local key adds organisations."), 403)
        elif organisation not in administered(request):
            return problem(request, text(lang, "Only administrators manage people."), 403)
        try:
            match action:
                case "organisation":
                    access.add_organisation(gate.db, organisation, name.strip() or organisation)
                case "grant":
                    if role not in access.PersonRole.__members__:
                        return problem(request, text(lang, "Unknown role."), 400)
                    access.grant(
                        gate.db,
                        email,
                        organisation,
                        access.PersonRole(role),
                        name=name.strip() or None,
                        by=who.actor,
                    )
                case "remove":
                    access.remove(gate.db, email, organisation)
                case "end-sessions":
                    person = access.person_by_email(gate.db, email)
                    if person is None or organisation not in person.roles:
                        return problem(request, text(lang, "No such person."), 404)
                    access.end_sessions(gate.db, person.person_id or 0, "revoked")
                case _:
                    return problem(request, text(lang, "Unknown action."), 404)
        except access.AccessError as error:
            return refusal(request, error, 400)
        log.info("people: %s in %s by %s", action, organisation, who.person_id or "local key")
        return RedirectResponse("/people", status_code=303)

    # --- webhooks in the pages, for the organisation's administrators ------------------------

    def hooks_page(request: Request, status: int = 200, **values: Any) -> HTMLResponse:
        mine = hooks_of(request)
        return page(
            request,
            "webhooks.html",
            status=status,
            orgs=[o for o in access.organisations(gate.db) if o.id in mine],
            endpoints=hook_registry.endpoints(gate.db, mine),
            types=hook_events.TYPES,
            types_of=hook_registry.types_of,
            **values,
        )

    def not_hooks(request: Request) -> HTMLResponse | None:
        if hooks_of(request):
            return None
        lang = page_language(request)
        return problem(request, text(lang, "Only administrators manage webhooks."), 403)

    @app.get("/webhooks", response_class=HTMLResponse, dependencies=pages)
    def webhooks_page(request: Request) -> HTMLResponse:
        return not_hooks(request) or hooks_page(request)

    @app.post("/webhooks/add", response_class=HTMLResponse, dependencies=pages)
    def webhooks_add(
        request: Request,
        csrf: Annotated[str, Form()],
        url: Annotated[str, Form(max_length=2000)] = "",
        description: Annotated[str, Form(max_length=1000)] = "",
        organisation: Annotated[str, Form(max_length=64)] = "",
        types: Annotated[list[str], Form(max_length=40)] = [],  # noqa: B006 (FastAPI's form)
    ) -> HTMLResponse:
        """A new endpoint; the page shows its secret this once."""
        if wrong := forged(request, csrf) or not_hooks(request):
            return wrong
        typed = {"url": url, "description": description, "organisation": organisation}
        lang = page_language(request)
        if organisation not in hooks_of(request):
            return problem(request, text(lang, "Only administrators manage webhooks."), 403)
        try:
            row = hook_registry.add_endpoint(
                gate.db,
                organisation,
                url,
                types,
                description,
                request.state.who.actor,
                config.webhooks_allow_private,
            )
        except (hook_registry.EndpointRefused, hook_targets.TargetRefused) as error:
            return hooks_page(
                request, 422, error=explain(lang, error), typed=typed, chosen=set(types)
            )
        log.info("webhook endpoint %s added for %s", row.id, organisation)
        return hooks_page(request, 201, new=row)

    @app.post("/webhooks/{endpoint_id}/enabled", dependencies=pages)
    def webhooks_enabled(
        request: Request,
        endpoint_id: str,
        csrf: Annotated[str, Form()],
        enabled: Annotated[str, Form(max_length=1)] = "",
    ) -> Response:
        if wrong := forged(request, csrf):
            return wrong
        try:
            own_endpoint(request, endpoint_id)
        except Refused:
            return refusal(request, hook_registry.EndpointRefused("webhook-no-endpoint"), 404)
        hook_registry.set_enabled(gate.db, endpoint_id, enabled == "1")
        return RedirectResponse("/webhooks", status_code=303)

    @app.get("/webhooks/{endpoint_id}", response_class=HTMLResponse, dependencies=pages)
    def webhook_deliveries(request: Request, endpoint_id: str) -> HTMLResponse:
        """The endpoint's deliveries, newest first, with every attempt's answer."""
        try:
            point = own_endpoint(request, endpoint_id)
        except Refused:
            return refusal(request, hook_registry.EndpointRefused("webhook-no-endpoint"), 404)
        rows = hook_registry.deliveries(gate.db, endpoint_id)
        return page(
            request,
            "webhook.html",
            point=point,
            types=hook_registry.types_of(point),
            rows=rows,
            tried=hook_registry.attempts(gate.db, [r.id for r in rows]),
        )

    @app.post("/webhooks/deliveries/{delivery_id}/resend", dependencies=pages)
    def webhook_resend(
        request: Request, delivery_id: str, csrf: Annotated[str, Form()]
    ) -> Response:
        if wrong := forged(request, csrf):
            return wrong
        try:
            row = hook_registry.resend(gate.db, delivery_id, hooks_of(request))
        except hook_registry.EndpointRefused as error:
            return refusal(request, error, 404 if error.code == "webhook-no-delivery" else 409)
        return RedirectResponse(f"/webhooks/{row.endpoint_id}#{row.id}", status_code=303)

    # --- the codec endpoint for the Temporal Web UI ------------------------------------------
    # What the service stores in Temporal is sealed (models/codec.py): the Web UI shows it
    # through this endpoint, for the administrators signed in here in the same browser (the
    # UI's codec setting "include cross-origin credentials" sends their session cookie).

    ui_origins = (
        {config.temporal_ui_url.rstrip("/")}
        if config.temporal_ui_url
        else {f"http://{host}:{config.temporal_ui_port}" for host in ("127.0.0.1", "localhost")}
    )

    def cors(request: Request, response: Response) -> Response:
        origin = request.headers.get("origin")
        if origin in ui_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Headers"] = (
                "content-type, x-namespace, authorization"
            )
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Vary"] = "Origin"
        return response

    @app.options("/codec/{operation}", include_in_schema=False)
    def codec_preflight(operation: str, request: Request) -> Response:
        return cors(request, Response(status_code=204))

    @app.post("/codec/{operation}", include_in_schema=False)
    async def codec(operation: str, request: Request) -> Response:
        """Temporal's remote codec protocol: `{"payloads": [...]}` in, the same decoded (or
        encoded) out. For administrators only: it opens every agreement's data."""
        who = gate.from_cookie(request) or gate.from_bearer(request)
        if who is None or not (who.local or who.anywhere(Right.administer)):
            return cors(request, JSONResponse({"detail": "administrators only"}, 403))
        keys = keys_for(config)
        if operation not in ("decode", "encode") or not keys:
            return cors(request, JSONResponse({"detail": "no codec here"}, 404))
        try:
            payloads = json_format.ParseDict(await request.json(), Payloads())
            sealed = Sealed(keys)
            work = sealed.decode if operation == "decode" else sealed.encode
            result = Payloads(payloads=await work(list(payloads.payloads)))
        except (ValueError, json_format.ParseError) as error:
            return cors(request, JSONResponse({"detail": str(error)[:200]}, 400))
        body = json_format.MessageToDict(result)
        return cors(request, JSONResponse(body))

    @app.get("/accessibility", response_class=HTMLResponse)
    def accessibility(request: Request) -> HTMLResponse:
        """The accessibility statement (tillgänglighetsredogörelse) DOS-lagen asks for,
        linked from every page, open to everyone."""
        return page(
            request,
            "accessibility.html",
            organisation=config.accessibility_organisation,
            contact=config.accessibility_contact or config.mail_from,
            reviewed=ACCESSIBILITY_REVIEWED,
        )

    @app.get("/healthz", response_class=PlainTextResponse)
    def health() -> str:
        """The process lives (and answers): nothing else is checked."""
        return "ok"

    @app.get("/readyz")
    async def ready(request: Request) -> JSONResponse:
        """Whether the service can do its work: the database answers, Temporal answers and
        a worker polls the task queue; 503 naming what is wrong. No login (a load
        balancer asks it) and nothing secret in the answer."""
        report = await readiness(getattr(request.app.state, "client", None), config)
        return JSONResponse(report.answer(), status_code=200 if report.ready else 503)

    return app


# When the accessibility statement was last reviewed against the pages (update with it).
ACCESSIBILITY_REVIEWED = "2026-11-26"
# The agreement page's actions that cannot be undone: each asks once more, saying what it
# will do (`consequence`).
CONFIRMED = frozenset(
    {
        "confirm",
        "sign-start",
        "sign-cancel",
        "sign-paper",
        "notice",
        "approve",
        "terminate",
        "withdraw",
        "rescind",
        "withdrawal",
        "amend",
        "edit",
        "report",
    }
)


def consequence(language: str, action: str, form: dict[str, str], terms: Agreement) -> list[str]:
    """What an action will do, in `language`, as sentences for the confirmation page."""
    # Who the emails go to, chosen as the workflow chooses them (the schedule engine's
    # recipients): the signing parties' signatories; for an ending every contact and the
    # coordinator.
    signatories = [
        r
        for key, p in terms.parties.items()
        if p.signs
        for r in recipients(terms, key, Role.signatory)
    ]
    everyone = {r.email.lower() for r in [*all_contacts(terms), coordinator(terms)]}
    party = terms.parties.get(form.get("party", ""))
    party_name = party.name if party else ""
    lasting = text(language, "This cannot be undone.")
    match action:
        case "confirm":
            return [
                text(language, "The IOP prerequisites are recorded as confirmed, in your name."),
                lasting,
            ]
        case "sign-start":
            return [
                text(
                    language,
                    "Each of the %(count)s signatories gets an email with a personal link to "
                    "sign the terms.",
                    count=len(signatories),
                )
            ]
        case "sign-cancel":
            return [
                text(
                    language,
                    "The signature round is cancelled: the links stop working, and everyone "
                    "invited is told by email.",
                ),
                lasting,
            ]
        case "sign-paper":
            signer = next(
                (c.name for c in signatories if c.email.lower() == form.get("signer", "").lower()),
                form.get("signer", ""),
            )
            return [
                text(
                    language,
                    "%(name)s is recorded as having signed on paper on %(date)s, entered by you.",
                    name=signer,
                    date=form.get("date", ""),
                ),
                lasting,
            ]
        case "notice":
            return [
                text(
                    language,
                    "%(party)s gives notice: the agreement is not extended. All %(count)s "
                    "contacts are told by email.",
                    party=party_name,
                    count=len(everyone),
                ),
                lasting,
            ]
        case "approve":
            return [text(language, "%(party)s approves the extension.", party=party_name), lasting]
        case "terminate" | "withdraw" | "rescind":
            kind = {
                "terminate": N_("The agreement is terminated by %(party)s."),
                "withdraw": N_("%(party)s withdraws from the agreement."),
                "rescind": N_("The agreement is rescinded by %(party)s."),
            }[action]
            return [
                text(language, kind, party=party_name),
                text(language, "All %(count)s contacts are told by email.", count=len(everyone)),
                lasting,
            ]
        case "withdrawal":
            ends = form.get("end_all") == "yes"
            return [
                text(language, "The agreement ends altogether.")
                if ends
                else text(language, "The agreement goes on without the party that withdraws."),
                text(language, "All %(count)s contacts are told by email.", count=len(everyone)),
                lasting,
            ]
        case "amend":
            return [
                text(
                    language,
                    "The amended terms are sent for signing: each of the %(count)s "
                    "signatories gets an email with a personal link.",
                    count=len(signatories),
                )
            ]
        case "edit":
            return [text(language, "The draft's terms are replaced by the file you gave.")]
        case "report":
            return [text(language, "The report is recorded as received, in your name."), lasting]
    return []


def milestone_form_problem(
    language: str, status: str, date: str, number: str, note: str
) -> str | None:
    """What is wrong with a timeline row's form, in `language` (None: nothing); the
    workflow judges the rest and its refusal is explained in the same language."""
    if status not in SETTABLE_STATUSES:
        return text(language, "Unknown status.")
    if date:
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            return text(language, "%(value)s is not a date (YYYY-MM-DD).", value=date[:40])
    if status == "invoiced" and not number.strip():
        return text(language, "Give the invoice's number.")
    if status == "returned" and not note.strip():
        return text(language, "Say what is missing from the report.")
    return None
