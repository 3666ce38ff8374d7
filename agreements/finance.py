"""The finance export: every instalment of a period with where it stands, for an ERP
(Raindance, Unit4, Visma) or a spreadsheet. Each row: the agreement (id, diarienummer,
title), the period and the instalment's number in it, the date written and the effective
date (the day it is invoiced at the latest), payer and payee by name and organisation
number, the amount in whole kronor, the status (to invoice, invoiced, paid, overdue), the
invoice number and when the status was set.

As CSV the way Swedish Excel opens it (semicolons, UTF-8 with a byte-order mark, headers
in the reader's language) and as JSON with stable English keys for programs.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from agreements.ops import inert
from i18n import N_, text
from i18n.words import word_for
from models.agreement import Agreement
from models.plan import MilestoneState, MilestoneStatus
from models.records import AgreementRecord

# The columns: a stable key each (the JSON's) and its heading (the CSV's, translated).
COLUMNS = (
    ("agreement", N_("Agreement")),
    ("reference", N_("Reference number")),
    ("title", N_("Title")),
    ("period", N_("Agreement period")),
    ("instalment", N_("Instalment")),
    ("date", N_("Date written")),
    ("effective_date", N_("Invoice at the latest")),
    ("payer", N_("Payer")),
    ("payer_org_number", N_("Payer's organisation number")),
    ("payee", N_("Payee")),
    ("payee_org_number", N_("Payee's organisation number")),
    ("amount_sek", N_("Amount (SEK)")),
    ("status", N_("Status")),
    ("invoice_number", N_("Invoice number")),
    ("status_on", N_("Status set on")),
)


def rows(
    items: list[tuple[AgreementRecord, MilestoneState]], terms: dict[str, Agreement]
) -> list[dict[str, Any]]:
    """One dict per instalment, keyed as COLUMNS; parties by name and organisation number
    from the terms (by key when the terms are not at hand)."""
    found = []
    for a, m in items:
        parties = terms[a.id].parties if a.id in terms else {}

        def name(key: str | None, parties: Any = parties) -> tuple[str, str]:
            party = parties.get(key) if key else None
            return (party.name, party.org_number or "") if party else (key or "", "")

        payer, payer_org = name(m.payer)
        payee, payee_org = name(m.payee)
        found.append(
            {
                "agreement": a.id,
                "reference": a.reference or "",
                "title": a.title,
                "period": m.period,
                "instalment": m.occurrence,
                "date": m.date.isoformat(),
                "effective_date": m.effective_date.isoformat(),
                "payer": payer,
                "payer_org_number": payer_org,
                "payee": payee,
                "payee_org_number": payee_org,
                "amount_sek": m.amount,
                "status": m.status.value,
                "invoice_number": m.number or "",
                "status_on": m.status_on.isoformat() if m.status_on else "",
            }
        )
    return found


def as_csv(found: list[dict[str, Any]], language: str) -> bytes:
    """The rows as Swedish Excel opens them: semicolons, UTF-8 with a byte-order mark;
    headings and statuses in `language`; a cell that a spreadsheet would take for a
    formula is written as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([text(language, heading) for _, heading in COLUMNS])
    for row in found:
        cells = []
        for key, _ in COLUMNS:
            value = row[key]
            if key == "status":
                value = word_for(language, MilestoneStatus, value)
            cells.append("" if value is None else inert(str(value)))
        writer.writerow(cells)
    return buffer.getvalue().encode("utf-8-sig")


def as_json(found: list[dict[str, Any]]) -> bytes:
    """The rows as a JSON file (the API's list, indented): the CLI's `--json` and the
    export folder's .json files."""
    return (json.dumps(found, ensure_ascii=False, indent=2) + "\n").encode()
