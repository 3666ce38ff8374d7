"""The interface of a signing provider: what a signature round asks of a service that
collects signatures with an e-identification (Scrive with Swedish BankID today; Inera,
Addo or Freja would be one more adapter), as plain frozen data and one Protocol.

The other two signing methods of a round, the signing link (a simple electronic
signature) and paper, are the service's own and need no provider. Nothing here knows a
provider's API, and nothing here imports Temporal: an activity holds a provider, calls
it, and turns `ProviderUnavailable` into a retry and `ProviderRefused` into a
non-retryable failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ProviderSigner(_Frozen):
    """One person who signs with the provider. `personal_number` is handed to the
    provider when the coordinator supplies it (otherwise the signer types it in the
    provider's signing page): it is never stored by the service, never logged, and the
    adapter asks the provider to leave it out of the sealed file. Make the request inside
    the activity: a personal number passed through a workflow is kept in its history."""

    name: str
    email: str
    party: str  # the party's key in the agreement
    party_name: str = ""  # shown by the provider beside the name (the organisation)
    personal_number: str | None = Field(default=None, repr=False)


class SigningRequest(_Frozen):
    """Everything `create` needs, in one model so fields can be added later.

    `key` names the round (for example `<agreement>-round-<n>`): `create` with a key it
    has seen before returns the document made for it instead of making a second one, so
    a retried activity never starts two documents. `document_id`, when the caller already
    holds one for this key, is used as it is."""

    # The PDF travels as base64 in JSON (Temporal's pydantic converter): as UTF-8, pydantic's
    # default, most PDFs would not serialise at all.
    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    key: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1)
    pdf: bytes = Field(repr=False)
    signers: list[ProviderSigner] = Field(min_length=1)
    callback_url: str | None = None
    expires_days: int = Field(default=30, ge=1, le=365)
    language: Literal["sv", "en"] = "sv"
    sequential: bool = False  # sign one after the other, in the order of `signers`
    document_id: str | None = None


class ProviderDocument(_Frozen):
    """A document at a provider: all the service keeps to ask about it again."""

    provider: str  # "scrive"
    document_id: str


State = Literal["pending", "signed", "declined", "expired", "cancelled", "failed"]


class SignerState(_Frozen):
    """One signer as the provider last reported them. Times are aware (UTC as the
    provider gives them)."""

    email: str
    name: str = ""
    seen_at: AwareDatetime | None = None  # opened the document at the provider
    signed_at: AwareDatetime | None = None
    declined_at: AwareDatetime | None = None
    reason: str | None = None  # the reason given with a decline
    method_detail: str = ""  # how they were to sign, e.g. "se_bankid"


class ProviderStatus(_Frozen):
    """Where a document stands at the provider, fetched from the provider (never taken
    from a callback's body, which may be stale).

    `state`: pending (out for signing, or not yet started), signed (everyone signed),
    declined (a signer declined), expired (nobody may sign any more: the time ran out),
    cancelled (by us), failed (the provider broke the document). `closed`: the provider
    will not change the outcome any more. `sealed_ready`: the signed and sealed file can
    be fetched (a signed document is sealed a few seconds after the last signature)."""

    document: ProviderDocument
    state: State
    closed: bool
    sealed_ready: bool = False
    signers: list[SignerState] = Field(default_factory=list)
    modified_at: AwareDatetime | None = None  # when the provider last changed the document


class ProviderError(Exception):
    """A provider call that did not give an answer. The message names the call and what
    the provider said, never a credential."""


class ProviderUnavailable(ProviderError):
    """Try again later: the provider could not be reached, timed out, answered 5xx or
    429, or is not ready yet (a sealed file a few seconds after the last signature)."""


class ProviderRefused(ProviderError):
    """Will not change by trying again: wrong credentials, an unknown document, a
    request the provider rejects, or an action the document's state does not allow."""


class SigningProvider(Protocol):
    """What every signing provider adapter implements. Each call is a few HTTP requests
    with timeouts; each is safe to retry."""

    name: str

    async def create(self, request: SigningRequest) -> ProviderDocument:
        """Upload the PDF, name the signers, set the callback, start the signing. Called
        again with the same `request.key`, it finishes or returns that same document."""
        ...

    async def status(self, document: ProviderDocument) -> ProviderStatus: ...

    async def sealed(self, document: ProviderDocument) -> bytes:
        """The signed and sealed PDF; `ProviderUnavailable` until it is ready,
        `ProviderRefused` when the document is not signed."""
        ...

    async def evidence(self, document: ProviderDocument) -> bytes | None:
        """The provider's record of the signing events beside the sealed PDF, if it
        keeps one apart from it."""
        ...

    async def remind(self, document: ProviderDocument) -> bool:
        """Remind those who have not signed; False when the document is no longer out
        for signing (nobody to remind)."""
        ...

    async def cancel(self, document: ProviderDocument) -> ProviderStatus:
        """Withdraw the document; the status after it (signed, if the last signature
        came first)."""
        ...

    def callback_document_id(self, fields: Mapping[str, object]) -> str | None:
        """The document a callback request names (its form fields or JSON body), or
        None. Only a hint: fetch `status` for the truth."""
        ...
