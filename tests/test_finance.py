"""The finance export (agreements/finance.py): every instalment of a period with its status,
payer and payee by name and organisation number, amount and invoice number; as CSV the way
Swedish Excel opens it and as JSON; from the pages, the API and the command line, against
the real service and its read model."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agreements.cli import app
from tests.conftest import TOKEN
from tests.test_web import AUTH, take_on_and_invoice


def test_instalments_of_a_period_for_the_finance_system(
    web: tuple[TestClient, Path], service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = web
    rows = take_on_and_invoice(client, "lund-radrum", "=HYPERLINK(1)")
    instalments = [m for m in rows if m["kind"] == "invoice"]
    first = min(m["effective_date"] for m in instalments)
    last = max(m["effective_date"] for m in instalments)
    period = {"from": first, "to": last}
    for _ in range(100):  # the invoice mark reaches the read model a moment later
        found = client.get("/api/finance/instalments", params=period, headers=AUTH).json()
        if any(r["status"] == "invoiced" for r in found):
            break
        time.sleep(0.05)
    assert len(found) == len(instalments)
    invoiced = next(r for r in found if r["status"] == "invoiced")
    assert invoiced["invoice_number"] == "=HYPERLINK(1)" and invoiced["agreement"] == "lund-radrum"
    assert invoiced["payer"] and invoiced["payee"] and invoiced["amount_sek"] > 0
    # Before the service took it on: passed (handled outside it); after: as recorded.
    assert {r["status"] for r in found} <= {"passed", "to_invoice", "invoiced", "paid", "overdue"}
    # The example's parties have no organisation numbers: the columns are there, empty.
    assert all(r["payer_org_number"] == "" and "payee_org_number" in r for r in found)
    # CSV as Swedish Excel opens it: BOM, semicolons, Swedish headings, statuses in words,
    # and an invoice number that looks like a formula written as text.
    answer = client.get(
        "/api/finance/instalments", params={**period, "format": "csv"}, headers=AUTH
    )
    assert answer.status_code == 200 and answer.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig")), delimiter=";"))
    assert table[0][:3] == ["Avtal", "Diarienummer", "Titel"]
    assert len(table) == len(found) + 1
    assert any(row[12] == "fakturerad" and row[13] == "'=HYPERLINK(1)" for row in table[1:])
    # The pages: the same file, for the person's agreements; a bad period is said in words.
    client.post("/login", data={"token": TOKEN})
    page = client.get("/finance.csv", params=period)
    assert page.status_code == 200 and page.content == answer.content
    wrong = client.get("/finance.csv", params={"from": "2027-13-01", "to": last})
    assert wrong.status_code == 422 and "två datum" in wrong.text
    backwards = client.get(
        "/api/finance/instalments", params={"from": last, "to": first}, headers=AUTH
    )
    assert backwards.status_code == 422 and backwards.json()["code"] == "bad-period"
    other = client.get(
        "/api/finance/instalments", params={**period, "organisation": "ingen"}, headers=AUTH
    )
    assert other.json() == []
    assert "/finance.csv" in client.get("/upcoming").text
    # The command line reads the same read model.
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AGREEMENTS_API_TOKEN", TOKEN)
    from models.config import settings

    settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["finance", "--from", first, "--to", last, "--json"])
    finally:
        settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == found
