"""The sealed signing record of a completed round (sealing/): made once, kept in the
document store by its hash, and named in the agreement's event log, from where the
agreement's page and the signers' links offer it; the round's completion email carries it.

A retried activity answers with the record already made (the event log names it under
`<agreement>:record:<round>`, written once); two attempts at once may both seal one, and
the first written is the record. Its time is the round's completion, not the making. The
IP addresses the
round recorded are left out: the record goes to every party, and a signer's IP is the
coordinator's to see until the weeding (issue 14's finding about the completion email).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Literal

from sqlmodel import Session, select
from temporalio import activity

from activities.contracts import RecordActivities
from activities.notify import stored_terms
from activities.store import write_event
from documents.store import store_for
from models.config import Settings
from models.db import ready
from models.effects import EventIn
from models.lifecycle import Attachment, RecordRequest, RoundInfo, SignatureEvent
from models.records import EventRecord
from sealing.record import RecordDocument, RecordEvent, RecordInputs, RecordSigner, build_record
from sealing.seal import seal, seal_key_for

RECORD_EVENT = "record.sealed"
# A round's signing method as the record names it
METHODS: dict[str, Literal["link", "paper", "provider"]] = {
    "link": "link",
    "paper": "paper",
    "bankid": "provider",
}


def record_name(agreement_id: str, number: int) -> str:
    return f"{agreement_id}-underskrifter-{number}.pdf"


def _signers(round_: RoundInfo) -> list[RecordSigner]:
    """Each signature as the round recorded it: by link or on paper (who entered it)."""
    signed = {e.signer: e for e in round_.events if e.what == "signed" and e.signer}
    found = []
    for s in round_.signers:
        event = signed.get(s.email)
        at = (event.at if event else None) or s.signed_at
        if at is None:
            continue
        method = (event.method if event else None) or round_.method
        found.append(
            RecordSigner(
                name=s.name,
                party_name=s.party_name,
                email=s.email,
                method=METHODS.get(method or "", "link"),
                signed_at=at,
                provider="Scrive (BankID)" if method == "bankid" else None,
                recorded_by=event.recorded_by if event else None,
                evidence=_provider(round_) if method == "bankid" else _scan(event),
            )
        )
    return found


def _scan(event: SignatureEvent | None) -> str | None:
    """A paper signature's evidence: the scanned signed copy, by its hash."""
    if event is None or not event.scan_sha256:
        return None
    return f"SHA-256 {event.scan_sha256}"


def _provider(round_: RoundInfo) -> str | None:
    """A signature through the provider: its document there, and its sealed file's hash."""
    given = round_.provider
    if given is None:
        return f"document {round_.document.document_id}" if round_.document else None
    return f"document {given.document_id}; sealed file SHA-256 {given.sealed_sha256}"


def _completed_at(round_: RoundInfo) -> dt.datetime:
    moments = [e.at for e in round_.events] or [round_.started_at]
    return max(moments)


class Recorder(RecordActivities):
    def __init__(self, config: Settings) -> None:
        self.config = config
        self.db = ready(config.db_url())

    @activity.defn(name="seal_record")
    async def seal_record(self, request: RecordRequest) -> Attachment:
        return await asyncio.to_thread(self.make, request)

    def made(self, agreement_id: str, number: int) -> Attachment | None:
        """The record already made for this round, as the event log names it."""
        with Session(self.db) as session:
            row = session.exec(
                select(EventRecord).where(
                    EventRecord.event_key == f"{agreement_id}:record:{number}"
                )
            ).first()
        if row is None:
            return None
        data = json.loads(row.data_json or "{}")
        return Attachment(
            sha256=str(data["sha256"]), filename=str(data["filename"]), size=int(data["size"])
        )

    def make(self, request: RecordRequest) -> Attachment:
        round_ = request.round
        agreement_id = request.agreement_id
        found = self.made(agreement_id, round_.number)
        store = store_for(self.config.data_dir)
        if found is not None and store.has(found.sha256):
            return found
        terms = stored_terms(self.db, round_.terms_sha256)
        documents = [RecordDocument(d.name, d.sha256, store.get(d.sha256)) for d in terms.documents]
        made_at = _completed_at(round_)
        events = [RecordEvent(e.at, e.what, e.name or e.recorded_by) for e in round_.events]
        inputs = RecordInputs(
            agreement=terms,
            terms_sha256=round_.terms_sha256,
            documents=documents,
            signers=_signers(round_),
            events=events,
            round_number=round_.number,
            made_at=made_at,
        )
        sealed = seal(
            build_record(inputs),
            seal_key_for(self.config),
            reason="Avtalstjänstens verifikation av underskrifterna",
            location="Sverige",
        )
        sha256 = store.put(sealed)
        attachment = Attachment(
            sha256=sha256, filename=record_name(agreement_id, round_.number), size=len(sealed)
        )
        write_event(
            self.db,
            EventIn(
                event_key=f"{agreement_id}:record:{round_.number}",
                agreement_id=agreement_id,
                at=dt.datetime.now(dt.UTC),
                kind=RECORD_EVENT,
                summary=f"signing record of round {round_.number} sealed",
                data={
                    "round": round_.number,
                    "sha256": sha256,
                    "filename": attachment.filename,
                    "size": len(sealed),
                },
            ),
        )
        # Two attempts at once: the event log keeps the first; answer with what it says.
        return self.made(agreement_id, round_.number) or attachment
