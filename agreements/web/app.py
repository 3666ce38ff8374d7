"""FastAPI application: the JSON API (`/api`, OpenAPI at `/docs`), the coordinators' pages,
the signing pages reached only through a signer's personal link, and calendar feeds.

Authentication for coordinators is one API token per deployment
(`AGREEMENTS_API_TOKEN`): `Authorization: Bearer <token>` for the API; for the pages, a
login form sets an HttpOnly, SameSite=Strict session cookie holding an HMAC of the token,
and every form carries a CSRF field derived from it. Chosen because a municipality's
small team shares one service account today and its SSO can front the service later;
nothing here stores passwords. Signers never log in: their signed link is their key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import Field, ValidationError
from sqlmodel import Session
from temporalio.client import Client

from agreements import ops
from agreements.web.i18n import actor_word, status_word, translator
from emails.calendar import calendar
from emails.links import LinkError, SigningLink, read_link
from emails.render import day, kronor
from models.agreement import Agreement
from models.config import Settings
from models.db import ready
from models.lifecycle import (
    RoundAnswer,
    RoundInfo,
    RoundOutcome,
    Signer,
    SignerStatus,
    terms_sha256,
)
from models.loader import AgreementFileError, loads_agreement
from models.plan import (
    SETTABLE,
    EndingKind,
    Frozen,
    MilestoneKind,
    MilestoneState,
    MilestoneStatus,
    PlannedMilestone,
)
from models.records import TermsRecord
from models.schedule.dates import STOCKHOLM
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
)
from workflows.signing import (
    MAX_IP,
    MAX_REASON,
    MAX_USER_AGENT,
    CancelRequest,
    DeclineRequest,
    PaperSignature,
    SignRequest,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["kronor"] = kronor
TEMPLATES.env.filters["day"] = day
COOKIE = "avtal_session"
# The statuses a person sets through `record_milestone` (invoiced, paid, held, approved,
# returned), in the order models.plan.SETTABLE names them.
SETTABLE_STATUSES = tuple(dict.fromkeys(s for kind in SETTABLE.values() for s in kind))
# How far ahead the agreement page offers to record an instalment as invoiced (an invoice
# is often sent some weeks before its date); later ones through the API or the command line.
INVOICE_AHEAD = dt.timedelta(days=60)


def today() -> dt.date:
    """Today in Sweden, the day the workflows date decisions by."""
    return dt.datetime.now(STOCKHOLM).date()


def milestone_actions(m: PlannedMilestone, state: str, on: dt.date | None = None) -> list[str]:
    """The statuses the agreement page offers to set on a timeline row: an instalment to
    invoice (up to INVOICE_AHEAD before its date) -> invoiced; invoiced -> paid; a meeting
    whose day has come -> held; a received report -> approved or returned. Nothing before
    the agreement is signed."""
    if state not in ("signed", "active", "ending", "ended"):
        return []
    status = getattr(m, "status", None)
    on = on or today()
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


TEMPLATES.env.globals["milestone_actions"] = milestone_actions
TEMPLATES.env.globals["today"] = today
TEMPLATES.env.globals["status_word"] = status_word
TEMPLATES.env.globals["actor_word"] = actor_word


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
    )
    app.state.config = config
    secret = config.signing_secret.get_secret_value()
    api_token = config.api_token.get_secret_value()

    def session_value() -> str:
        return hmac.new(
            secret.encode(), b"session:" + api_token.encode(), hashlib.sha256
        ).hexdigest()

    def csrf_value() -> str:
        return hmac.new(
            secret.encode(), b"csrf:" + session_value().encode(), hashlib.sha256
        ).hexdigest()

    def feed_key(agreement_id: str) -> str:
        return hmac.new(
            secret.encode(), b"feed:" + agreement_id.encode(), hashlib.sha256
        ).hexdigest()[:32]

    def temporal(request: Request) -> Client:
        result: Client = request.app.state.client
        return result

    def bearer(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = f"Bearer {api_token}"
        if authorization is None or not hmac.compare_digest(authorization, expected):
            raise HTTPException(401, "a valid API token is required (Authorization: Bearer …)")

    def logged_in(request: Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie, session_value())

    def page(
        request: Request, name: str, status: int = 200, language: str | None = None, **values: Any
    ) -> HTMLResponse:
        """Swedish first; `?lang=en` switches (and is remembered), a signer's page follows
        the signer's language unless they switch."""
        asked = request.query_params.get("lang")
        lang = asked if asked in ("sv", "en") else request.cookies.get("lang") or language or "sv"
        lang = lang if lang in ("sv", "en") else "sv"
        values.setdefault("csrf", csrf_value())
        values.setdefault("temporal_ui", f"http://127.0.0.1:{config.temporal_ui_port}")
        values.update(lang=lang, t=translator(lang))
        response = TEMPLATES.TemplateResponse(request, name, values, status_code=status)
        if asked in ("sv", "en"):
            response.set_cookie("lang", asked, samesite="lax")
        return response

    def problem(request: Request, message: str, status: int = 400) -> HTMLResponse:
        return page(request, "message.html", status=status, title="Det gick inte", message=message)

    async def run(work: Any) -> Any:
        try:
            return await work
        except ops.OperationError as error:
            raise HTTPException(409, str(error)) from None

    def ops_run(work: Any, status: int) -> Any:
        try:
            return work()
        except ops.OperationError as error:
            raise HTTPException(status, str(error)) from None

    # --- API -------------------------------------------------------------------------------

    api = [Depends(bearer)]

    @app.get("/api/agreements", dependencies=api)
    def api_list() -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in ops.agreements(config)]

    @app.post("/api/agreements", dependencies=api, status_code=201)
    async def api_create(request: Request, signed: SignedOn = None) -> Snapshot:
        """The agreement file (TOML) as the body. An agreement whose term has started is
        taken on only with `?signed=YYYY-MM-DD` (or `signing.signed` in the file): as
        signed, sending nothing for what is past; one whose term is over is refused (422)."""
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            agreement = loads_agreement(text, source="request")
        except AgreementFileError as error:
            raise HTTPException(422, str(error)) from None
        flag = "?signed=YYYY-MM-DD"
        ops_run(lambda: ops.taken_on(agreement, signed, flag=flag), 422)
        result: Snapshot = await run(
            ops.create(temporal(request), config, agreement, signed, flag=flag)
        )
        return result

    @app.get("/api/agreements/{agreement_id}", dependencies=api)
    async def api_show(agreement_id: str, request: Request) -> Snapshot:
        try:
            result: Snapshot = await ops.state(temporal(request), agreement_id)
        except ops.OperationError as error:
            raise HTTPException(404, str(error)) from None
        return result

    @app.get("/api/agreements/{agreement_id}/milestones", dependencies=api)
    def api_milestones(agreement_id: str) -> list[MilestoneState]:
        """Every milestone with its status as of today, from the read model."""
        ops_run(lambda: ops.agreement(config, agreement_id), 404)
        return ops.milestones(config, agreement_id)

    @app.get("/api/upcoming", dependencies=api)
    def api_upcoming(days: int = 60, role: str = "coordinator") -> list[dict[str, Any]]:
        """Coming milestones across every agreement that has not ended, for one role
        (finance also sees instalments not yet paid), from the read model."""
        rows = ops_run(lambda: ops.upcoming_all(config, days, role), 422)
        return [{"agreement": a.id, **m.model_dump(mode="json")} for a, m in rows]

    @app.get("/api/agreements/{agreement_id}/outbox", dependencies=api)
    def api_outbox(agreement_id: str) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in ops.outbox(config, agreement_id)]

    def update_id(update: str, key: str | None, body: Any = None) -> str | None:
        """The update id for an idempotency key, or a 400 naming what is wrong with it."""
        if key is None:
            return None
        try:
            return ops.update_id_for(update, key, body)
        except ops.OperationError as error:
            raise HTTPException(400, str(error)) from None

    async def decide(
        request: Request, agreement_id: str, update: str, body: Any, key: str | None = None
    ) -> Snapshot:
        uid = update_id(update, key)
        result: Snapshot = await run(
            ops.decide(temporal(request), agreement_id, update, body, config=config, update_id=uid)
        )
        return result

    async def terms_body(request: Request) -> Agreement:
        """An agreement file (TOML) as the request body; 422 with every problem."""
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            return loads_agreement(text, source="request")
        except AgreementFileError as error:
            raise HTTPException(422, str(error)) from None

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
        draft = EditDraft(agreement=await terms_body(request), by="api")
        return await decide(request, agreement_id, "edit_draft", draft, key)

    @app.post("/api/agreements/{agreement_id}/signing", dependencies=api)
    async def api_sign_start(
        agreement_id: str, request: Request, key: IdempotencyKey = None
    ) -> Snapshot:
        return await decide(request, agreement_id, "start_signing", StartSigning(by="api"), key)

    @app.post("/api/agreements/{agreement_id}/signing/cancel", dependencies=api)
    async def api_sign_cancel(
        agreement_id: str, body: CancelRequest, request: Request
    ) -> RoundAnswer:
        result: RoundAnswer = await run(
            ops.round_action(temporal(request), agreement_id, "cancel", body, config=config)
        )
        return result

    @app.post("/api/agreements/{agreement_id}/signing/paper", dependencies=api)
    async def api_sign_paper(
        agreement_id: str, body: PaperSignature, request: Request
    ) -> RoundAnswer:
        result: RoundAnswer = await run(
            ops.round_action(temporal(request), agreement_id, "sign_paper", body, config=config)
        )
        return result

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
        amendment = Amendment(agreement=await terms_body(request), by="api")
        return await decide(request, agreement_id, "amend", amendment, key)

    # --- calendar feed ----------------------------------------------------------------------

    @app.get("/a/{agreement_id}/calendar.ics")
    async def feed(agreement_id: str, key: str, request: Request) -> Response:
        if not hmac.compare_digest(key, feed_key(agreement_id)):
            raise HTTPException(404, "not found")
        # From the read model only: a calendar program polls the feed, Temporal is not asked.
        try:
            record = await asyncio.to_thread(ops.agreement, config, agreement_id)
        except ops.OperationError:
            raise HTTPException(404, "not found") from None
        try:
            terms = load_terms(config, record.terms_sha256)
        except ops.OperationError as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
        today = ops.stockholm_today()
        rows = await run(asyncio.to_thread(ops.milestones, config, agreement_id, today))
        coming = [m for m in rows if m.effective_date >= today]
        body = calendar(terms, coming, dt.datetime.now(dt.UTC))
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
            raise LinkError("Länken är inte giltig. / The link is not valid.")
        info, signer = view
        return link, info, signer, load_terms(config, info.terms_sha256)

    def client_facts(request: Request) -> tuple[str | None, str | None]:
        """IP and user agent, cut to what is worth keeping before they reach the round."""
        ip = request.client.host if request.client else None
        agent = request.headers.get("user-agent")
        return (ip[:MAX_IP] if ip else None), (agent[:MAX_USER_AGENT] if agent else None)

    def outcome_page(
        request: Request, signer: Signer, info: RoundInfo, terms: Agreement
    ) -> HTMLResponse:
        return page(
            request, "signed.html", language=signer.language, signer=signer, info=info, terms=terms
        )

    @app.get("/sign/{value}", response_class=HTMLResponse)
    async def sign_page(value: str, request: Request) -> HTMLResponse:
        try:
            link, info, signer, terms = await signing_context(request, value)
        except (LinkError, ops.OperationError) as error:
            return problem(request, str(error), 403)
        if (
            signer.status in (SignerStatus.signed, SignerStatus.declined)
            or info.outcome is not RoundOutcome.open
        ):
            return outcome_page(request, signer, info, terms)
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
            return problem(request, str(error), 403)
        ip, agent = client_facts(request)
        body: SignRequest | DeclineRequest
        reason = reason.strip()
        if action == "sign":
            body = SignRequest(token=link.token, ip=ip, user_agent=agent)
        elif action == "decline" and not reason:
            return problem(request, "Skriv varför du avböjer. / Say why you decline.", 400)
        elif action == "decline" and len(reason) > MAX_REASON:
            return problem(
                request,
                f"Skälet får vara högst {MAX_REASON} tecken (ditt är {len(reason)}): korta det "
                f"och försök igen. / The reason may be at most {MAX_REASON} characters (yours "
                f"has {len(reason)}): shorten it and try again.",
                400,
            )
        elif action == "decline":
            body = DeclineRequest(token=link.token, reason=reason, ip=ip, user_agent=agent)
        else:
            return problem(request, "Okänd åtgärd. / Unknown action.", 400)
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
            return problem(request, str(error), 409)
        signer = signer.model_copy(update={"status": answer.status or signer.status})
        info = info.model_copy(update={"outcome": answer.outcome})
        return outcome_page(request, signer, info, terms)

    # --- coordinators' pages ----------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return page(request, "login.html")

    @app.post("/login")
    def login(request: Request, token: Annotated[str, Form()]) -> Response:
        if not hmac.compare_digest(token, api_token):
            return page(request, "login.html", status=401, error="Fel nyckel.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session_value(), httponly=True, samesite="strict")
        return response

    def require_login(request: Request) -> None:
        if not logged_in(request):
            raise HTTPException(303, headers={"Location": "/login"})

    def require_csrf(csrf: str) -> None:
        if not hmac.compare_digest(csrf, csrf_value()):
            raise HTTPException(403, "the form is not from this service (CSRF check failed)")

    pages = [Depends(require_login)]

    @app.get("/", response_class=HTMLResponse, dependencies=pages)
    def index(request: Request) -> HTMLResponse:
        return page(request, "list.html", rows=ops.agreements(config))

    @app.post("/create", dependencies=pages)
    async def create_page(
        request: Request,
        csrf: Annotated[str, Form()],
        terms: Annotated[str, Form()],
        signed: Annotated[str, Form()] = "",
    ) -> Response:
        require_csrf(csrf)
        t = translator("en" if request.cookies.get("lang") == "en" else "sv")
        field = t("Redan undertecknat den")
        try:
            day = dt.date.fromisoformat(signed.strip()) if signed.strip() else None
        except ValueError:
            return problem(request, f"{field}: {signed[:40]!r} {t('är inte ett datum')}", 422)
        flag = f"«{field}»"
        try:
            agreement = loads_agreement(terms, source="avtalsfilen")
            agreement = ops.taken_on(agreement, day, flag=flag)
        except AgreementFileError as error:
            return problem(request, str(error), 422)
        except ops.OperationError as error:
            return problem(request, str(error), 422)
        try:
            await ops.create(temporal(request), config, agreement, day, flag=flag)
        except ops.OperationError as error:
            return problem(request, str(error), 409)
        return RedirectResponse(f"/a/{agreement.id}", status_code=303)

    async def coming(request: Request, days: int, role: str) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(ops.upcoming_all, config, days, role)
        return [{"agreement": a, "m": m} for a, m in rows]

    @app.get("/upcoming", response_class=HTMLResponse, dependencies=pages)
    async def upcoming_page(
        request: Request, days: int = 60, role: str = "finance"
    ) -> HTMLResponse:
        rows = await run(coming(request, days, role))
        return page(request, "upcoming.html", rows=rows, days=days, role=role)

    @app.get("/upcoming.csv", dependencies=pages)
    async def upcoming_csv(request: Request, days: int = 60, role: str = "finance") -> Response:
        rows = await run(asyncio.to_thread(ops.upcoming_all, config, days, role))
        text = ops.upcoming_csv(rows)
        return Response(
            text.encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="kommande.csv"'},
        )

    @app.get("/a/{agreement_id}", response_class=HTMLResponse, dependencies=pages)
    async def agreement_page(agreement_id: str, request: Request) -> HTMLResponse:
        try:
            snapshot = await ops.state(temporal(request), agreement_id)
        except ops.OperationError as error:
            return problem(request, str(error), 404)
        info = await ops.current_round(temporal(request), agreement_id)
        try:  # the worker stores new terms a moment after the workflow takes them
            terms = load_terms(config, snapshot.terms_sha256)
            timeline = await ops.timeline(temporal(request), agreement_id)
        except ops.OperationError as error:
            return problem(request, str(error), 503)
        return page(
            request,
            "agreement.html",
            s=snapshot,
            info=info,
            terms=terms,
            timeline=timeline,
            emails=ops.outbox(config, agreement_id),
            events=ops.events(config, agreement_id),
            feed=f"/a/{agreement_id}/calendar.ics?key={feed_key(agreement_id)}",
            # One per render, in every decision's form: a double-click or a reloaded POST
            # of the same form applies once (ops.update_id_for).
            form_key=uuid.uuid4().hex,
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
    ) -> Response:
        require_csrf(csrf)
        client_ = temporal(request)
        if idempotency_key:
            try:
                ops.update_id_for(action, idempotency_key)
            except ops.OperationError as error:
                return problem(request, str(error), 400)
        decision: tuple[str, Any] | None = None  # (update, request) for ops.decide
        try:
            match action:
                case "confirm":
                    decision = (
                        "confirm_prerequisites",
                        ConfirmPrerequisites(keys=keys.split(), by="web"),
                    )
                case "sign-start":
                    decision = ("start_signing", StartSigning(by="web"))
                case "edit":
                    draft = loads_agreement(terms, source="avtalsfilen")
                    decision = ("edit_draft", EditDraft(agreement=draft, by="web"))
                case "amend":
                    amended = loads_agreement(terms, source="avtalsfilen")
                    decision = ("amend", Amendment(agreement=amended, by="web"))
                case "sign-cancel":
                    await ops.round_action(
                        client_,
                        agreement_id,
                        "cancel",
                        CancelRequest(reason=reason or "-", by="web"),
                        config=config,
                    )
                case "sign-paper":
                    await ops.round_action(
                        client_,
                        agreement_id,
                        "sign_paper",
                        PaperSignature(
                            signer=signer, signed_on=dt.date.fromisoformat(date), recorded_by="web"
                        ),
                        config=config,
                    )
                case "report":
                    decision = (
                        "record_report",
                        ReportDecision(report=report, occurrence=period, by="web"),
                    )
                case "notice" | "approve":
                    decision = (
                        "decide_renewal",
                        RenewalRequest(party=party, renew=action == "approve", by="web"),
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
                            kind=kind, party=party or None, reason=reason or "-", by="web"
                        ),
                    )
                case "withdrawal":
                    if end_all not in ("yes", "no"):
                        return problem(
                            request,
                            "Välj om avtalet upphör helt eller fortsätter utan parten. / "
                            "Choose whether the agreement ends or goes on without the party.",
                            400,
                        )
                    decision = (
                        "withdrawal_outcome",
                        WithdrawalOutcome(end_all=end_all == "yes", by="web"),
                    )
                case "milestone":
                    wrong = milestone_form_problem(status, date, number, note)
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
                            by="web",
                        ),
                    )
                case _:
                    return problem(request, f"okänd åtgärd: {action}", 404)
            if decision is not None:
                update, body = decision
                uid = ops.update_id_for(update, idempotency_key, body) if idempotency_key else None
                await ops.decide(client_, agreement_id, update, body, config=config, update_id=uid)
        except AgreementFileError as error:
            return problem(request, str(error), 422)
        except ops.OperationError as error:
            return problem(request, str(error), 409)
        except ValueError as error:
            return problem(request, f"Kontrollera fälten: {error}", 400)
        return RedirectResponse(f"/a/{agreement_id}", status_code=303)

    @app.get("/healthz", response_class=PlainTextResponse)
    def health() -> str:
        return "ok"

    return app


def milestone_form_problem(status: str, date: str, number: str, note: str) -> str | None:
    """What is wrong with a timeline row's form, in both languages (None: nothing); the
    workflow judges the rest and its refusal is shown as it says it."""
    if status not in SETTABLE_STATUSES:
        return "Okänd status. / Unknown status."
    if date:
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            return (
                f"{date[:40]!r} är inget datum (ÅÅÅÅ-MM-DD). / "
                f"{date[:40]!r} is not a date (YYYY-MM-DD)."
            )
    if status == "invoiced" and not number.strip():
        return "Skriv fakturans nummer. / Give the invoice's number."
    if status == "returned" and not note.strip():
        return "Skriv vad som saknas i rapporten. / Say what is missing from the report."
    return None


def load_terms(config: Settings, sha256: str) -> Agreement:
    with Session(ready(config.db_url())) as session:
        row = session.get(TermsRecord, sha256)
        if row is None:
            raise ops.OperationError("the agreement's terms are not stored yet; try again")
        terms = Agreement.model_validate_json(row.terms_json)
    assert terms_sha256(terms) == sha256
    return terms
