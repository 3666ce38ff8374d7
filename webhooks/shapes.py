"""What the API takes and answers about webhooks: an endpoint never with its secret (that
is answered once, when it is made), a delivery with its body and every attempt's answer."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.registry import types_of


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    types: list[str] = Field(max_length=40)
    description: str = Field(default="", max_length=1000)
    organisation: str | None = Field(default=None, max_length=64)


class Enabled(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


def endpoint_json(row: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": row.id,
        "organisation": row.organisation_id,
        "url": row.url,
        "description": row.description,
        "types": types_of(row),
        "enabled": row.enabled,
        "disabled_why": row.disabled_why,
        "disabled_at": _when(row.disabled_at),
        "created_at": _when(row.created_at),
        "created_by": row.created_by,
    }


def delivery_json(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint": row.endpoint_id,
        "agreement": row.agreement_id,
        "type": row.type,
        "status": row.status,
        "body": json.loads(row.body),
        "attempts": [
            {
                "number": a.number,
                "at": _when(a.at),
                "status_code": a.status_code,
                "answer": a.answer,
                "error": a.error,
                "milliseconds": a.milliseconds,
            }
            for a in attempts
        ],
        "resends": row.resends,
        "created_at": _when(row.created_at),
        "next_attempt_at": _when(row.next_attempt_at),
        "delivered_at": _when(row.delivered_at),
    }


def _when(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None
