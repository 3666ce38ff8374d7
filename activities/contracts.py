"""The activities as the workflows call them: typed references with no database, SMTP or
web library behind them, so the workflow modules import none.

`activities.store.Store`, `activities.notify.Notifier` and `activities.digest.Digester`
implement these classes; the worker registers the implementations under the same names.
A workflow calls `workflow.execute_activity_method(StoreActivities.save_terms, terms, ...)`:
the argument and the result are checked by mypy against one signature, the one the
implementation overrides.
"""

from __future__ import annotations

from temporalio import activity

from models.digest import DigestDay, DigestRequest, DigestResult, Recipients
from models.effects import EventIn, SaveTerms, Step, Summary
from models.lifecycle import (
    Attachment,
    EmailSpec,
    ProviderCollect,
    ProviderEvidence,
    ProviderStart,
    RecordRequest,
    SendResult,
)
from signing.provider import ProviderDocument, ProviderStatus


class StoreActivities:
    """The read model, every version of the terms, and the event log."""

    @activity.defn(name="save_terms")
    async def save_terms(self, terms: SaveTerms) -> None:
        raise NotImplementedError

    @activity.defn(name="record_event")
    async def record_event(self, event: EventIn) -> None:
        raise NotImplementedError

    @activity.defn(name="record_events")
    async def record_events(self, events: list[EventIn]) -> None:
        raise NotImplementedError

    @activity.defn(name="update_summary")
    async def update_summary(self, summary: Summary) -> None:
        raise NotImplementedError


class EmailActivities:
    """Sending email through the outbox."""

    @activity.defn(name="send_email")
    async def send_email(self, spec: EmailSpec) -> SendResult:
        raise NotImplementedError

    @activity.defn(name="send_emails")
    async def send_emails(self, specs: list[EmailSpec]) -> list[SendResult]:
        raise NotImplementedError


class StepActivities:
    """One step of an agreement: its writes, then its emails."""

    @activity.defn(name="carry_out_step")
    async def carry_out_step(self, step: Step) -> list[SendResult]:
        raise NotImplementedError


class DigestActivities:
    """The weekly digest: who gets one, and one person's digest sent once per week."""

    @activity.defn(name="digest_recipients")
    async def digest_recipients(self, data: DigestDay) -> Recipients:
        raise NotImplementedError

    @activity.defn(name="send_digest")
    async def send_digest(self, request: DigestRequest) -> DigestResult:
        raise NotImplementedError


class RecordActivities:
    """The sealed signing record of a completed round."""

    @activity.defn(name="seal_record")
    async def seal_record(self, request: RecordRequest) -> Attachment:
        raise NotImplementedError


class ProviderActivities:
    """A round signed through a signing provider (activities/provider.py)."""

    @activity.defn(name="provider_start")
    async def provider_start(self, request: ProviderStart) -> ProviderDocument:
        raise NotImplementedError

    @activity.defn(name="provider_status")
    async def provider_status(self, document: ProviderDocument) -> ProviderStatus:
        raise NotImplementedError

    @activity.defn(name="provider_remind")
    async def provider_remind(self, document: ProviderDocument) -> bool:
        raise NotImplementedError

    @activity.defn(name="provider_cancel")
    async def provider_cancel(self, document: ProviderDocument) -> ProviderStatus:
        raise NotImplementedError

    @activity.defn(name="provider_collect")
    async def provider_collect(self, request: ProviderCollect) -> ProviderEvidence:
        raise NotImplementedError
