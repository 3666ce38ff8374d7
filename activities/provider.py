"""A signature round signed through a signing provider with Swedish BankID (signing/): the
activities the round workflow calls. The provider is the only party that talks to the
signers; the round asks it for the truth whenever a callback says something changed, and
now and then without one.

A provider that cannot be reached (ProviderUnavailable) is an error Temporal retries; one
that refuses (ProviderRefused) is not retried: the round then fails and the coordinator is
told. The document sent to be signed is the agreement as the signing record shows it (the
terms, readable and exact, and every document), without signatures; the provider's signed
and sealed file and its evidence are kept in the document store when the round completes.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import ProviderActivities
from activities.notify import stored_terms
from documents.store import store_for
from models.config import Settings
from models.db import ready
from models.lifecycle import ProviderCollect, ProviderEvidence, ProviderStart
from sealing.record import RecordDocument, RecordInputs, build_record
from signing import (
    ProviderDocument,
    ProviderError,
    ProviderRefused,
    ProviderSigner,
    ProviderStatus,
    SigningRequest,
    provider_for,
)
from signing.callbacks import callback_path

PROVIDER = "scrive"  # the one adapter there is; another provider is another name here


def _failure(error: ProviderError) -> ApplicationError:
    """A refusal is final; anything else is retried by Temporal."""
    return ApplicationError(
        str(error), type=type(error).__name__, non_retryable=isinstance(error, ProviderRefused)
    )


class ProviderRounds(ProviderActivities):
    def __init__(self, config: Settings) -> None:
        self.config = config
        self.db = ready(config.db_url())

    def _document_to_sign(self, request: ProviderStart) -> bytes:
        round_ = request.round
        terms = stored_terms(self.db, round_.terms_sha256)
        store = store_for(self.config.data_dir)
        documents = [RecordDocument(d.name, d.sha256, store.get(d.sha256)) for d in terms.documents]
        return build_record(
            RecordInputs(
                agreement=terms,
                terms_sha256=round_.terms_sha256,
                documents=documents,
                signers=[],
                events=[],
                round_number=round_.number,
                made_at=round_.started_at,
            )
        )

    @activity.defn(name="provider_start")
    async def provider_start(self, request: ProviderStart) -> ProviderDocument:
        round_ = request.round
        pdf = await asyncio.to_thread(self._document_to_sign, request)
        terms = await asyncio.to_thread(stored_terms, self.db, round_.terms_sha256)
        days = max(1, (round_.expires_at - round_.started_at).days)
        signing = SigningRequest(
            key=f"{request.agreement_id}-round-{round_.number}",
            title=terms.title,
            pdf=pdf,
            signers=[
                ProviderSigner(name=s.name, email=s.email, party=s.party, party_name=s.party_name)
                for s in round_.signers
            ],
            callback_url=self.config.public_base_url.rstrip("/")
            + callback_path(
                self.config.signing_secret.get_secret_value(), request.agreement_id, round_.number
            ),
            expires_days=min(days, 365),
            language="en" if terms.language.value == "en" else "sv",
            sequential=round_.mode == "sequential",
        )
        try:
            return await provider_for(PROVIDER, self.config).create(signing)
        except ProviderError as error:
            raise _failure(error) from None

    @activity.defn(name="provider_status")
    async def provider_status(self, document: ProviderDocument) -> ProviderStatus:
        try:
            return await provider_for(document.provider, self.config).status(document)
        except ProviderError as error:
            raise _failure(error) from None

    @activity.defn(name="provider_remind")
    async def provider_remind(self, document: ProviderDocument) -> bool:
        try:
            return await provider_for(document.provider, self.config).remind(document)
        except ProviderError as error:
            raise _failure(error) from None

    @activity.defn(name="provider_cancel")
    async def provider_cancel(self, document: ProviderDocument) -> ProviderStatus:
        try:
            return await provider_for(document.provider, self.config).cancel(document)
        except ProviderError as error:
            raise _failure(error) from None

    @activity.defn(name="provider_collect")
    async def provider_collect(self, request: ProviderCollect) -> ProviderEvidence:
        """The provider's signed and sealed file and its evidence, kept in the document
        store (the sealed file is the one the provider's own seal covers)."""
        provider = provider_for(request.document.provider, self.config)
        try:
            sealed = await provider.sealed(request.document)
            evidence = await provider.evidence(request.document)
        except ProviderError as error:
            raise _failure(error) from None
        store = store_for(self.config.data_dir)
        sealed_sha256 = await asyncio.to_thread(store.put, sealed)
        evidence_sha256 = await asyncio.to_thread(store.put, evidence) if evidence else None
        return ProviderEvidence(
            provider=request.document.provider,
            document_id=request.document.document_id,
            sealed_sha256=sealed_sha256,
            evidence_sha256=evidence_sha256,
            collected_at=dt.datetime.now(dt.UTC),
        )
