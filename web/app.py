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

import datetime as dt
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session
from temporalio.client import Client

from config import Settings
from emails.calendar import calendar
from emails.render import day, kronor
from models.agreement import Agreement
from models.db import ready
from models.lifecycle import RoundInfo, SignerStatus, terms_sha256
from models.loader import AgreementFileError, loads_agreement
from models.plan import EndingKind
from models.records import TermsRecord
from service import ops
from service.links import LinkError, read_link
from web.i18n import translator
from workflows.agreement import (
    Amendment,
    ConfirmPrerequisites,
    RenewalRequest,
    ReportDecision,
    Snapshot,
    StartSigning,
    TerminationRequest,
)
from workflows.signing import CancelRequest, DeclineRequest, PaperSignature, SignRequest

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["kronor"] = kronor
TEMPLATES.env.filters["day"] = day
COOKIE = "avtal_session"


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

    # --- API -------------------------------------------------------------------------------

    api = [Depends(bearer)]

    @app.get("/api/agreements", dependencies=api)
    def api_list() -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in ops.agreements(config)]

    @app.post("/api/agreements", dependencies=api, status_code=201)
    async def api_create(request: Request) -> Snapshot:
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            agreement = loads_agreement(text, source="request")
        except AgreementFileError as error:
            raise HTTPException(422, str(error)) from None
        result: Snapshot = await run(ops.create(temporal(request), config, agreement))
        return result

    @app.get("/api/agreements/{agreement_id}", dependencies=api)
    async def api_show(agreement_id: str, request: Request) -> Snapshot:
        try:
            result: Snapshot = await ops.state(temporal(request), agreement_id)
        except ops.OperationError as error:
            raise HTTPException(404, str(error)) from None
        return result

    @app.get("/api/agreements/{agreement_id}/outbox", dependencies=api)
    def api_outbox(agreement_id: str) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in ops.outbox(config, agreement_id)]

    async def decide(request: Request, agreement_id: str, update: str, body: Any) -> Snapshot:
        result: Snapshot = await run(
            ops.decide(temporal(request), agreement_id, update, body, config=config)
        )
        return result

    @app.post("/api/agreements/{agreement_id}/prerequisites", dependencies=api)
    async def api_confirm(
        agreement_id: str, body: ConfirmPrerequisites, request: Request
    ) -> Snapshot:
        return await decide(request, agreement_id, "confirm_prerequisites", body)

    @app.post("/api/agreements/{agreement_id}/signing", dependencies=api)
    async def api_sign_start(agreement_id: str, request: Request) -> Snapshot:
        return await decide(request, agreement_id, "start_signing", StartSigning(by="api"))

    @app.post("/api/agreements/{agreement_id}/signing/cancel", dependencies=api)
    async def api_sign_cancel(
        agreement_id: str, body: CancelRequest, request: Request
    ) -> RoundInfo:
        result: RoundInfo = await run(
            ops.round_action(temporal(request), agreement_id, "cancel", body, config=config)
        )
        return result

    @app.post("/api/agreements/{agreement_id}/signing/paper", dependencies=api)
    async def api_sign_paper(
        agreement_id: str, body: PaperSignature, request: Request
    ) -> RoundInfo:
        result: RoundInfo = await run(
            ops.round_action(temporal(request), agreement_id, "sign_paper", body, config=config)
        )
        return result

    @app.post("/api/agreements/{agreement_id}/reports", dependencies=api)
    async def api_report(agreement_id: str, body: ReportDecision, request: Request) -> Snapshot:
        return await decide(request, agreement_id, "record_report", body)

    @app.post("/api/agreements/{agreement_id}/renewals", dependencies=api)
    async def api_renewal(agreement_id: str, body: RenewalRequest, request: Request) -> Snapshot:
        return await decide(request, agreement_id, "decide_renewal", body)

    @app.post("/api/agreements/{agreement_id}/ending", dependencies=api)
    async def api_terminate(
        agreement_id: str, body: TerminationRequest, request: Request
    ) -> Snapshot:
        return await decide(request, agreement_id, "terminate", body)

    @app.post("/api/agreements/{agreement_id}/amendments", dependencies=api)
    async def api_amend(agreement_id: str, request: Request) -> Snapshot:
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            agreement = loads_agreement(text, source="request")
        except AgreementFileError as error:
            raise HTTPException(422, str(error)) from None
        return await decide(
            request, agreement_id, "amend", Amendment(agreement=agreement, by="api")
        )

    # --- calendar feed ----------------------------------------------------------------------

    @app.get("/a/{agreement_id}/calendar.ics")
    async def feed(agreement_id: str, key: str, request: Request) -> Response:
        if not hmac.compare_digest(key, feed_key(agreement_id)):
            raise HTTPException(404, "not found")
        snapshot = await run(ops.state(temporal(request), agreement_id))
        terms = load_terms(config, snapshot.terms_sha256)
        milestones = await run(ops.upcoming(temporal(request), agreement_id, 3650))
        body = calendar(terms, milestones, dt.datetime.now(dt.UTC))
        return Response(body, media_type="text/calendar; charset=utf-8")

    # --- signing pages ----------------------------------------------------------------------

    async def signing_context(request: Request, value: str) -> tuple[Any, RoundInfo, Agreement]:
        link = read_link(secret, value, dt.datetime.now(dt.UTC))
        info = await ops.current_round(temporal(request), link.agreement)
        if info is None or info.number != link.round:
            raise LinkError("Länken gäller en signeringsomgång som inte längre är öppen.")
        signer = next((s for s in info.signers if s.token == link.token), None)
        if signer is None or signer.email != link.signer:
            raise LinkError("Länken är inte giltig. / The link is not valid.")
        return link, info, load_terms(config, info.terms_sha256)

    def client_facts(request: Request) -> tuple[str | None, str | None]:
        ip = request.client.host if request.client else None
        return ip, request.headers.get("user-agent")

    @app.get("/sign/{value}", response_class=HTMLResponse)
    async def sign_page(value: str, request: Request) -> HTMLResponse:
        try:
            link, info, terms = await signing_context(request, value)
        except (LinkError, ops.OperationError) as error:
            return problem(request, str(error), 403)
        signer = next(s for s in info.signers if s.token == link.token)
        if (
            signer.status in (SignerStatus.signed, SignerStatus.declined)
            or info.outcome.value != "open"
        ):
            return page(
                request,
                "signed.html",
                language=signer.language,
                signer=signer,
                info=info,
                terms=terms,
            )
        ip, agent = client_facts(request)
        try:
            await ops.round_action(
                temporal(request),
                link.agreement,
                "open",
                SignRequest(token=link.token, ip=ip, user_agent=agent),
                config=config,
            )
        except ops.OperationError as error:
            return problem(request, str(error), 409)
        return page(
            request,
            "sign.html",
            language=signer.language,
            signer=signer,
            info=info,
            terms=terms,
            value=value,
        )

    @app.post("/sign/{value}", response_class=HTMLResponse)
    async def sign_post(
        value: str,
        request: Request,
        action: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        try:
            link, info, terms = await signing_context(request, value)
        except (LinkError, ops.OperationError) as error:
            return problem(request, str(error), 403)
        ip, agent = client_facts(request)
        try:
            if action == "sign":
                info = await ops.round_action(
                    temporal(request),
                    link.agreement,
                    "sign",
                    SignRequest(token=link.token, ip=ip, user_agent=agent),
                    config=config,
                )
            elif action == "decline" and reason.strip():
                info = await ops.round_action(
                    temporal(request),
                    link.agreement,
                    "decline",
                    DeclineRequest(
                        token=link.token, reason=reason.strip(), ip=ip, user_agent=agent
                    ),
                    config=config,
                )
            else:
                return problem(request, "Skriv varför du avböjer. / Say why you decline.", 400)
        except ops.OperationError as error:
            return problem(request, str(error), 409)
        signer = next(s for s in info.signers if s.token == link.token)
        return page(
            request,
            "signed.html",
            language=signer.language,
            signer=signer,
            info=info,
            terms=terms,
        )

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
        request: Request, csrf: Annotated[str, Form()], terms: Annotated[str, Form()]
    ) -> Response:
        require_csrf(csrf)
        try:
            agreement = loads_agreement(terms, source="avtalsfilen")
            await ops.create(temporal(request), config, agreement)
        except AgreementFileError as error:
            return problem(request, str(error), 422)
        except ops.OperationError as error:
            return problem(request, str(error), 409)
        return RedirectResponse(f"/a/{agreement.id}", status_code=303)

    async def coming(request: Request, days: int, role: str) -> list[dict[str, Any]]:
        rows = await ops.upcoming_all(temporal(request), config, days, role)
        return [{"agreement": a, "m": m} for a, m in rows]

    @app.get("/upcoming", response_class=HTMLResponse, dependencies=pages)
    async def upcoming_page(
        request: Request, days: int = 60, role: str = "finance"
    ) -> HTMLResponse:
        rows = await run(coming(request, days, role))
        return page(request, "upcoming.html", rows=rows, days=days, role=role)

    @app.get("/upcoming.csv", dependencies=pages)
    async def upcoming_csv(request: Request, days: int = 60, role: str = "finance") -> Response:
        rows = await run(ops.upcoming_all(temporal(request), config, days, role))
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
        return page(
            request,
            "agreement.html",
            s=snapshot,
            info=info,
            terms=load_terms(config, snapshot.terms_sha256),
            timeline=await ops.timeline(temporal(request), agreement_id),
            emails=ops.outbox(config, agreement_id),
            events=ops.events(config, agreement_id),
            feed=f"/a/{agreement_id}/calendar.ics?key={feed_key(agreement_id)}",
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
    ) -> Response:
        require_csrf(csrf)
        client_ = temporal(request)
        try:
            match action:
                case "confirm":
                    await ops.decide(
                        client_,
                        agreement_id,
                        "confirm_prerequisites",
                        ConfirmPrerequisites(keys=keys.split(), by="web"),
                        config=config,
                    )
                case "sign-start":
                    await ops.decide(
                        client_,
                        agreement_id,
                        "start_signing",
                        StartSigning(by="web"),
                        config=config,
                    )
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
                    await ops.decide(
                        client_,
                        agreement_id,
                        "record_report",
                        ReportDecision(report=report, occurrence=period, by="web"),
                        config=config,
                    )
                case "notice" | "approve":
                    await ops.decide(
                        client_,
                        agreement_id,
                        "decide_renewal",
                        RenewalRequest(party=party, renew=action == "approve", by="web"),
                        config=config,
                    )
                case "terminate" | "withdraw" | "rescind":
                    kind = {
                        "terminate": EndingKind.termination,
                        "withdraw": EndingKind.withdrawal,
                        "rescind": EndingKind.rescission,
                    }[action]
                    await ops.decide(
                        client_,
                        agreement_id,
                        "terminate",
                        TerminationRequest(
                            kind=kind, party=party or None, reason=reason or "-", by="web"
                        ),
                        config=config,
                    )
                case _:
                    return problem(request, f"okänd åtgärd: {action}", 404)
        except ops.OperationError as error:
            return problem(request, str(error), 409)
        except ValueError as error:
            return problem(request, f"Kontrollera fälten: {error}", 400)
        return RedirectResponse(f"/a/{agreement_id}", status_code=303)

    @app.get("/healthz", response_class=PlainTextResponse)
    def health() -> str:
        return "ok"

    return app


def load_terms(config: Settings, sha256: str) -> Agreement:
    with Session(ready(config.db_url())) as session:
        row = session.get(TermsRecord, sha256)
        if row is None:
            raise ops.OperationError("the agreement's terms are not stored yet; try again")
        terms = Agreement.model_validate_json(row.terms_json)
    assert terms_sha256(terms) == sha256
    return terms
