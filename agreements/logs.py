"""The service's log: one JSON object a line for a log collector, or plain lines for a
person at a terminal (AGREEMENTS_LOG_FORMAT; unset: plain when standard error is a
terminal, JSON otherwise).

A JSON line has `time` (UTC), `level`, `logger`, `message` and, when the line comes from a
workflow or an activity, `workflow_type`, `workflow_id`, `activity` and `agreement` (taken
from what Temporal's loggers attach). Workflows log through `workflow.logger`, which says
nothing while a history is replayed, so a line is never repeated by a replay.

What is logged never holds a secret: every line passes `Redact`, which masks personal API
tokens, webhook secrets, bearer credentials, signing-link tokens and passwords in
connection strings, and shortens email addresses to their first letter and domain (the
agreement's id is what a line needs to be followed up; the person can be found from it).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter
from temporalio import activity, workflow

from models.config import Settings

LEVEL = logging.INFO
QUIET = ("httpx", "httpcore", "uvicorn.access", "aiosmtpd", "mail.log", "alembic")

SECRETS = [
    (re.compile(r"\bavt_[A-Za-z0-9_-]+"), "avt_…"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_…"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 …"),
    (re.compile(r"(/(?:sign|callbacks/signing)/)[^\s\"'?#]+"), r"\1…"),
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@"), r"\1…@"),
    (re.compile(r"\b([A-Za-z0-9])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b"), r"\1…@\2"),
]


def redact(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


class Redact(logging.Filter):
    """Masks secrets and shortens email addresses in the line's message (arguments
    included) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class Context(logging.Filter):
    """The workflow, activity and agreement a line comes from, as plain fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        info: dict[str, Any] = dict(
            getattr(record, "temporal_workflow", None)
            or getattr(record, "temporal_activity", None)
            or {}
        )
        if info:
            record.workflow_type = info.get("workflow_type")
            record.workflow_id = info.get("workflow_id")
            if "activity_type" in info:
                record.activity = info["activity_type"]
            record.agreement = agreement_of(str(info.get("workflow_id") or ""))
        return True


def agreement_of(workflow_id: str) -> str | None:
    """The agreement a workflow id names (agreement-<id>, agreement-<id>-round-<n>)."""
    if not workflow_id.startswith("agreement-"):
        return None
    return re.sub(r"-round-\d+$", "", workflow_id.removeprefix("agreement-"))


class Json(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
            json_ensure_ascii=False,
            reserved_attrs=[*_RESERVED, "temporal_workflow", "temporal_activity"],
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        import datetime as dt

        moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_RESERVED = [
    "args",
    "created",
    "exc_info",
    "exc_text",
    "filename",
    "funcName",
    "levelno",
    "lineno",
    "module",
    "msecs",
    "msg",
    "pathname",
    "process",
    "processName",
    "relativeCreated",
    "stack_info",
    "thread",
    "threadName",
    "taskName",
]


def configure(config: Settings, stream: TextIO | None = None) -> str:
    """Send the service's log to `stream` (standard error) in the configured form; which
    form it chose. Called once by each process that runs the service."""
    stream = stream or sys.stderr
    form = config.log_format or ("text" if stream.isatty() else "json")
    handler = logging.StreamHandler(stream)
    handler.addFilter(Context())
    handler.addFilter(Redact())
    if form == "json":
        handler.setFormatter(Json())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # In JSON the workflow and activity are fields of their own, not appended to the message
    activity.logger.activity_info_on_message = form != "json"
    workflow.logger.workflow_info_on_message = form != "json"
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "agreements", False)]:
        root.removeHandler(old)
    handler.agreements = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(LEVEL)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return form
