"""Signing links, the API and the pages under attack, and decisions that race: every
refused attempt changes nothing and says nothing about whether an agreement exists; two
coordinators deciding at once apply one decision."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from agreements import ops
from emails.links import make_link, read_link
from emails.sink import read_mail
from models.config import Settings
from tests.conftest import TOKEN
from tests.mail import signing_requests
from tests.reliability.harness import all_sent_and_idle, report, wait_until
from tests.test_web import AUTH, PLANTERINGEN, links, start
from workflows.agreement import round_workflow_id, workflow_id

SECRET = Settings().signing_secret.get_secret_value()


def state(client: TestClient) -> dict[str, object]:
    answer = client.get("/api/agreements/planteringen", headers=AUTH)
    assert answer.status_code == 200
    data: dict[str, object] = answer.json()
    return data


def test_forged_expired_foreign_and_unauthenticated_requests_change_nothing(
    web: tuple[TestClient, Path],
) -> None:
    client, mail = web
    start(client)
    personal = links(mail, 6)
    sara_path = personal["sara.svensson@raddabarnen.example.se"]
    sara = read_link(SECRET, sara_path.removeprefix("/sign/"), dt.datetime.now(dt.UTC))
    before = state(client)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)

    def signed(agreement: str, signer: str, token: str, expires: dt.datetime) -> str:
        return "/sign/" + make_link(SECRET, agreement, sara.round, signer, token, expires)

    attempts = {
        "forged MAC": sara_path[:-4] + "AAAA",
        "not a link": "/sign/x.y",
        "expired": signed("planteringen", sara.signer, sara.token, past),
        "another agreement": signed("gamlegarden", sara.signer, sara.token, sara_expires(sara)),
        "another signer": signed(
            "planteringen", "maria.holm@helsingborg.example.se", sara.token, sara_expires(sara)
        ),
        "an earlier round": "/sign/"
        + make_link(
            SECRET, "planteringen", sara.round + 1, sara.signer, sara.token, sara_expires(sara)
        ),
    }
    refused = 0
    for what, path in attempts.items():
        for answer in (client.get(path), client.post(path, data={"action": "sign"})):
            assert answer.status_code == 403, (what, answer.status_code, answer.text[:200])
            refused += 1
    assert state(client) == before

    # Without the API token nothing is readable or changeable, and an agreement that exists
    # answers exactly as one that does not.
    unauthenticated = 0
    for agreement in ("planteringen", "finns-inte"):
        answers = [
            client.get(f"/api/agreements/{agreement}"),
            client.get(f"/api/agreements/{agreement}/outbox"),
            client.post(f"/api/agreements/{agreement}/signing/cancel", json={"reason": "x"}),
            client.post(
                f"/api/agreements/{agreement}/signing",
                headers={"Authorization": "Bearer fel-nyckel"},
            ),
            client.get(f"/a/{agreement}", follow_redirects=False),
            client.post(
                f"/a/{agreement}/sign-cancel",
                data={"csrf": "x", "reason": "x"},
                follow_redirects=False,
            ),
            client.get(f"/a/{agreement}/calendar.ics?key=00"),
        ]
        unauthenticated += len(answers)
        shape = [(a.status_code, a.text) for a in answers]
        if agreement == "planteringen":
            first = shape
        else:
            assert shape == first
    assert [s for s, _ in first] == [401, 401, 401, 401, 303, 303, 404]
    # A logged-in coordinator's form posted from another site carries no CSRF value.
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    cross_site = client.post("/a/planteringen/sign-cancel", data={"reason": "x"})
    assert cross_site.status_code in (403, 422)
    # A CSRF value the coordinator was never given (a forged or another session's) fails too.
    foreign_csrf = client.post(
        "/a/planteringen/sign-cancel", data={"csrf": "0" * 64, "reason": "x"}
    )
    assert foreign_csrf.status_code == 403
    assert state(client) == before
    report(
        "forged, expired, foreign links; no or wrong API token; cross-site posts",
        attempts=refused + unauthenticated + 2,
        refused=refused + unauthenticated + 2,
        changed=0,
    )


async def settled(address: str, client: TestClient, mail: Path) -> None:
    """Until the agreement's outbox (as the API shows it) says every email sent and neither
    the agreement's workflow nor its round's has anything in flight."""
    temporal = await ops.connect(Settings(temporal_address=address))
    outbox = client.get("/api/agreements/planteringen/outbox", headers=AUTH)
    assert outbox.status_code == 200, outbox.text
    keys = [row["key"] for row in outbox.json()]
    ids = [workflow_id("planteringen"), round_workflow_id("planteringen", 1)]
    url = Settings(data_dir=mail.parent).db_url()
    await all_sent_and_idle(temporal, url, mail, keys, ids, 60)


def sara_expires(link: object) -> dt.datetime:
    return dt.datetime.fromtimestamp(link.expires, dt.UTC)  # type: ignore[attr-defined]


def test_two_coordinators_deciding_at_once_apply_one_decision(
    web: tuple[TestClient, Path], service_env: dict[str, str]
) -> None:
    client, mail = web
    created = client.post("/api/agreements", content=PLANTERINGEN, headers=AUTH)
    assert created.status_code == 201, created.text
    keys = {"keys": ["no-market", "not-an-order", "budget-plan", "follow-up-plan"]}
    confirmed = client.post("/api/agreements/planteringen/prerequisites", json=keys, headers=AUTH)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["prerequisites_missing"] == [], confirmed.json()

    async def both(path: str, body: object | None = None) -> list[tuple[int, dict[str, Any]]]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as a:
            answers = await asyncio.gather(
                *(a.post(path, json=body, headers=AUTH) for _ in range(2))
            )
        return sorted(((r.status_code, r.json()) for r in answers), key=lambda a: a[0])

    # What each coordinator is told: one gets the agreement in its first round, the other
    # a refusal that says why, in words and as a code.
    (ok, applied), (no, refusal) = asyncio.run(both("/api/agreements/planteringen/signing"))
    assert (ok, no) == (200, 409), (applied, refusal)
    assert applied["state"] == "signing" and applied["round"]["number"] == 1, applied
    assert refusal == {
        "detail": "det går bara medan avtalet är ett utkast; nu är det under signering",
        "code": "not-draft",
        "params": {"state": "signing"},
    }
    after = state(client)
    assert after["state"] == "signing" and after["round"]["number"] == 1  # type: ignore[index]
    paper = {
        "signer": "sara.svensson@raddabarnen.example.se",
        "signed_on": dt.date.today().isoformat(),
        "recorded_by": "coordinator",
    }
    (ok, applied), (no, refusal) = asyncio.run(
        both("/api/agreements/planteringen/signing/paper", paper)
    )
    assert (ok, no) == (200, 409), (applied, refusal)
    assert refusal == {
        "detail": "Sara Svensson har redan undertecknat",
        "code": "already-signed",
        "params": {"name": "Sara Svensson"},
    }
    assert (applied["signer"], applied["status"]) == (paper["signer"], "signed"), applied
    links(mail, 6)
    # No second request can still be on its way: the outbox the coordinator reads says
    # every email sent, and neither the agreement nor its round has an activity or a
    # workflow task left that could send one.
    asyncio.run(settled(service_env["AGREEMENTS_TEMPORAL_ADDRESS"], client, mail))
    requests = [s for _, s, _ in signing_requests(mail)]
    assert len(requests) == 6 == len(set(requests)), requests  # one round: one request each
    # Each refusal is in the agreement's event log with what was asked, by whom and why.
    events = ops.events(Settings(data_dir=mail.parent), "planteringen")
    refusals = [json.loads(e.data_json) | {"actor": e.actor} for e in events if e.kind == "refused"]
    # Who asked is named by the server (here the local key), whatever the body said.
    assert [(r["decision"], r["actor"]) for r in refusals] == [
        ("start_signing", "local-key"),
        ("sign_paper", "local-key"),
    ], refusals
    assert all(r["reason"] and not r["reason"].startswith("Rejected") for r in refusals)
    assert "has already signed" in refusals[1]["reason"]
    report(
        "two coordinators start signing / record a signature at once",
        attempts=4,
        applied=2,
        refused_with_reason=2,
    )


def test_html_in_a_title_is_escaped_on_every_page_and_in_every_email(
    web: tuple[TestClient, Path],
) -> None:
    client, mail = web
    hostile = "<script>alert('x')</script> & <b>vänner</b>"
    text = PLANTERINGEN.replace('title = "IOP Planteringen"', f'title = "{hostile}"', 1)
    assert hostile in text
    created = client.post("/api/agreements", content=text, headers=AUTH)
    assert created.status_code == 201, created.text
    keys = {"keys": ["no-market", "not-an-order", "budget-plan", "follow-up-plan"]}
    confirmed = client.post("/api/agreements/planteringen/prerequisites", json=keys, headers=AUTH)
    assert confirmed.status_code == 200, confirmed.text
    assert client.post("/api/agreements/planteringen/signing", headers=AUTH).status_code == 200
    personal = links(mail, 6)
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    # The list is the read model the worker writes: until it shows the title, in any form.
    wait_until(lambda: "alert(" in client.get("/").text, 30, "the title on the list")
    pages = {
        "list": client.get("/").text,
        "agreement": client.get("/a/planteringen").text,
        "signing": client.get(next(iter(personal.values()))).text,
    }
    for name, page in pages.items():
        assert "<script>alert" not in page and "<b>vänner" not in page, name
        assert "&lt;script&gt;alert(" in page, name
    emails = read_mail(mail)
    assert len(emails) >= 6
    for message in emails:
        assert isinstance(message, EmailMessage)
        assert "\n" not in str(message["Subject"])
        html = message.get_body(preferencelist=("html",))
        assert html is not None and "<script>alert" not in html.get_content()
