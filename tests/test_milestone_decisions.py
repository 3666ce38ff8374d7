"""A milestone's status, set by a person, end to end on the running service (real dev
server, worker, mail sink): an instalment invoiced through the API with its number, paid
through the command line, a retry with the same key applied once, the workflow's refusals
(paid before invoiced, a date in the future) told as they are, and the agreement page
showing each row's status with its number and offering the next step as a form."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import models.config as config
from agreements import ops
from agreements.cli import app as cli_app
from agreements.web.app import milestone_actions
from i18n.words import ACTORS, actor
from i18n.words import word as word_in
from models.agreement import DateRule
from models.plan import MilestoneKind, MilestoneState, MilestoneStatus
from models.schedule.dates import STOCKHOLM, add_months
from tests.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TODAY = dt.datetime.now(STOCKHOLM).date()  # the day the workflows date decisions by
# Yearly periods from 345 days ago: the first instalment came before the service took the
# agreement on, the second is due in about 20 days (the page offers "invoiced" up to 60
# days ahead), the third in about 385.
START = TODAY - dt.timedelta(days=345)
BEFORE = "invoice:kommun:forening:1:1"
SOON = "invoice:kommun:forening:2:1"
LATER = "invoice:kommun:forening:3:1"


def terms() -> str:
    """Signed on paper before it came to the service (so it starts signed); one
    instalment a period (see START), and a meeting a week ago."""
    end = add_months(START, 36) - dt.timedelta(days=1)
    return f"""
id = "stod"
title = "IOP Stöd"
[coordinator]
name = "Malin Samordnare"
email = "malin@kommun.example.se"
[parties.kommun]
name = "Socialförvaltningen"
kind = "public"
contacts = [
  {{ name = "Maria Chef", email = "maria@kommun.example.se", roles = ["contact", "signatory"] }},
]
[parties.forening]
name = "Föreningen"
kind = "nonprofit"
contacts = [
  {{ name = "Saul", email = "saul@forening.example.se", roles = ["contact", "signatory"] }},
]
[term]
start = {START.isoformat()}
end = {end.isoformat()}
[[contributions]]
payer = "kommun"
payee = "forening"
amount = 240000
[meetings]
convener = "kommun"
dates = [{(TODAY - dt.timedelta(days=7)).isoformat()}]
[signing]
method = "paper"
signed = {(START - dt.timedelta(days=20)).isoformat()}
[prerequisites]
no-market = true
not-an-order = true
idea-driven = true
all-contribute = true
budget-plan = true
follow-up-plan = true
trust = true
"""


@pytest.fixture
def cli(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The command line against the same service as the `web` fixture."""
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    config.settings.cache_clear()
    yield CliRunner()
    config.settings.cache_clear()


def count(client: TestClient, kind: str, wanted: int) -> int:
    """How many events of `kind` the agreement's log has once it has `wanted` (the worker
    writes it a moment after the decision), after a moment more so a second would show."""
    settings = client.app.state.config  # type: ignore[attr-defined]
    for _ in range(200):
        if sum(e.kind == kind for e in ops.events(settings, "stod")) >= wanted:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    return sum(e.kind == kind for e in ops.events(settings, "stod"))


def page(client: TestClient, query: str = "") -> str:
    """The agreement page, once the worker has stored the terms it shows."""
    for _ in range(200):
        answer = client.get(f"/a/stod{query}")
        if answer.status_code != 503:
            break
        time.sleep(0.05)
    assert answer.status_code == 200, answer.text
    text: str = answer.text
    return text


def row(text: str, milestone: str) -> str:
    """One timeline row of the page, by its milestone id (its status cell carries it)."""
    found = [r for r in text.split("<tr") if f'id="m-{milestone}"' in r]
    assert len(found) == 1, f"no row {milestone}"
    return found[0].split("</tr>")[0]


def form(row_html: str, status: str) -> dict[str, str]:
    """The fields of the row's form that sets `status` (hidden ones as the page filled them)."""
    for each in re.findall(r"<form\b.*?</form>", row_html, flags=re.S):
        fields = dict(re.findall(r'<input[^>]*name="(\w+)"[^>]*value="([^"]*)"', each))
        if fields.get("status") == status:
            assert 'action="/a/stod/milestone"' in each, each
            return {k: html.unescape(v) for k, v in fields.items()}
    raise AssertionError(f"no form for {status} in {row_html}")


def test_every_status_reads_in_both_languages() -> None:
    same = [s for s in MilestoneStatus if word_in("sv", s) == word_in("en", s)]
    assert not same, same  # a Swedish word and an English one for every status
    assert all(actor("sv", by) != actor("en", by) for by in ACTORS)


def test_which_rows_offer_which_step() -> None:
    today = dt.date(2026, 11, 25)

    def m(kind: MilestoneKind, status: MilestoneStatus, days: int = 0) -> MilestoneState:
        day = today + dt.timedelta(days=days)
        return MilestoneState(
            id="x",
            kind=kind,
            date=day,
            effective_date=day,
            rule=DateRule.none,
            title="x",
            status=status,
        )

    invoice, meeting = MilestoneKind.invoice, MilestoneKind.meeting
    assert milestone_actions(m(invoice, MilestoneStatus.to_invoice, -300), "active", today) == [
        "invoiced"
    ]
    assert milestone_actions(m(invoice, MilestoneStatus.to_invoice, 200), "active", today) == []
    assert milestone_actions(m(invoice, MilestoneStatus.to_invoice), "signing", today) == []
    assert milestone_actions(m(invoice, MilestoneStatus.invoiced, 9), "ended", today) == ["paid"]
    assert milestone_actions(m(invoice, MilestoneStatus.paid), "active", today) == []
    assert milestone_actions(m(meeting, MilestoneStatus.passed, -3), "active", today) == ["held"]
    assert milestone_actions(m(meeting, MilestoneStatus.planned, 3), "active", today) == []
    report = m(MilestoneKind.report_due, MilestoneStatus.received)
    assert milestone_actions(report, "active", today) == ["approved", "returned"]


def test_an_instalment_is_invoiced_and_paid(web: tuple[TestClient, Path], cli: CliRunner) -> None:
    client, _ = web
    created = client.post("/api/agreements", content=terms(), headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["state"] in ("signed", "active")
    url = "/api/agreements/stod/milestones"
    invoiced = {
        "status": "invoiced",
        "number": "F-2026-17",
        "on": (TODAY - dt.timedelta(days=2)).isoformat(),
        "by": "Eva Ekonom",
    }
    # The API: colons in the id as they are; the same key twice applies once.
    key = {**AUTH, "Idempotency-Key": "inv-1"}
    first = client.post(f"{url}/{LATER}", json=invoiced, headers=key)
    assert first.status_code == 200, first.text
    again = client.post(f"{url}/{LATER}", json=invoiced, headers=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert count(client, "milestone.invoiced", 1) == 1
    plain = client.post(f"{url}/{LATER}", json=invoiced, headers=AUTH)
    assert plain.status_code == 409 and "redan registrerad som fakturerad" in plain.json()["detail"]
    # Refusals carry the workflow's reason: paid before invoiced (the id percent-encoded),
    # a date in the future, a status a person does not set.
    encoded = BEFORE.replace(":", "%3A")
    early = client.post(f"{url}/{encoded}", json={"status": "paid"}, headers=AUTH)
    assert early.status_code == 409, early.text
    assert early.json()["detail"].endswith(" har inte registrerats som fakturerad")
    assert BEFORE not in early.json()["detail"]  # the milestone by its title
    tomorrow = (TODAY + dt.timedelta(days=2)).isoformat()
    future = {"status": "invoiced", "number": "F-9", "on": tomorrow}
    ahead = client.post(f"{url}/{BEFORE}", json=future, headers=AUTH)
    assert ahead.status_code == 409 and "ligger i framtiden" in ahead.json()["detail"]
    nobody = client.post(f"{url}/{BEFORE}", json={"status": "overdue"}, headers=AUTH)
    assert nobody.status_code == 409 and "kan inte markeras som försenad" in nobody.json()["detail"]
    unknown = client.post(f"{url}/invoice:nope", json={"status": "paid"}, headers=AUTH)
    assert (
        unknown.status_code == 409
        and "avtalet har ingen händelse invoice:nope" in unknown.json()["detail"]
    )

    # The page: the status, when, by whom and the number.
    client.post("/login", data={"token": TOKEN})
    shown = row(page(client), LATER)
    # Who recorded it is who the server knows asked (the local key), not the body's `by`.
    assert "fakturerad" in shown and "F-2026-17" in shown and "med den lokala nyckeln" in shown
    assert "Eva Ekonom" not in shown
    assert str(TODAY - dt.timedelta(days=2)) in shown
    assert form(shown, "paid")["milestone"] == LATER  # the next step is offered
    # The first instalment came before the service took the agreement on: not outstanding.
    assert "passerad" in row(page(client), BEFORE)
    assert "<form" not in row(page(client), BEFORE)

    # The command line: paid, once for one key; a wrong status is told, not tried.
    args = ["milestone", "stod", LATER, "paid", "--idempotency-key", "pay-1"]
    for _ in range(2):
        paid = cli.invoke(cli_app, args)
        assert paid.exit_code == 0, paid.output
        assert f"{LATER}: betald" in paid.output
    assert count(client, "milestone.paid", 1) == 1
    wrong = cli.invoke(cli_app, ["milestone", "stod", LATER, "sent"])
    assert wrong.exit_code == 1 and "Traceback" not in wrong.output
    assert "'sent' är inte en av invoiced, paid, held, approved, returned" in wrong.output
    refused = cli.invoke(cli_app, ["milestone", "stod", BEFORE, "paid"])
    assert refused.exit_code == 1 and "har inte registrerats som fakturerad" in refused.output
    shown_cli = cli.invoke(cli_app, ["show", "stod"])
    assert shown_cli.exit_code == 0 and "att fakturera" in shown_cli.output  # the one due soon

    text = page(client)
    shown = row(text, LATER)
    assert "betald" in shown and "F-2026-17" in shown and "<form" not in shown
    english = row(page(client, "?lang=en"), LATER)
    assert "paid" in english and "invoice no." in english and "betald" not in english
    page(client, "?lang=sv")

    # The page's forms: invoiced with a number, then paid; the meeting held.
    fields = form(row(text, SOON), "invoiced")
    posted = client.post(
        "/a/stod/milestone", data={**fields, "number": "F-1"}, follow_redirects=False
    )
    assert posted.status_code == 303, posted.text
    text = page(client)
    assert "fakturerad" in row(text, SOON) and "F-1" in row(text, SOON)
    for milestone, status, word in ((SOON, "paid", "betald"), ("meeting:1", "held", "hållet")):
        fields = form(row(text, milestone), status)
        posted = client.post("/a/stod/milestone", data=fields, follow_redirects=False)
        assert posted.status_code == 303, posted.text
        text = page(client)
        assert re.search(rf'class="status status-{status}">{word}<', row(text, milestone))
    assert "med den lokala nyckeln" in row(text, "meeting:1")  # who the server knows it was
    # A refusal on the page is the workflow's reason; a form without its number says so.
    base = {"csrf": fields["csrf"], "idempotency_key": "k-2"}
    early_page = client.post(
        "/a/stod/milestone", data={**base, "milestone": BEFORE, "status": "paid"}
    )
    assert early_page.status_code == 409
    assert "har inte registrerats som fakturerad" in early_page.text
    bare = client.post(
        "/a/stod/milestone", data={**base, "milestone": BEFORE, "status": "invoiced"}
    )
    assert bare.status_code == 400 and "Skriv fakturans nummer" in bare.text

    # The read model: the workflow's summary step wrote the statuses to the milestone table,
    # which the API's lists read (written just after the decisions: wait for it).
    def table() -> dict[str, dict[str, object]]:
        answer = client.get(url, headers=AUTH)
        assert answer.status_code == 200, answer.text
        return {m["id"]: m for m in answer.json()}

    deadline = time.monotonic() + 20
    while table()["meeting:1"]["status"] != "held" and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = table()
    assert (rows[LATER]["status"], rows[LATER]["number"]) == ("paid", "F-2026-17")
    assert rows[SOON]["status"] == "paid" and rows["meeting:1"]["status"] == "held"
    assert rows[BEFORE]["status"] == "passed"
    finance = client.get("/api/upcoming?days=400&role=finance", headers=AUTH).json()
    listed = {m["id"]: m["status"] for m in finance}
    # Coming ones with their status; past ones only while outstanding (paid, or from
    # before the service: not outstanding).
    assert listed.get(SOON) == listed.get(LATER) == "paid"
    assert BEFORE not in listed, listed
    assert client.get("/api/upcoming?role=nobody", headers=AUTH).status_code == 422
    assert client.get("/api/agreements/nope/milestones", headers=AUTH).status_code == 404
