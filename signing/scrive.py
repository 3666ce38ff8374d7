"""Scrive eSign as a signing provider: its Document API (version 2) with Swedish BankID
to sign. The only module that knows Scrive.

What is used, from the public documentation at https://apidocs.scrive.com/ (the source
of those pages: github.com/scrive/scrive-apidocs, `documentation/`):

- Authentication, "Personal Access Credentials": every request carries
  `Authorization: oauth_signature_method="PLAINTEXT", oauth_consumer_key="<apitoken>",
  oauth_token="<accesstoken>", oauth_signature="<apisecret>&<accesssecret>"`.
- `POST /api/v2/documents/new` (multipart `file` = the PDF, `saved=false`) → 201, the
  Document JSON (`id`, `status: "preparation"`, `parties` with the author's party).
- `POST /api/v2/documents/{id}/update` (form field `document` = Document JSON): title,
  `lang`, `timezone`, `days_to_sign`, `api_callback_url`, `is_saved`, `tags`,
  `display_options` (the reject option with a reason), and `parties`: the author's party
  kept as a viewer, then one `signing_party` per signer with `fields` (name order 1 and
  2, email, company, personal_number), `delivery_method: "email"`,
  `authentication_method_to_sign: "se_bankid"`, `hide_personal_number: true`,
  `sign_order`. 409 unless the document is in preparation.
- `POST /api/v2/documents/{id}/start` → 200 and `status: "pending"`; 409 when it is not
  in preparation or misses data.
- `GET /api/v2/documents/{id}/get` → the Document JSON: `status` (preparation, pending,
  closed, canceled, timedout, rejected, document_error), `mtime`, `sealed_file` (null
  until sealed), per party `sign_time`, `seen_time`, `rejected_time`,
  `rejection_reason`.
- `GET /api/v2/documents/list?filter=[{"filter_by":"tag",...}]` → `documents`: finds
  the document made for a round key (the `tags` set by `update`).
- `GET /api/v2/documents/{id}/files/main/{filename}` → the sealed PDF once closed; 503
  "not ready yet" for about ten seconds after the last signature (documented).
- `GET /api/v2/documents/{id}/history` → `{"events": [{status, time, party, text}]}`:
  kept as the evidence beside the sealed PDF. Scrive's full evidence package (the
  Evidence Log and its appendices) is embedded in the sealed PDF itself
  (helpcenter.scrive.com, "Finding and interpreting the Evidence package").
- `POST /api/v2/documents/{id}/remind` → 202; 409 unless pending.
- `POST /api/v2/documents/{id}/cancel` → 200; 409 unless pending.
- Callbacks ("Callbacks" in the introduction): Scrive POSTs form fields `document_id`,
  `document_json` and `document_signed_and_sealed` to `api_callback_url`, at least once
  per change to pending, closed, canceled, timedout or rejected, possibly more than once
  and for other changes, retried for about ten attempts while the answer is not 2xx.
  A callback says only what the document is now, so it is read as a hint to `get`.
- Errors: JSON `{"error_type", "error_message", "http_code"}`; 401 `invalid_authorisation`,
  403, 404 `resource_not_found`, 409 a state conflict, 5xx Scrive's trouble.

Read in Scrive's server source (kontrakcja, in the same repository's history,
`backend/lib/Doc/Validation/Starting.hs`): a party signing with `se_bankid` must have a
`personal_number` field, which may be empty (the signer then types it in).

Assumed, to be confirmed with a Scrive account: that `update` keeps the author's party
when it is sent back first in `parties` (as Scrive's own examples send the document
back); that the `list` tag filter finds a document as soon as `update` has tagged it;
that `days_to_sign` up to 365 is accepted (API v1 capped it at 365; v2 documents no
limit); that `history` is answered in the API user's language.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from models.config import Settings
from signing.provider import (
    ProviderDocument,
    ProviderRefused,
    ProviderSigner,
    ProviderStatus,
    ProviderUnavailable,
    SignerState,
    SigningRequest,
    State,
)

NAME = "scrive"
TAG = "agreements_round"  # the document tag that names the round a document was made for
TIMEZONE = "Europe/Stockholm"
_DOCUMENT_ID = re.compile(r"^[0-9]{1,20}$")  # Scrive's ids are int64 (parameters.yaml)
_STATES: dict[str, tuple[State, bool]] = {
    "preparation": ("pending", False),
    "pending": ("pending", False),
    "closed": ("signed", True),
    "rejected": ("declined", True),
    "timedout": ("expired", True),
    "canceled": ("cancelled", True),
    "document_error": ("failed", True),
}

log = logging.getLogger("agreements.signing.scrive")


class ScriveCredentials(BaseModel):
    """Personal access credentials of the Scrive user the service acts as."""

    model_config = ConfigDict(frozen=True)

    api_token: SecretStr
    api_secret: SecretStr
    access_token: SecretStr
    access_secret: SecretStr

    def header(self) -> str:
        # PLAINTEXT: the signature is the two secrets, each percent-encoded (RFC 5849
        # 3.4.4), joined by "&"; Scrive's secrets are hex, so encoding changes nothing.
        consumer = quote(self.api_secret.get_secret_value(), safe="")
        token = quote(self.access_secret.get_secret_value(), safe="")
        return (
            'oauth_signature_method="PLAINTEXT", '
            f'oauth_consumer_key="{self.api_token.get_secret_value()}", '
            f'oauth_token="{self.access_token.get_secret_value()}", '
            f'oauth_signature="{consumer}&{token}"'
        )

    def values(self) -> list[str]:
        return [
            s.get_secret_value()
            for s in (self.api_token, self.api_secret, self.access_token, self.access_secret)
            if s.get_secret_value()
        ]


def callback_document_id(fields: Mapping[str, object]) -> str | None:
    """The document a Scrive callback names: its `document_id` form field, else the `id`
    of its `document_json`. None when it names none (or something that is not a Scrive
    document id, which is never put in a URL)."""
    raw = fields.get("document_id")
    if raw is None:
        document = fields.get("document_json")
        if isinstance(document, str | bytes):
            try:
                document = json.loads(document)
            except ValueError:
                return None
        if isinstance(document, Mapping):
            raw = document.get("id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        return None
    value = raw.strip()
    return value if _DOCUMENT_ID.match(value) else None


class ScriveProvider:
    """The Scrive adapter. Holds no state between calls but an optional HTTP client:
    use it as `async with ScriveProvider.from_settings(config) as scrive:` to share one
    client over several calls, or call it bare and each call opens its own."""

    name = NAME

    def __init__(
        self,
        base_url: str,
        credentials: ScriveCredentials,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"ScriveProvider({self.base_url!r})"

    @classmethod
    def from_settings(cls, config: Settings) -> ScriveProvider:
        names = ("api_token", "api_secret", "access_token", "access_secret")
        given = {name: getattr(config, f"scrive_{name}") for name in names}
        if any(value is None for value in given.values()):
            raise ProviderRefused(_NOT_CONFIGURED)
        credentials = ScriveCredentials.model_validate(given)
        return cls(config.scrive_url, credentials, timeout=config.scrive_timeout_seconds)

    async def __aenter__(self) -> ScriveProvider:
        self._client = self._new_client()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # The interface (signing.provider.SigningProvider)

    async def create(self, request: SigningRequest) -> ProviderDocument:
        if not request.pdf.startswith(b"%PDF-"):
            raise ProviderRefused("the document to sign is not a PDF")
        emails = [s.email.strip().lower() for s in request.signers]
        if len(set(emails)) != len(emails):
            raise ProviderRefused("a signer is named twice (the same email)")
        async with self._session() as client:
            found: dict[str, Any] | None
            if request.document_id is not None:
                found = await self._get(client, request.document_id)
            else:
                found = await self._find(client, request.key)
            if found is None:
                document = await self._new(client, request.pdf)
                log.info("scrive: document %s made for %s", document["id"], request.key)
            else:
                document = found
            if document.get("status") == "preparation":
                document = await self._update(client, document, request)
            if document.get("status") == "preparation":
                document = await self._start(client, str(document["id"]))
                log.info("scrive: document %s sent for signing", document["id"])
            return ProviderDocument(provider=NAME, document_id=str(document["id"]))

    async def status(self, document: ProviderDocument) -> ProviderStatus:
        async with self._session() as client:
            return self._status(await self._get(client, self._id(document)))

    async def sealed(self, document: ProviderDocument) -> bytes:
        document_id = self._id(document)
        async with self._session() as client:
            current = await self._get(client, document_id)
            if current.get("status") != "closed":
                raise ProviderRefused(
                    f"Scrive document {document_id} is {current.get('status')}, not signed "
                    "by all: it has no sealed file"
                )
            if not current.get("sealed_file"):
                raise ProviderUnavailable(f"Scrive document {document_id} is not sealed yet")
            what = f"the sealed file of document {document_id}"
            path = f"/api/v2/documents/{document_id}/files/main/sealed.pdf"
            answer = await self._call(client, "GET", path, what)
        if not answer.content.startswith(b"%PDF-"):
            raise ProviderUnavailable(f"Scrive sent something other than a PDF for {what}")
        return answer.content

    async def evidence(self, document: ProviderDocument) -> bytes | None:
        document_id = self._id(document)
        async with self._session() as client:
            what = f"the history of document {document_id}"
            answer = await self._call(
                client, "GET", f"/api/v2/documents/{document_id}/history", what
            )
        events = _json(answer, what).get("events")
        return answer.content if isinstance(events, list) and events else None

    async def remind(self, document: ProviderDocument) -> bool:
        document_id = self._id(document)
        async with self._session() as client:
            answer = await self._call(
                client,
                "POST",
                f"/api/v2/documents/{document_id}/remind",
                f"a reminder for document {document_id}",
                conflict_ok=True,
            )
        return answer.status_code != 409

    async def cancel(self, document: ProviderDocument) -> ProviderStatus:
        document_id = self._id(document)
        async with self._session() as client:
            what = f"cancelling document {document_id}"
            answer = await self._call(
                client,
                "POST",
                f"/api/v2/documents/{document_id}/cancel",
                what,
                conflict_ok=True,
            )
            if answer.status_code == 409:  # not pending: signed, declined, ... or cancelled
                return self._status(await self._get(client, document_id))
            return self._status(_json(answer, what))

    def callback_document_id(self, fields: Mapping[str, object]) -> str | None:
        return callback_document_id(fields)

    # Scrive's calls

    async def _get(self, client: httpx.AsyncClient, document_id: str) -> dict[str, Any]:
        _check_id(document_id)
        what = f"document {document_id}"
        answer = await self._call(client, "GET", f"/api/v2/documents/{document_id}/get", what)
        return _json(answer, what)

    async def _find(self, client: httpx.AsyncClient, key: str) -> dict[str, Any] | None:
        """The document made for this round key, if any: one already started first."""
        what = f"the documents of {key}"
        filters = [{"filter_by": "tag", "name": TAG, "value": key}]
        params = {"filter": json.dumps(filters), "max": "10"}
        answer = await self._call(client, "GET", "/api/v2/documents/list", what, params=params)
        found = [
            d
            for d in _json(answer, what).get("documents") or []
            if isinstance(d, dict) and _tagged(d, key)
        ]
        started = [d for d in found if d.get("status") != "preparation"]
        if len(started) > 1:
            ids = ", ".join(str(d.get("id")) for d in started)
            log.error("scrive: %s has more than one document started: %s", key, ids)
        candidates = started or found
        return candidates[0] if candidates else None

    async def _new(self, client: httpx.AsyncClient, pdf: bytes) -> dict[str, Any]:
        what = "a new document"
        answer = await self._call(
            client,
            "POST",
            "/api/v2/documents/new",
            what,
            # Not saved (not in Scrive's E-archive) until `update` names it and tags it
            # with its round: a document left here by a crash is never sent to anyone.
            data={"saved": "false"},
            files={"file": ("document.pdf", pdf, "application/pdf")},
        )
        return _json(answer, what)

    async def _update(
        self, client: httpx.AsyncClient, document: dict[str, Any], request: SigningRequest
    ) -> dict[str, Any]:
        document_id = str(document["id"])
        _check_id(document_id)
        what = f"the parties of document {document_id}"
        parties: list[dict[str, Any]] = [
            # The service's own Scrive user is the author: a viewer, never a signer, and
            # never sent the signed copy.
            {
                **p,
                "is_signatory": False,
                "signatory_role": "viewer",
                "confirmation_delivery_method": "none",
            }
            for p in document.get("parties") or []
            if isinstance(p, dict) and p.get("is_author")
        ]
        for n, signer in enumerate(request.signers, start=1):
            parties.append(_party(signer, n if request.sequential else 1))
        options = document.get("display_options")
        body = {
            "title": request.title,
            "lang": request.language,
            "timezone": TIMEZONE,
            "days_to_sign": request.expires_days,
            "api_callback_url": request.callback_url,
            "is_saved": True,
            "tags": [{"name": TAG, "value": request.key}],
            "display_options": {
                **(options if isinstance(options, dict) else {}),
                "show_reject_option": True,
                "allow_reject_reason": True,
            },
            "parties": parties,
        }
        answer = await self._call(
            client,
            "POST",
            f"/api/v2/documents/{document_id}/update",
            what,
            data={"document": json.dumps(body)},
            conflict_ok=True,
        )
        if answer.status_code == 409:  # started meanwhile (a retry racing its first try)
            return await self._get(client, document_id)
        return _json(answer, what)

    async def _start(self, client: httpx.AsyncClient, document_id: str) -> dict[str, Any]:
        what = f"starting document {document_id}"
        answer = await self._call(
            client, "POST", f"/api/v2/documents/{document_id}/start", what, conflict_ok=True
        )
        if answer.status_code != 409:
            return _json(answer, what)
        current = await self._get(client, document_id)
        if current.get("status") == "preparation":
            raise ProviderRefused(f"Scrive refused {what}: {self._detail(answer)}")
        return current  # started already: an earlier try's answer was lost

    def _status(self, document: dict[str, Any]) -> ProviderStatus:
        raw = str(document.get("status"))
        if raw not in _STATES:
            log.warning("scrive: document %s has an unknown status %r", document.get("id"), raw)
        state, closed = _STATES.get(raw, ("pending", False))
        signers = [
            _signer_state(p)
            for p in document.get("parties") or []
            if isinstance(p, dict) and _signs(p)
        ]
        return ProviderStatus(
            document=ProviderDocument(provider=NAME, document_id=str(document.get("id"))),
            state=state,
            closed=closed,
            sealed_ready=raw == "closed" and bool(document.get("sealed_file")),
            signers=signers,
            modified_at=_time(document.get("mtime")),
        )

    # HTTP

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            transport=self._transport,
            headers={
                "Authorization": self._credentials.header(),
                "Accept": "application/json",
                "User-Agent": "agreements (signing.scrive)",
            },
        )

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with self._new_client() as client:
            yield client

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        conflict_ok: bool = False,
    ) -> httpx.Response:
        """One request. A transport failure, a timeout, 408, 429 and 5xx are
        `ProviderUnavailable`; any other answer that is not 2xx is `ProviderRefused`,
        except 409 when `conflict_ok` (the caller reads the document's state)."""
        try:
            answer = await client.request(method, path, params=params, data=data, files=files)
        except httpx.TimeoutException as e:
            raise ProviderUnavailable(f"Scrive did not answer in time: {what}") from e
        except httpx.TransportError as e:
            raise ProviderUnavailable(
                f"Scrive could not be reached: {what} ({type(e).__name__})"
            ) from e
        code = answer.status_code
        if 200 <= code < 300 or (code == 409 and conflict_ok):
            return answer
        detail = self._detail(answer)
        if code in (408, 429) or code >= 500:
            raise ProviderUnavailable(f"Scrive answered {code} to {what}: {detail}")
        if code in (401, 403):
            raise ProviderRefused(
                f"Scrive refused the credentials ({code}) for {what}: {detail}; check "
                "AGREEMENTS_SCRIVE_API_TOKEN, _API_SECRET, _ACCESS_TOKEN, _ACCESS_SECRET"
            )
        raise ProviderRefused(f"Scrive refused {what} ({code}): {detail}")

    def _detail(self, answer: httpx.Response) -> str:
        """What Scrive said, short, with any credential it may have echoed blanked out."""
        try:
            body = answer.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("error_type" in body or "error_message" in body):
            text = f"{body.get('error_type', '')}: {body.get('error_message', '')}"
        else:
            text = answer.text
        for secret in self._credentials.values():  # before shortening: no piece is left
            text = text.replace(secret, "***")
        return " ".join(text.split())[:300] or answer.reason_phrase

    def _id(self, document: ProviderDocument) -> str:
        if document.provider != NAME:
            raise ProviderRefused(f"{document.provider} documents are not Scrive's")
        _check_id(document.document_id)
        return document.document_id


_NOT_CONFIGURED = (
    "Scrive is not configured: set AGREEMENTS_SCRIVE_API_TOKEN, AGREEMENTS_SCRIVE_API_SECRET, "
    "AGREEMENTS_SCRIVE_ACCESS_TOKEN and AGREEMENTS_SCRIVE_ACCESS_SECRET (the personal access "
    "credentials of the service's Scrive user)"
)


def _check_id(document_id: str) -> None:
    if not _DOCUMENT_ID.match(document_id):
        raise ProviderRefused(f"not a Scrive document id: {document_id[:40]!r}")


def _json(answer: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"Scrive's answer to {what} is not the JSON expected")
    return body


def _party(signer: ProviderSigner, order: int) -> dict[str, Any]:
    first, _, last = signer.name.strip().rpartition(" ")
    if not first:  # one word: it is the first name
        first, last = last, ""
    number = signer.personal_number or ""

    def field(kind: str, value: str, *, required: bool, **more: Any) -> dict[str, Any]:
        return {
            "type": kind,
            **more,
            "value": value,
            "is_obligatory": required,
            "should_be_filled_by_sender": bool(value) and required,
            "placements": [],
        }

    return {
        "signatory_role": "signing_party",
        "is_signatory": True,
        "sign_order": order,
        "fields": [
            field("name", first, required=True, order=1),
            field("name", last, required=bool(last), order=2),
            field("email", signer.email, required=True),
            field("company", signer.party_name, required=False),
            # Required by Scrive for se_bankid; empty, the signer types it in.
            field("personal_number", number, required=True),
        ],
        "delivery_method": "email",
        "confirmation_delivery_method": "none",  # the service sends the completion
        "authentication_method_to_view": "standard",
        "authentication_method_to_sign": "se_bankid",
        # The service stores the sealed file: no personal identity number in it.
        "hide_personal_number": True,
    }


def _signs(party: dict[str, Any]) -> bool:
    if "signatory_role" in party:
        return party.get("signatory_role") == "signing_party"
    return bool(party.get("is_signatory")) and not party.get("is_author")


def _signer_state(party: dict[str, Any]) -> SignerState:
    fields = [f for f in party.get("fields") or [] if isinstance(f, dict)]
    email = next((str(f.get("value") or "") for f in fields if f.get("type") == "email"), "")
    names = sorted(
        (f for f in fields if f.get("type") == "name"), key=lambda f: int(f.get("order") or 0)
    )
    reason = party.get("rejection_reason")
    return SignerState(
        email=email,
        name=" ".join(str(f.get("value") or "") for f in names).strip(),
        seen_at=_time(party.get("seen_time")),
        signed_at=_time(party.get("sign_time")),
        declined_at=_time(party.get("rejected_time")),
        reason=str(reason) if reason else None,
        method_detail=str(party.get("authentication_method_to_sign") or ""),
    )


def _tagged(document: dict[str, Any], key: str) -> bool:
    tags = document.get("tags") or []
    return any(isinstance(t, dict) and t.get("name") == TAG and t.get("value") == key for t in tags)


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)
