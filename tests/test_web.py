"""The HTTP API, the signing links and pages, the coordinators' pages and the calendar
feed, against a running service (real dev server, worker process, mail sink)."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from agreements.cli import future_text
from emails.render import day
from models.loader import loads_agreement
from tests.conftest import TOKEN
from tests.mail import signing_requests

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The real seed, moved forward whole years so that its term has not started: a draft the
# service takes on to sign (`agreements shift`), as the README's quick start makes it.
PLANTERINGEN = future_text((ROOT / "examples" / "planteringen.toml").read_text(encoding="utf-8"))


def links(mail: Path, count: int) -> dict[str, str]:
    """Signer email -> the path of their personal link, from the emails in the sink."""
    for _ in range(200):
        found = {signer: url[url.index("/sign/") :] for _, signer, url in signing_requests(mail)}
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} signing emails did not arrive")


def timeline_rows(page: str) -> list[tuple[str, str]]:
    """(effective date as shown, date as written) of each timeline row of an agreement page."""
    return re.findall(r"<tr(?: class=\"past\")?><td>([^<]+)</td><td>([^<]*)</td>", page)


def start(client: TestClient) -> None:
    created = client.post("/api/agreements", content=PLANTERINGEN, headers=AUTH)
    assert created.status_code == 201, created.text
    confirmed = client.post(
        "/api/agreements/planteringen/prerequisites",
        json={"keys": ["no-market", "not-an-order", "budget-plan", "follow-up-plan"]},
        headers=AUTH,
    )
    assert confirmed.status_code == 200, confirmed.text
    started = client.post("/api/agreements/planteringen/signing", headers=AUTH)
    assert started.status_code == 200 and started.json()["state"] == "signing"


def test_api_needs_the_token_and_explains_refusals(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    assert client.get("/api/agreements").status_code == 401
    assert (
        client.get("/api/agreements", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    assert client.get("/openapi.json").json()["info"]["title"] == "Avtalstjänsten"
    bad = client.post("/api/agreements", content='id = "x"\n', headers=AUTH)
    assert bad.status_code == 422 and "request: coordinator: missing" in bad.json()["detail"]
    start(client)
    again = client.post("/api/agreements", content=PLANTERINGEN, headers=AUTH)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert client.get("/api/agreements/nobody", headers=AUTH).status_code == 404
    report = client.post(
        "/api/agreements/planteringen/reports",
        json={"report": "x", "occurrence": 1},
        headers=AUTH,
    )
    assert report.status_code == 409 and "not signed yet" in report.json()["detail"]
    for _ in range(100):  # the read model follows the workflow a moment later
        listed = client.get("/api/agreements", headers=AUTH).json()
        if listed:
            break
        time.sleep(0.05)
    assert [a["id"] for a in listed] == ["planteringen"]


def test_signers_sign_from_their_links(web: tuple[TestClient, Path]) -> None:
    client, mail = web
    start(client)
    personal = links(mail, 6)
    sara = personal["sara.svensson@raddabarnen.example.se"]
    page = client.get(sara)
    assert page.status_code == 200
    assert "IOP Planteringen" in page.text and "SHA-256" in page.text
    # Forged and altered links get a plain error page and change nothing.
    assert client.get(sara[:-3] + "abc").status_code == 403
    assert client.get("/sign/not-a-link").status_code == 403
    other = personal["patrik.karlsson@rfsisu.example.se"]
    _, mac = other.removeprefix("/sign/").split(".")
    mixed = f"/sign/{sara.removeprefix('/sign/').split('.')[0]}.{mac}"
    assert client.get(mixed).status_code == 403
    # Sign once; the same link cannot sign again.
    signed = client.post(sara, data={"action": "sign"})
    assert signed.status_code == 200 and "Din underskrift är registrerad" in signed.text
    assert client.post(sara, data={"action": "sign"}).status_code == 409
    assert "Din underskrift är registrerad" in client.get(sara).text
    # A decline needs a reason; with one, the round ends and everyone is told.
    maria = personal["maria.holm@helsingborg.example.se"]
    assert client.post(maria, data={"action": "decline", "reason": " "}).status_code == 400
    declined = client.post(maria, data={"action": "decline", "reason": "Fel belopp"})
    assert declined.status_code == 200 and "avböjt" in declined.text
    for _ in range(100):
        state = client.get("/api/agreements/planteringen", headers=AUTH).json()
        if state["state"] == "draft":
            break
        time.sleep(0.05)
    assert state["state"] == "draft"
    round_ = state["round"]
    assert round_["outcome"] == "declined" and round_["reason"] == "Fel belopp"
    opened = [e for e in round_["events"] if e["what"] == "opened"]
    assert opened and opened[0]["name"] == "Sara Svensson"
    # The round as the API shows it carries no IP and no user agent (the event log keeps
    # the IP; see tests/test_signing_link.py), and no signer's token.
    assert opened[0]["ip"] is None and "user_agent" not in opened[0]
    assert all("token" not in s for s in round_["signers"])


def test_pages_need_login_and_forms_need_csrf(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    start(client)
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/login"
    assert client.post("/login", data={"token": "wrong"}).status_code == 401
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    for _ in range(100):  # the list is the read model the worker writes, a moment later
        listing = client.get("/")
        if "IOP Planteringen" in listing.text:
            break
        time.sleep(0.05)
    assert listing.status_code == 200 and "IOP Planteringen" in listing.text
    agreement = client.get("/a/planteringen")
    assert agreement.status_code == 200 and "Signering (omgång 1" in agreement.text
    # The timeline: an invoice "senast 1 maj" falls on a holiday, so its row shows the
    # effective date with its weekday and the date as written.
    assert "Tidslinje" in agreement.text
    written = next(
        c.instalments.dates[0]
        for c in loads_agreement(PLANTERINGEN).contributions
        if c.instalments.dates
    )
    effective = [m for m in timeline_rows(agreement.text) if m[1] == written.isoformat()]
    assert effective and effective[0][0].startswith(f"{written.year}-05-0"), effective
    assert effective[0][0] == day(dt.date.fromisoformat(effective[0][0][:10]))
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', agreement.text)
    assert csrf is not None
    forged = client.post("/a/planteringen/sign-cancel", data={"csrf": "x", "reason": "r"})
    assert forged.status_code == 403
    cancelled = client.post(
        "/a/planteringen/sign-cancel",
        data={"csrf": csrf.group(1), "reason": "Fel belopp"},
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    feed_path = re.search(r'href="(/a/planteringen/calendar\.ics\?key=[0-9a-f]+)"', agreement.text)
    assert feed_path is not None
    feed = client.get(feed_path.group(1))
    assert feed.status_code == 200 and "BEGIN:VCALENDAR" in feed.text
    assert client.get("/a/planteringen/calendar.ics?key=0000").status_code == 404


def test_every_api_decision_endpoint(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    lund = (ROOT / "examples" / "lund-radrum.toml").read_text(encoding="utf-8")
    # An agreement still to come, signed on paper through the API.
    future = future_text(lund)
    assert client.post("/api/agreements", content=future, headers=AUTH).status_code == 201
    url = "/api/agreements/lund-radrum"
    assert (
        client.post(
            f"{url}/prerequisites", json={"keys": ["budget-plan"]}, headers=AUTH
        ).status_code
        == 200
    )
    assert client.post(f"{url}/signing", headers=AUTH).json()["state"] == "signing"
    wrong = client.post(
        f"{url}/signing/paper",
        json={"signer": "x@example.se", "signed_on": "2026-11-20", "recorded_by": "api"},
        headers=AUTH,
    )
    assert wrong.status_code == 409 and "is not a signatory" in wrong.json()["detail"]
    for signer in (
        "annika.pettersson@lund.example.se",
        "martin.nihlgard@im.example.org",
        "ingrid.olsson@im.example.org",
    ):
        paper = client.post(
            f"{url}/signing/paper",
            json={"signer": signer, "signed_on": "2026-11-20", "recorded_by": "api"},
            headers=AUTH,
        )
        assert paper.status_code == 200, paper.text
    for _ in range(100):
        if client.get(url, headers=AUTH).json()["state"] == "signed":
            break
        time.sleep(0.05)
    renewal = client.post(f"{url}/renewals", json={"party": "sof", "renew": False}, headers=AUTH)
    assert renewal.status_code == 409 and "fixed term" in renewal.json()["detail"]
    report = client.post(
        f"{url}/reports", json={"report": "arsrapport", "occurrence": 9}, headers=AUTH
    )
    assert report.status_code == 409 and "no report arsrapport number 9" in report.json()["detail"]
    bad_amend = client.post(f"{url}/amendments", content="id = 1", headers=AUTH)
    assert bad_amend.status_code == 422
    amend = client.post(
        f"{url}/amendments", content=future.replace("520000", "530000"), headers=AUTH
    )
    assert amend.status_code == 200 and amend.json()["round"]["purpose"] == "amendment"
    ending = client.post(
        f"{url}/ending",
        json={"kind": "termination", "party": "im", "reason": "Ändrade förhållanden"},
        headers=AUTH,
    )
    assert ending.status_code == 200 and ending.json()["state"] == "ending"
    outbox = client.get(f"{url}/outbox", headers=AUTH)
    assert outbox.status_code == 200 and isinstance(outbox.json(), list)
    cancel = client.post(f"{url}/signing/cancel", json={"reason": "x", "by": "api"}, headers=AUTH)
    assert cancel.status_code == 200 and cancel.json()["purpose"] == "amendment"
    assert cancel.json()["outcome"] == "cancelled" and "signers" not in cancel.json()


def test_every_interface_text_has_english() -> None:
    from agreements.web.i18n import EN

    used: set[str] = set()
    for template in (ROOT / "agreements" / "web" / "templates").glob("*.html"):
        used |= set(re.findall(r't\("([^"]+)"\)', template.read_text(encoding="utf-8")))
    assert used and not used - set(EN), sorted(used - set(EN))


def test_english_on_request(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    client.post("/login", data={"token": TOKEN})
    english = client.get("/?lang=en")
    assert '<html lang="en">' in english.text and "Add an agreement" in english.text
    assert "Lägg till ett avtal" not in english.text
    # Remembered until switched back.
    assert "Add an agreement" in client.get("/").text
    assert "Lägg till ett avtal" in client.get("/?lang=sv").text
