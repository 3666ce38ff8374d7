"""A retried request applies once, on the running service (real dev server, worker, mail
sink): the same `Idempotency-Key` on the same decision answers as the first time and
records one decision; another key is another decision; a page's form applies once however
often it is posted. And the two decisions that had no way in before, a draft's new terms and
the remaining parties' answer to a withdrawal, work end to end through the API and pages."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from agreements import ops
from tests.conftest import TOKEN
from tests.reliability.harness import idle, wait_until
from workflows.agreement import workflow_id

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TODAY = dt.date.today()


def terms(agreement_id: str = "samverkan", title: str = "IOP Samverkan") -> str:
    """Three parties, running from last year to next, signed before it came to the service
    (so it starts signed, without a round); yearly reports; a withdrawal rule under which
    the remaining parties decide."""
    return f"""
id = "{agreement_id}"
title = "{title}"
[coordinator]
name = "Malin Samordnare"
email = "malin@kommun.example.se"
[parties.kommun]
name = "Socialförvaltningen"
kind = "public"
org_number = "212000-1157"
contacts = [
  {{ name = "Maria Chef", email = "maria@kommun.example.se", roles = ["contact", "signatory"] }},
]
[parties.forening]
name = "Föreningen"
kind = "nonprofit"
org_number = "802002-8638"
contacts = [
  {{ name = "Saul", email = "saul@forening.example.se", roles = ["contact", "signatory"] }},
]
[parties.stiftelse]
name = "Stiftelsen"
kind = "nonprofit"
contacts = [
  {{ name = "Stina", email = "stina@stiftelsen.example.se", roles = ["contact", "signatory"] }},
]
[term]
start = {TODAY.year - 1}-01-01
end = {TODAY.year + 1}-12-31
[[contributions]]
payer = "kommun"
payee = "forening"
amount = 240000
[[reports]]
key = "arsrapport"
name = "Årsrapport"
party = "forening"
[withdrawal]
notice_months = 1
remaining_decide = true
[signing]
method = "paper"
signed = {TODAY.year - 2}-12-15
[prerequisites]
no-market = true
not-an-order = true
idea-driven = true
all-contribute = true
budget-plan = true
follow-up-plan = true
trust = true
"""


def events(client: TestClient, agreement_id: str, kind: str, count: int) -> list[Any]:
    """The agreement's event log once `count` events of `kind` are in it (the worker writes
    it a moment after the decision) and the agreement has nothing more in flight, so a
    second one would be there."""
    config = client.app.state.config  # type: ignore[attr-defined]

    def written() -> bool:
        found = [e for e in ops.events(config, agreement_id) if e.kind == kind]
        return len(found) >= count and idle(config, [workflow_id(agreement_id)])

    wait_until(written, 30, f"{count} {kind} events of {agreement_id}")
    return ops.events(config, agreement_id)


def kinds(rows: list[Any], kind: str) -> int:
    return sum(1 for e in rows if e.kind == kind)


def agreement_page(client: TestClient, agreement_id: str) -> str:
    """The coordinator's page, once the worker has stored the terms it shows (until then
    it says so: 503, try again)."""
    for _ in range(200):
        page = client.get(f"/a/{agreement_id}")
        if page.status_code != 503:
            break
        assert "försök igen" in page.text
        time.sleep(0.05)
    assert page.status_code == 200, page.text
    text: str = page.text
    return text


def create(client: TestClient, text: str) -> dict[str, Any]:
    created = client.post("/api/agreements", content=text, headers=AUTH)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def test_the_same_key_applies_once_and_another_key_is_another_decision(
    web: tuple[TestClient, Path],
) -> None:
    client, _ = web
    assert create(client, terms())["state"] in ("signed", "active")
    url = "/api/agreements/samverkan"
    report = {"report": "arsrapport", "occurrence": 1}
    first = client.post(f"{url}/reports", json=report, headers={**AUTH, "Idempotency-Key": "r-1"})
    assert first.status_code == 200, first.text
    again = client.post(f"{url}/reports", json=report, headers={**AUTH, "Idempotency-Key": "r-1"})
    assert again.status_code == 200 and again.json() == first.json()
    rows = events(client, "samverkan", "report.submitted", 1)
    assert kinds(rows, "report.submitted") == 1 and kinds(rows, "refused") == 0
    # Another key is another decision: the workflow refuses it, as without a key.
    other = client.post(f"{url}/reports", json=report, headers={**AUTH, "Idempotency-Key": "r-2"})
    assert other.status_code == 409 and other.json()["code"] == "already-recorded"
    assert "redan registrerad" in other.json()["detail"]  # the API answers in Swedish first
    plain = client.post(f"{url}/reports", json=report, headers=AUTH)
    assert plain.status_code == 409 and plain.json()["code"] == "already-recorded"
    # The same key on another decision is not taken for the first one.
    renewal = client.post(
        f"{url}/renewals",
        json={"party": "kommun", "renew": False},
        headers={**AUTH, "Idempotency-Key": "r-1"},
    )
    assert renewal.status_code == 409 and "bestämd tid" in renewal.json()["detail"]
    bad = client.post(f"{url}/reports", json=report, headers={**AUTH, "Idempotency-Key": "x" * 201})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["detail"]
    rows = events(client, "samverkan", "refused", 3)
    assert kinds(rows, "report.submitted") == 1 and kinds(rows, "refused") == 3

    # A page's form: posted twice (a double-click, a reloaded POST), recorded once.
    client.post("/login", data={"token": TOKEN})
    page = agreement_page(client, "samverkan")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page)
    assert csrf is not None and key is not None
    # As the confirmation page posts it (`confirmed`), with the page's idempotency key.
    form = {
        "csrf": csrf.group(1),
        "idempotency_key": key.group(1),
        "report": "arsrapport",
        "confirmed": "yes",
    }
    for _ in range(2):
        posted = client.post(
            "/a/samverkan/report", data={**form, "period": "2"}, follow_redirects=False
        )
        assert posted.status_code == 303, posted.text
    # The same form with other values is another decision (a page kept open and reused).
    third = client.post("/a/samverkan/report", data={**form, "period": "3"}, follow_redirects=False)
    assert third.status_code == 303, third.text
    rows = events(client, "samverkan", "report.submitted", 3)
    assert kinds(rows, "report.submitted") == 3 and kinds(rows, "refused") == 3


def test_a_draft_gets_new_terms_and_a_withdrawal_gets_its_answer(
    web: tuple[TestClient, Path],
) -> None:
    client, _ = web
    # A draft to sign through the service: its term has not started (one that has would
    # have to say when it was signed).
    draft = (
        terms("utkast", "IOP Utkast")
        .replace(f"signed = {TODAY.year - 2}-12-15\n", "")
        .replace(f"start = {TODAY.year - 1}-01-01", f"start = {TODAY.year + 1}-01-01")
    )
    assert create(client, draft)["state"] == "draft"
    client.post("/login", data={"token": TOKEN})
    page = agreement_page(client, "utkast")
    assert 'action="/a/utkast/edit"' in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None
    url = "/api/agreements/utkast"
    edited = client.put(
        f"{url}/draft", content=draft.replace("IOP Utkast", "IOP Utkast 2"), headers=AUTH
    )
    assert edited.status_code == 200 and edited.json()["title"] == "IOP Utkast 2", edited.text
    wrong = client.put(f"{url}/draft", content=terms("annat"), headers=AUTH)
    assert wrong.status_code == 409 and wrong.json()["code"] == "other-agreement"
    assert "villkoren gäller avtal annat, inte utkast" in wrong.json()["detail"]
    broken = client.put(f"{url}/draft", content="id = 1", headers=AUTH)
    assert broken.status_code == 422 and "request:" in broken.json()["detail"]
    # The page: the draft's form replaces the terms; a refusal shows the workflow's reason.
    posted = client.post(
        "/a/utkast/edit",
        data={
            "csrf": csrf.group(1),
            "terms": draft.replace("IOP Utkast", "IOP Utkast 3"),
            "confirmed": "yes",
        },
        follow_redirects=False,
    )
    assert posted.status_code == 303, posted.text
    assert client.get(url, headers=AUTH).json()["title"] == "IOP Utkast 3"
    refused = client.post(
        "/a/utkast/edit",
        data={"csrf": csrf.group(1), "terms": terms("annat"), "confirmed": "yes"},
    )
    assert (
        refused.status_code == 409 and "villkoren gäller avtal annat, inte utkast" in refused.text
    )
    # The page shows the new terms (the workflow stores each edit's terms).
    assert "IOP Utkast 3" in agreement_page(client, "utkast")

    # A signed agreement: a party withdraws, the remaining parties go on without it.
    create(client, terms())
    url = "/api/agreements/samverkan"
    none_yet = client.post(f"{url}/withdrawal", json={"end_all": False}, headers=AUTH)
    assert none_yet.status_code == 409 and "inget utträde väntar" in none_yet.json()["detail"]
    # (Taken on under way, it may be going on as a new run just now: the service asks
    # again by itself while the agreement answers "closing".)
    notice = client.post(
        f"{url}/ending",
        json={"kind": "withdrawal", "party": "stiftelse", "reason": "Verksamheten upphör"},
        headers=AUTH,
    )
    assert notice.status_code == 200, notice.text
    assert 'action="/a/samverkan/withdrawal"' in agreement_page(client, "samverkan")
    key = {**AUTH, "Idempotency-Key": "w-1"}
    decided = client.post(f"{url}/withdrawal", json={"end_all": False}, headers=key)
    assert decided.status_code == 200, decided.text
    assert "stiftelse" in decided.json()["withdrawn"]
    again = client.post(f"{url}/withdrawal", json={"end_all": False}, headers=key)
    assert again.status_code == 200 and again.json() == decided.json()
    other = client.post(f"{url}/withdrawal", json={"end_all": True}, headers=AUTH)
    assert other.status_code == 409 and "inget utträde väntar" in other.json()["detail"]
    rows = events(client, "samverkan", "withdrawal.continues", 1)
    assert kinds(rows, "withdrawal.continues") == 1
    if "withdrawal_pending" in decided.json():  # the form only while one is waiting
        assert 'action="/a/samverkan/withdrawal"' not in agreement_page(client, "samverkan")
