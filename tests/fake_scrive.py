"""A fake Scrive on loopback that behaves as Scrive's Document API documentation says
(https://apidocs.scrive.com/), for the adapter's tests (tests/test_scrive.py).

It checks the personal-access-credentials header, keeps documents in memory, takes only
a PDF, runs preparation → pending → closed / rejected / timedout / canceled, refuses a
`se_bankid` signer without a `personal_number` field, answers 503 for the sealed file
until it is sealed, and records a callback (form fields `document_id`, `document_json`,
`document_signed_and_sealed`) on every change, for the test to deliver when and as often
as it likes. What people do at Scrive (sign, decline) and what happens to Scrive (down,
slow, a lost answer) are plain Python methods of `FakeScrive`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from agreements.simulate import free_port


@dataclass(frozen=True)
class Credentials:
    api_token: str = "5f1d0a9b3c7e2d41_17"
    api_secret: str = "a8c4e1f09b7d3e25"
    access_token: str = "9e2b7c4d1a0f6e38_42"
    access_secret: str = "d3f60b1e8a2c97f4"

    def values(self) -> list[str]:
        return [self.api_token, self.api_secret, self.access_token, self.access_secret]


@dataclass(frozen=True)
class Callback:
    """One callback as Scrive makes it: the document as it was at that moment."""

    url: str
    form: dict[str, str]


@dataclass
class _Document:
    json: dict[str, Any]
    pdf: bytes | None
    sealed: bytes | None = None
    events: list[dict[str, str]] = field(default_factory=list)
    reminders: int = 0
    starts: int = 0
    callbacks: list[Callback] = field(default_factory=list)


AUTH_TO_SIGN = {
    "standard",
    "sms_pin",
    "se_bankid",
    "no_bankid",
    "dk_nemid",
    "fi_tupas",
    "onfido_document_check",
    "onfido_document_and_photo_check",
}
FIELD_TYPES = {
    "name",
    "email",
    "mobile",
    "company",
    "company_number",
    "personal_number",
    "signature",
    "checkbox",
    "radiogroup",
    "text",
}
ACTIONS = {"new", "update", "start", "get", "list", "remind", "cancel", "file", "history"}


def _error(code: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error_type": kind, "error_message": message, "http_code": code}, status_code=code
    )


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class FakeScrive:
    def __init__(self, credentials: Credentials | None = None, port: int | None = None) -> None:
        self.credentials = credentials or Credentials()
        self.port = port or free_port()
        self.echo_credentials = False  # an error that repeats the Authorization header
        self.delay = 0.0  # seconds before each answer (a slow Scrive)
        self._lock = threading.Lock()
        self._documents: dict[str, _Document] = {}
        self._down: int | None = None
        self._failures: list[tuple[str, int, bool]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Running

    def start(self) -> None:
        self._server, self._thread = _serve(self.app, self.port)

    def stop(self) -> None:
        """Stop listening: connections are refused until `start` (documents are kept)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    # What happens to Scrive

    def down(self, status: int = 503) -> None:
        """Answer every request with `status` (Scrive's maintenance page) until `up`."""
        self._down = status

    def up(self) -> None:
        self._down = None
        self.delay = 0.0
        with self._lock:
            self._failures.clear()

    def fail_next(self, action: str, status: int = 503, *, after: bool = False) -> None:
        """Fail the next request of `action` (new, update, start, get, list, remind,
        cancel, file, history) with `status`; `after`: carry it out first, so only the
        answer is lost."""
        assert action in ACTIONS, action
        with self._lock:
            self._failures.append((action, status, after))

    # What people do at Scrive

    def sign(self, document_id: str, email: str, at: dt.datetime | None = None) -> None:
        at = at or dt.datetime.now(dt.UTC)
        with self._lock:
            doc = self._pending(document_id)
            party = self._party(doc, email)
            party["seen_time"] = party["seen_time"] or _iso(at)
            party["sign_time"] = _iso(at)
            self._event(doc, "signed", at, party, "signed the document with Swedish BankID")
            signing = [p for p in doc.json["parties"] if p["signatory_role"] == "signing_party"]
            if all(p["sign_time"] for p in signing):
                doc.json["status"] = "closed"
                doc.json["sealed_file"] = None  # sealed a few seconds later (`seal`)
            self._changed(doc, at)

    def open(self, document_id: str, email: str, at: dt.datetime | None = None) -> None:
        at = at or dt.datetime.now(dt.UTC)
        with self._lock:
            doc = self._pending(document_id)
            party = self._party(doc, email)
            party["seen_time"] = _iso(at)
            self._event(doc, "opened", at, party, "viewed the document")
            self._changed(doc, at, callback=False)

    def decline(
        self, document_id: str, email: str, reason: str, at: dt.datetime | None = None
    ) -> None:
        at = at or dt.datetime.now(dt.UTC)
        with self._lock:
            doc = self._pending(document_id)
            party = self._party(doc, email)
            party["rejected_time"] = _iso(at)
            party["rejection_reason"] = reason
            doc.json["status"] = "rejected"
            self._event(doc, "rejected", at, party, "rejected the document")
            self._changed(doc, at)

    def time_out(self, document_id: str, at: dt.datetime | None = None) -> None:
        at = at or dt.datetime.now(dt.UTC)
        with self._lock:
            doc = self._pending(document_id)
            doc.json["status"] = "timedout"
            self._event(doc, "timeouted", at, None, "The document timed out.")
            self._changed(doc, at)

    def seal(self, document_id: str, at: dt.datetime | None = None) -> bytes:
        """Seal a closed document: its main file with a seal appended."""
        at = at or dt.datetime.now(dt.UTC)
        with self._lock:
            doc = self._documents[document_id]
            assert doc.json["status"] == "closed" and doc.pdf is not None
            doc.sealed = doc.pdf + f"\n% sealed by the fake Scrive: {document_id}\n%%EOF\n".encode()
            doc.json["sealed_file"] = {"id": str(random.getrandbits(40)), "name": "sealed.pdf"}
            self._event(doc, "sealed", at, None, "The document was sealed.")
            self._changed(doc, at)
            return doc.sealed

    # What the test reads

    def document(self, document_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._documents[document_id].json)

    def document_ids(self) -> list[str]:
        with self._lock:
            return list(self._documents)

    def starts(self, document_id: str) -> int:
        return self._documents[document_id].starts

    def reminders(self, document_id: str) -> int:
        return self._documents[document_id].reminders

    def callbacks(self, document_id: str) -> list[Callback]:
        with self._lock:
            return list(self._documents[document_id].callbacks)

    def deliver(self, callback: Callback, attempts: int = 10) -> int:
        """POST a callback as Scrive does, again while the answer is not 2xx (Scrive
        retries about ten times, at growing intervals: here at once). The number of
        attempts made."""
        for attempt in range(1, attempts + 1):
            answer = httpx.post(callback.url, data=callback.form, timeout=10)
            if answer.is_success:
                return attempt
        return attempts

    # The API

    def _build(self) -> FastAPI:
        app = FastAPI()
        base = "/api/v2/documents"

        @app.middleware("http")
        async def gate(request: Request, call_next: Any) -> Response:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self._down is not None:
                return _error(self._down, "server_error", "Scrive eSign is down for maintenance")
            refused = self._refuse(request.headers.get("authorization", ""))
            if refused is not None:
                return refused
            answer: Response = await call_next(request)
            return answer

        @app.post(f"{base}/new")
        async def new(request: Request) -> Response:
            form = await request.form()
            upload = form.get("file")
            pdf = await upload.read() if isinstance(upload, UploadFile) else None
            if upload is not None and not (pdf or b"").startswith(b"%PDF-"):
                return _error(
                    400, "request_parameters_parse_error", "The parameter `file` is not a PDF"
                )
            name = upload.filename if isinstance(upload, UploadFile) else None
            saved = str(form.get("saved", "true")).lower() == "true"
            return self._act("new", lambda: self._new(pdf, name or "", saved), 201)

        @app.post(base + "/{document_id}/update")
        async def update(document_id: str, request: Request) -> Response:
            form = await request.form()
            raw = form.get("document")
            try:
                body = json.loads(raw) if isinstance(raw, str) else None
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return _error(400, "request_parameters_parse_error", "`document` is not JSON")
            return self._act("update", lambda: self._update(document_id, body))

        @app.post(base + "/{document_id}/start")
        async def start(document_id: str) -> Response:
            return self._act("start", lambda: self._start(document_id))

        @app.get(base + "/{document_id}/get")
        async def get(document_id: str) -> Response:
            return self._act("get", lambda: self._get(document_id))

        @app.get(f"{base}/list")
        async def listing(request: Request) -> Response:
            raw = request.query_params.get("filter", "[]")
            try:
                filters = json.loads(raw)
            except ValueError:
                return _error(400, "request_parameters_parse_error", "`filter`")
            return self._act("list", lambda: self._list(filters))

        @app.post(base + "/{document_id}/remind")
        async def remind(document_id: str) -> Response:
            return self._act("remind", lambda: self._remind(document_id), 202)

        @app.post(base + "/{document_id}/cancel")
        async def cancel(document_id: str) -> Response:
            return self._act("cancel", lambda: self._cancel(document_id))

        @app.get(base + "/{document_id}/files/main/{filename}")
        async def main_file(document_id: str, filename: str) -> Response:
            return self._act("file", lambda: self._file(document_id))

        @app.get(base + "/{document_id}/history")
        async def history(document_id: str) -> Response:
            return self._act("history", lambda: self._history(document_id))

        return app

    def _refuse(self, header: str) -> JSONResponse | None:
        given = dict(re.findall(r'(\w+)="([^"]*)"', header))
        consumer, _, token = given.get("oauth_signature", "").partition("&")
        c = self.credentials
        if (
            given.get("oauth_signature_method") == "PLAINTEXT"
            and given.get("oauth_consumer_key") == c.api_token
            and given.get("oauth_token") == c.access_token
            and unquote(consumer) == c.api_secret
            and unquote(token) == c.access_secret
        ):
            return None
        message = (
            "No valid access credentials were provided. Please refer to our API documentation."
        )
        if self.echo_credentials:
            message += f" Received: {header}"
        return _error(401, "invalid_authorisation", message)

    def _act(self, action: str, work: Any, status: int = 200) -> Response:
        with self._lock:
            failure = next((f for f in self._failures if f[0] == action), None)
            if failure is not None:
                self._failures.remove(failure)
        if failure is not None and not failure[2]:
            return _error(failure[1], "server_error", f"{action} failed")
        try:
            with self._lock:
                result = work()
        except _Refusal as refusal:
            return refusal.response
        if failure is not None:  # done, but the answer is lost
            return _error(failure[1], "server_error", f"{action}: the answer was lost")
        if isinstance(result, Response):
            return result
        return JSONResponse(result, status_code=status)

    def _doc(self, document_id: str) -> _Document:
        doc = self._documents.get(document_id)
        if doc is None:
            message = f"The resource was not found. A document with id {document_id} was not found."
            raise _Refusal(_error(404, "resource_not_found", message))
        return doc

    def _pending(self, document_id: str) -> _Document:
        doc = self._documents[document_id]
        assert doc.json["status"] == "pending", doc.json["status"]
        return doc

    def _party(self, doc: _Document, email: str) -> dict[str, Any]:
        for party in doc.json["parties"]:
            if party["signatory_role"] == "signing_party" and _email(party) == email:
                return party  # type: ignore[no-any-return]
        raise AssertionError(f"no signing party {email}")

    def _new(self, pdf: bytes | None, filename: str, saved: bool) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        document_id = str(random.randrange(10**18, 10**19))
        author = _party_defaults(
            {
                "id": str(random.randrange(10**5, 10**7)),
                "is_author": True,
                "user_id": "1404",
                "signatory_role": "signing_party",
                "is_signatory": True,
                "fields": [
                    {"type": "name", "order": 1, "value": "Avtals"},
                    {"type": "name", "order": 2, "value": "Tjänsten"},
                    {"type": "email", "value": "avtal@kommun.example"},
                ],
            }
        )
        title = filename.rsplit(".", 1)[0] if filename else "Dokument"
        self._documents[document_id] = _Document(
            pdf=pdf,
            json={
                "id": document_id,
                "title": title,
                "parties": [author],
                "file": {"id": str(random.getrandbits(40)), "name": filename} if pdf else None,
                "sealed_file": None,
                "ctime": _iso(now),
                "mtime": _iso(now),
                "timeout_time": None,
                "status": "preparation",
                "days_to_sign": 90,
                "days_to_remind": None,
                "display_options": {
                    "show_header": True,
                    "show_pdf_download": True,
                    "show_reject_option": True,
                    "allow_reject_reason": False,
                    "show_footer": True,
                    "document_is_receipt": False,
                    "show_arrow": True,
                },
                "lang": "en",
                "api_callback_url": None,
                "object_version": 1,
                "timezone": "Europe/Stockholm",
                "tags": [],
                "is_template": False,
                "is_saved": saved,
            },
        )
        return copy.deepcopy(self._documents[document_id].json)

    def _update(self, document_id: str, body: dict[str, Any]) -> dict[str, Any]:
        doc = self._doc(document_id)
        if doc.json["status"] != "preparation":
            raise _Refusal(
                _error(409, "document_state_error", "The document status should be Preparation")
            )
        for name in ("title", "lang", "timezone", "api_callback_url", "is_saved", "tags"):
            if name in body:
                doc.json[name] = body[name]
        if "days_to_sign" in body:
            days = body["days_to_sign"]
            if not isinstance(days, int) or not 1 <= days <= 365:
                raise _Refusal(_error(400, "request_parameters_invalid", "days_to_sign"))
            doc.json["days_to_sign"] = days
        if isinstance(body.get("display_options"), dict):
            doc.json["display_options"] = {**doc.json["display_options"], **body["display_options"]}
        if "parties" in body:
            doc.json["parties"] = self._parties(doc, body["parties"])
        doc.json["object_version"] += 1
        return copy.deepcopy(doc.json)

    def _parties(self, doc: _Document, given: Any) -> list[dict[str, Any]]:
        invalid = _error(400, "request_parameters_invalid", "parties")
        if not isinstance(given, list) or not all(isinstance(p, dict) for p in given):
            raise _Refusal(invalid)
        author = next(p for p in doc.json["parties"] if p["is_author"])
        parties = []
        for p in given:
            role = p.get("signatory_role", "signing_party")
            if "is_signatory" in p and bool(p["is_signatory"]) != (role == "signing_party"):
                role = "signing_party" if p["is_signatory"] else "viewer"  # documented
            if role not in ("signing_party", "viewer", "approver"):
                raise _Refusal(invalid)
            if p.get("authentication_method_to_sign", "standard") not in AUTH_TO_SIGN:
                raise _Refusal(invalid)
            fields = p.get("fields", [])
            if not isinstance(fields, list) or any(
                not isinstance(f, dict) or f.get("type") not in FIELD_TYPES for f in fields
            ):
                raise _Refusal(invalid)
            is_author = p.get("id") == author["id"]
            if p.get("id") and not is_author:
                raise _Refusal(invalid)  # a party of another document, or made up
            party = _party_defaults({**(author if is_author else {}), **p})
            party.update(
                signatory_role=role,
                is_signatory=role == "signing_party",
                is_author=is_author,
                id=author["id"] if is_author else str(random.randrange(10**5, 10**7)),
            )
            parties.append(party)
        if sum(p["is_author"] for p in parties) != 1:
            raise _Refusal(_error(400, "request_parameters_invalid", "the author is a party"))
        return parties

    def _start(self, document_id: str) -> dict[str, Any]:
        doc = self._doc(document_id)

        def conflict(message: str) -> _Refusal:
            return _Refusal(_error(409, "document_state_error", message))

        if doc.json["status"] != "preparation":
            raise conflict("The document state must be 'Preparation'.")
        if doc.pdf is None:
            raise conflict("Document must have a file before it can be started.")
        signing = [p for p in doc.json["parties"] if p["signatory_role"] == "signing_party"]
        if not signing:
            raise conflict("The document has missing or invalid data: no signing party.")
        for party in signing:
            if party["delivery_method"] == "email" and "@" not in _email(party):
                raise conflict("The document has missing or invalid data: an email.")
            if party["authentication_method_to_sign"] == "se_bankid":
                numbers = [f for f in party["fields"] if f["type"] == "personal_number"]
                digits = re.sub(r"[^0-9]", "", numbers[0].get("value") or "") if numbers else ""
                if not numbers or len(digits) not in (0, 10, 12):
                    raise conflict(
                        "The document has missing or invalid data: a personal number "
                        "for Swedish BankID."
                    )
        now = dt.datetime.now(dt.UTC)
        doc.starts += 1
        doc.json["status"] = "pending"
        doc.json["timeout_time"] = _iso(now + dt.timedelta(days=doc.json["days_to_sign"]))
        self._event(doc, "initiated", now, None, "The signing process was initiated.")
        for party in signing:
            self._event(doc, "sent", now, party, "was sent an invitation to sign")
        self._changed(doc, now)
        return copy.deepcopy(doc.json)

    def _get(self, document_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._doc(document_id).json)

    def _list(self, filters: Any) -> dict[str, Any]:
        found = []
        for doc in self._documents.values():
            ok = True
            for f in filters if isinstance(filters, list) else []:
                if f.get("filter_by") == "tag":
                    tag = {"name": f.get("name"), "value": f.get("value")}
                    ok = ok and tag in doc.json["tags"]
                elif f.get("filter_by") == "status":
                    ok = ok and doc.json["status"] in f.get("statuses", [])
            if ok:
                found.append(copy.deepcopy(doc.json))
        found.sort(key=lambda d: d["mtime"], reverse=True)
        return {"total_matching": len(found), "documents": found[:100]}

    def _remind(self, document_id: str) -> dict[str, Any]:
        doc = self._doc(document_id)
        if doc.json["status"] != "pending":
            raise _Refusal(
                _error(409, "document_state_error", "The document status should be Pending")
            )
        doc.reminders += 1
        now = dt.datetime.now(dt.UTC)
        for party in doc.json["parties"]:
            if party["signatory_role"] == "signing_party" and not party["sign_time"]:
                self._event(doc, "sent", now, party, "was sent a reminder")
        return {}

    def _cancel(self, document_id: str) -> dict[str, Any]:
        doc = self._doc(document_id)
        if doc.json["status"] != "pending":
            raise _Refusal(_error(409, "document_state_error", "The document state is not Pending"))
        now = dt.datetime.now(dt.UTC)
        doc.json["status"] = "canceled"
        self._event(doc, "cancelled", now, None, "The document was cancelled.")
        self._changed(doc, now)
        return copy.deepcopy(doc.json)

    def _file(self, document_id: str) -> Response:
        doc = self._doc(document_id)
        if doc.json["status"] == "closed":
            if doc.sealed is None:
                return _error(
                    503,
                    "server_error",
                    "The sealed PDF for the document is not ready yet, please wait and try again.",
                )
            return Response(doc.sealed, media_type="application/pdf")
        return Response(doc.pdf or b"", media_type="application/pdf")

    def _history(self, document_id: str) -> dict[str, Any]:
        return {"events": list(reversed(self._doc(document_id).events))}

    def _event(
        self,
        doc: _Document,
        status: str,
        at: dt.datetime,
        party: dict[str, Any] | None,
        text: str,
    ) -> None:
        name = _name(party) if party else ""
        doc.events.append(
            {"status": status, "time": _iso(at), "party": name, "text": f"{name} {text}".strip()}
        )

    def _changed(self, doc: _Document, at: dt.datetime, *, callback: bool = True) -> None:
        doc.json["mtime"] = _iso(at)
        doc.json["object_version"] += 1
        url = doc.json.get("api_callback_url")
        if callback and url:
            sealed = doc.json["status"] == "closed" and doc.sealed is not None
            form = {
                "document_id": doc.json["id"],
                "document_json": json.dumps(doc.json),
                "document_signed_and_sealed": "true" if sealed else "false",
            }
            doc.callbacks.append(Callback(url=url, form=form))


class _Refusal(Exception):
    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def _party_defaults(given: dict[str, Any]) -> dict[str, Any]:
    party: dict[str, Any] = {
        "id": None,
        "user_id": None,
        "is_author": False,
        "is_signatory": True,
        "signatory_role": "signing_party",
        "fields": [],
        "sign_order": 1,
        "sign_time": None,
        "seen_time": None,
        "read_invitation_time": None,
        "rejected_time": None,
        "rejection_reason": None,
        "sign_success_redirect_url": None,
        "reject_redirect_url": None,
        "email_delivery_status": "unknown",
        "mobile_delivery_status": "unknown",
        "csv": None,
        "delivery_method": "email",
        "authentication_method_to_view": "standard",
        "authentication_method_to_view_archived": "standard",
        "authentication_method_to_sign": "standard",
        "confirmation_delivery_method": "email",
        "allows_highlighting": False,
        "hide_personal_number": False,
        "attachments": [],
        "highlighted_pages": [],
        "api_delivery_url": None,
    }
    party.update(copy.deepcopy(given))
    return party


def _email(party: dict[str, Any]) -> str:
    return next((str(f.get("value")) for f in party["fields"] if f["type"] == "email"), "")


def _name(party: dict[str, Any]) -> str:
    names = sorted((f for f in party["fields"] if f["type"] == "name"), key=lambda f: f["order"])
    return " ".join(str(f.get("value") or "") for f in names).strip()


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the fake server did not start on port {port}")
        time.sleep(0.02)
    return server, thread


class CallbackSink:
    """Where the service would receive Scrive's callbacks: keeps each request's form
    fields; answers 500 to the first `refuse` requests (a service that is briefly down)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[dict[str, str]] = []
        self.refuse = 0
        self.app = FastAPI()

        @self.app.post("/scrive/callback")
        async def receive(request: Request) -> Response:
            if self.refuse > 0:
                self.refuse -= 1
                return Response(status_code=500)
            form = await request.form()
            self.received.append({k: str(v) for k, v in form.items()})
            return Response(status_code=200)

        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/scrive/callback"

    def start(self) -> None:
        self._server, self._thread = _serve(self.app, self.port)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


@contextmanager
def running(server: FakeScrive | CallbackSink) -> Iterator[None]:
    server.start()
    try:
        yield
    finally:
        server.stop()
