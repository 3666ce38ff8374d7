"""The HTTP API, the signing links and pages, the coordinators' pages and the calendar
feed, against a running service (real dev server, worker process, mail sink)."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from agreements.cli import future_text, shifted
from agreements.ops import stockholm_today
from emails.render import day
from i18n import text
from models.agreement import ContributionKind, RenewalKind, Role, SigningMethod, SigningMode
from models.lifecycle import RoundOutcome, SignerStatus, State
from models.loader import loads_agreement
from models.plan import EndingKind, MilestoneKind, MilestoneStatus
from models.prerequisites import CHECKLIST
from tests.conftest import TOKEN, Temporal
from tests.language import visible as visible_lines
from tests.mail import signing_requests

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The API answers in Swedish unless the client prefers English (Accept-Language).
ENGLISH = {**AUTH, "Accept-Language": "en-GB,en;q=0.9,sv;q=0.5"}
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


def visible(page: str) -> str:
    """The text a person reads on a page, its whitespace as one space."""
    return " ".join(visible_lines(page).split())


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
    unauthorised = client.get("/api/agreements")
    assert unauthorised.status_code == 401
    assert unauthorised.json() == {
        "detail": "En giltig API-nyckel krävs (Authorization: Bearer …).",
        "code": "token-required",
        "params": {},
    }
    english = client.get("/api/agreements", headers={"Accept-Language": "en"}).json()
    assert english["detail"] == "A valid API token is required (Authorization: Bearer …)."
    swedish_first = {"Accept-Language": "sv-SE,sv;q=0.9,en;q=0.8"}
    assert "giltig" in client.get("/api/agreements", headers=swedish_first).json()["detail"]
    assert (
        client.get("/api/agreements", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    assert client.get("/openapi.json", headers=AUTH).json()["info"]["title"] == "Avtalstjänsten"
    bad = client.post("/api/agreements", content='id = "x"\n', headers=ENGLISH)
    assert bad.status_code == 422 and "request: coordinator: missing" in bad.json()["detail"]
    start(client)
    again = client.post("/api/agreements", content=PLANTERINGEN, headers=ENGLISH)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    # A refusal carries its stable code and what it names, whatever the language.
    assert again.json()["code"] == "exists"
    assert again.json()["params"] == {"agreement": "planteringen"}
    assert client.get("/api/agreements/nobody", headers=AUTH).status_code == 404
    report = client.post(
        "/api/agreements/planteringen/reports",
        json={"report": "x", "occurrence": 1},
        headers=ENGLISH,
    )
    assert report.status_code == 409 and "not signed yet" in report.json()["detail"]
    assert report.json()["code"] == "not-signed"
    assert report.json()["params"] == {"state": "signing"}
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
    # The coordinator corrects the declined agreement in the form and starts a new round.
    from tests.test_drafting import form_of

    client.post("/login", data={"token": TOKEN})
    fields = form_of(client.get("/a/planteringen/draft").text)
    fields["contribution.0.amount"] = "700 000"
    saved = client.post("/a/planteringen/draft", data={**fields, "do": "save"})
    assert saved.status_code == 200 and "IOP Planteringen" in saved.text  # its page
    state = client.get("/api/agreements/planteringen", headers=AUTH).json()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', saved.text)
    assert csrf is not None
    again = client.post(
        "/a/planteringen/sign-start", data={"csrf": csrf.group(1), "confirmed": "yes"}
    )
    assert again.status_code == 200
    state = client.get("/api/agreements/planteringen", headers=AUTH).json()
    assert state["state"] == "signing" and state["round"]["number"] == 2
    terms = client.get("/a/planteringen/terms.toml").text
    assert loads_agreement(terms).contributions[0].amount == 700_000


def test_pages_need_login_and_forms_need_csrf(
    web: tuple[TestClient, Path], temporal: Temporal
) -> None:
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
    # No link to the Temporal Web UI: it is a console without login that can cancel
    # workflows, for the people who run the service, not for coordinators.
    assert "/namespaces/" not in agreement.text and ":8233" not in agreement.text
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
    # Cancelling asks once more, saying what will happen, and does nothing until confirmed.
    asked = client.post(
        "/a/planteringen/sign-cancel", data={"csrf": csrf.group(1), "reason": "Fel belopp"}
    )
    assert asked.status_code == 200 and "Är du säker?" in asked.text
    assert "Signeringsomgången avbryts" in asked.text and "Det går inte att ångra." in asked.text
    assert "Signering (omgång 1, signeringslänk): pågår" in client.get("/a/planteringen").text
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', asked.text))
    assert fields["confirmed"] == "yes" and fields["reason"] == "Fel belopp"
    cancelled = client.post("/a/planteringen/sign-cancel", data=fields, follow_redirects=False)
    assert cancelled.status_code == 303
    feed_path = re.search(
        r'href="(/a/planteringen/calendar\.ics\?p=0&amp;key=[0-9a-f]+)"', agreement.text
    )
    assert feed_path is not None
    feed_url = html.unescape(feed_path.group(1))
    feed = client.get(feed_url)
    assert feed.status_code == 200 and "BEGIN:VCALENDAR" in feed.text
    assert client.get("/a/planteringen/calendar.ics?key=0000").status_code == 404
    # The local key's feed (person 0) is read on this machine only.
    proxied = client.get(feed_url, headers={"X-Forwarded-For": "192.0.2.9"})
    assert proxied.status_code == 404


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
        headers=ENGLISH,
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
    renewal = client.post(f"{url}/renewals", json={"party": "sof", "renew": False}, headers=ENGLISH)
    assert renewal.status_code == 409 and "fixed term" in renewal.json()["detail"]
    report = client.post(
        f"{url}/reports", json={"report": "arsrapport", "occurrence": 9}, headers=ENGLISH
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


def test_every_page_text_is_a_catalog_message_in_both_languages() -> None:
    """The pages' texts are English message ids (Jinja2's i18n extension) with Swedish and
    English in the catalog."""
    from babel.messages.extract import extract_from_file

    from i18n import translations

    found: set[str | tuple[str, ...]] = set()
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2)}
    for template in (ROOT / "agreements" / "web" / "templates").glob("*.html"):
        for _, message, _, _ in extract_from_file("jinja2", template, keywords=keywords):
            found.add(message)
    assert len(found) > 80
    for language in ("sv", "en"):
        catalog = translations(language)._catalog
        for message in found:
            if isinstance(message, tuple):
                assert catalog.get((message[0], 0)) and catalog.get((message[0], 1)), message
            else:
                assert catalog.get(message), (language, message)
    sv = translations("sv")
    assert sv.gettext("Timeline") == "Tidslinje" and sv.gettext("State") == "Läge"
    assert sv.ngettext("Upcoming: %(num)s day", "Upcoming: %(num)s days", 2) == (
        "Kommande: %(num)s dagar"
    )


def test_english_on_request(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    client.post("/login", data={"token": TOKEN})
    english = client.get("/?lang=en")
    assert '<html lang="en">' in english.text and "Add an agreement" in english.text
    assert "Lägg till ett avtal" not in english.text
    # Remembered until switched back.
    assert "Add an agreement" in client.get("/").text
    assert "Lägg till ett avtal" in client.get("/?lang=sv").text
    # An agreement's page in English says its state, statuses and times in English.
    start(client)
    page = client.get("/a/planteringen?lang=en").text
    shown = visible(page)
    assert "State: being signed" in shown and "Signing (round 1, signing link): under way" in shown
    assert "Timeline" in shown and "Events" in shown
    for swedish in ("Läge", "Tidslinje", "Händelser", "under signering", "pågår", "inbjuden"):
        assert swedish not in shown, swedish
    # The other language's link is named in that language, marked as such.
    assert '<a href="?lang=sv" lang="sv" hreflang="sv">Svenska</a>' in page
    client.get("/?lang=sv")


# The words a Swedish page must not show as they are: the service's own keys.
ENUMS = (State, SignerStatus, RoundOutcome, MilestoneStatus, MilestoneKind, EndingKind)
ENUMS_TOO = (RenewalKind, SigningMethod, SigningMode, Role, ContributionKind)
STOCKHOLM_TIME = re.compile(r"\b\d{2}:\d{2}\b(?! CES?T\b)")


def shown_as_is(shown: str, key: str) -> bool:
    """`key` as a word of the text, not inside an email address, a web address or a name
    (case matters: a party key "helsingborgshem" is not the name "Helsingborgshem")."""
    return re.search(rf"(?<![\w@./-]){re.escape(key)}(?![\w@/-])", shown) is not None


def keys_shown(page: str, milestone_ids: list[str], party_keys: list[str]) -> list[str]:
    """Every internal key and UTC time that the Swedish text of `page` shows."""
    shown = visible(page)
    found = [
        f"enum value {v.value!r}"
        for kind in (*ENUMS, *ENUMS_TOO)
        for v in kind
        if shown_as_is(shown, v.value)
    ]
    found += [f"prerequisite key {k!r}" for k in CHECKLIST if shown_as_is(shown, k)]
    found += [f"party key {k!r}" for k in party_keys if shown_as_is(shown, k)]
    found += [f"milestone id {m!r}" for m in milestone_ids if m in shown]
    found += [f"time {t.group(0)!r} without its zone" for t in STOCKHOLM_TIME.finditer(shown)]
    if "UTC" in shown:
        found.append("UTC")
    return found


def milestone_rows(client: TestClient, agreement_id: str) -> list[dict[str, Any]]:
    """The agreement's milestones from the read model (written a moment after the workflow)."""
    for _ in range(200):
        answer = client.get(f"/api/agreements/{agreement_id}/milestones", headers=AUTH)
        if answer.status_code == 200 and answer.json():
            rows: list[dict[str, Any]] = answer.json()
            return rows
        time.sleep(0.05)
    raise AssertionError(answer.text)


def milestone_ids(client: TestClient, agreement_id: str) -> list[str]:
    return [m["id"] for m in milestone_rows(client, agreement_id)]


def until(client: TestClient, agreement_id: str, state: str) -> dict[str, Any]:
    for _ in range(200):
        answer: dict[str, Any] = client.get(f"/api/agreements/{agreement_id}", headers=AUTH).json()
        if answer["state"] == state:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"{agreement_id} is {answer['state']}, not {state}")


def under_way(name: str) -> tuple[str, str]:
    """An example moved whole years so that its term started last year and still runs, and
    the day it was signed (its start)."""
    source = (ROOT / "examples" / f"{name}.toml").read_text(encoding="utf-8")
    today = stockholm_today()
    for years in range(60):
        moved = loads_agreement(shifted(source, years))
        if moved.term.start < today - dt.timedelta(days=200) and moved.term.end > today:
            return shifted(source, years), moved.term.start.isoformat()
    raise AssertionError(f"{name} cannot be moved to run today")


def take_on_and_invoice(client: TestClient, name: str, number: str) -> list[dict[str, Any]]:
    """An example taken on under way (as signed) and its first instalment still to invoice
    recorded as invoiced with `number`; its milestone rows as they were before."""
    text_, signed = under_way(name)
    taken = client.post(f"/api/agreements?signed={signed}", content=text_, headers=AUTH)
    assert taken.status_code == 201, taken.text
    until(client, name, "active")
    rows = milestone_rows(client, name)
    invoice = next(m for m in rows if m["kind"] == "invoice" and m["status"] == "to_invoice")
    marked = client.post(
        f"/api/agreements/{name}/milestones/{invoice['id']}",
        json={"status": "invoiced", "number": number},
        headers=AUTH,
    )
    assert marked.status_code == 200, marked.text
    return rows


def test_swedish_pages_show_no_internal_key_in_any_state(web: tuple[TestClient, Path]) -> None:
    """A draft, one being signed, one running with decisions in its event log, one ended:
    each Swedish page shows states, statuses, prerequisites, parties and milestones in words,
    and its times in Stockholm time with the zone."""
    client, _ = web
    client.post("/login", data={"token": TOKEN})
    client.get("/?lang=sv")
    plant = loads_agreement(PLANTERINGEN)
    created = client.post("/api/agreements", content=PLANTERINGEN, headers=AUTH)
    assert created.status_code == 201, created.text
    missing = created.json()["prerequisites_missing"]
    assert missing, "the draft has prerequisites to confirm"
    plant_ids = milestone_ids(client, "planteringen")
    parties = list(plant.parties)

    draft = client.get("/a/planteringen").text
    assert "Läge: utkast" in visible(draft)
    for key in missing:  # the checklist's words, the keys only in the form's value
        assert text("sv", CHECKLIST[key].text) in visible(draft), key
    assert keys_shown(draft, plant_ids, parties) == []

    assert client.post(
        "/api/agreements/planteringen/prerequisites", json={"keys": missing}, headers=AUTH
    ).is_success
    assert client.post("/api/agreements/planteringen/signing", headers=AUTH).is_success
    signing = client.get("/a/planteringen").text
    shown = visible(signing)
    assert "Läge: under signering" in shown
    assert "Signering (omgång 1, signeringslänk): pågår" in shown and "inbjuden" in shown
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} CES?T", shown), "event times"
    assert keys_shown(signing, plant_ids, parties) == []

    # Taken on under way, with an instalment invoiced: events with decisions.
    rows = take_on_and_invoice(client, "lund-radrum", "F-77")
    lund = loads_agreement(under_way("lund-radrum")[0])
    lund_ids = [m["id"] for m in rows]
    lund_parties = list(lund.parties)
    for _ in range(100):  # the event log is written a moment after the decision
        active = client.get("/a/lund-radrum").text
        if "F-77" in active and len(re.findall("<tr><td>", active)) > 3:
            break
        time.sleep(0.05)
    shown = visible(active)
    assert "Läge: löper" in shown and "fakturerad" in shown
    assert "med den lokala nyckeln" in shown  # the server names who set it, in words
    assert keys_shown(active, lund_ids, lund_parties) == []

    # The finance officer's list and its CSV file: words and party names.
    coming = client.get("/upcoming?days=400&role=finance").text
    assert "Kommande: 400 dagar" in visible(coming)
    assert keys_shown(coming, lund_ids + plant_ids, lund_parties + parties) == []
    csv = client.get("/upcoming.csv?days=400&role=finance")
    assert (
        csv.status_code == 200 and 'filename="kommande.csv"' in csv.headers["content-disposition"]
    )
    table = [line.split(";") for line in csv.text.lstrip("\ufeff").splitlines()]
    assert table[0][:4] == ["Avtal", "Diarienummer", "Datum enligt avtalet", "Datum"]
    assert table[0][9] == "Status" and table[0][7:9] == ["Betalare", "Mottagare"]
    lund_rows = [r for r in table[1:] if r[0] == lund.title]
    assert lund_rows and {r[4] for r in lund_rows} == {"fakturering"}
    assert "fakturerad" in {r[9] for r in lund_rows}
    names = {p.name for p in lund.parties.values()}
    assert {r[7] for r in lund_rows} <= names and {r[8] for r in lund_rows} <= names
    for row in table[1:]:
        assert dt.date.fromisoformat(row[3]) and not set(row) & set(lund_parties + parties)
        assert not set(row) & {s.value for s in (*MilestoneStatus, *MilestoneKind)}
    english_csv = client.get("/upcoming.csv?days=400&role=finance&lang=en").text
    assert english_csv.lstrip("\ufeff").startswith("Agreement;Reference;Date as written;Date;Kind")
    assert ";invoicing;" in english_csv and ";invoiced;" in english_csv
    client.get("/?lang=sv")

    # Rescinded from yesterday: ended.
    yesterday = (stockholm_today() - dt.timedelta(days=1)).isoformat()
    rescinded = client.post(
        "/api/agreements/lund-radrum/ending",
        json={"kind": "rescission", "reason": "Verksamheten har upphört", "given_on": yesterday},
        headers=AUTH,
    )
    assert rescinded.status_code == 200, rescinded.text
    until(client, "lund-radrum", "ended")
    ended = client.get("/a/lund-radrum").text
    shown = visible(ended)
    assert "Läge: avslutat" in shown and "slutar: hävd" in shown
    assert keys_shown(ended, lund_ids, lund_parties) == []
    listing = client.get("/").text
    assert "avslutat" in visible(listing) and "under signering" in visible(listing)
    assert keys_shown(listing, lund_ids + plant_ids, lund_parties + parties) == []


def test_to_do_is_the_first_page_and_shows_the_open_round(web: tuple[TestClient, Path]) -> None:
    """After signing in the coordinator lands on Att göra, which says how far the round
    has come and when it closes, and links to where it is done."""
    client, _ = web
    start(client)
    signed_in = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert signed_in.headers["location"] == "/todo"
    for _ in range(100):  # the read model says "signing" a moment after the decision
        todo = client.get("/todo")
        if "Pågående signering" in todo.text:
            break
        time.sleep(0.05)
    shown = visible(todo.text)
    assert "Att göra" in shown and "Pågående signering" in shown
    assert re.search(
        r"0 av 6 har signerat; omgången stänger \d{4}-\d{2}-\d{2} \d{2}:\d{2} CES?T", shown
    )
    assert 'href="/a/planteringen#signing"' in todo.text
    english = client.get("/todo?lang=en")
    assert "0 of 6 have signed; the round closes" in visible(english.text)
    client.get("/todo?lang=sv")


def test_the_list_is_searched_and_filtered(web: tuple[TestClient, Path]) -> None:
    """Search by title, reference or id; filter by state and by a year the term touches."""
    client, _ = web
    assert client.post("/api/agreements", content=PLANTERINGEN, headers=AUTH).status_code == 201
    lund, signed_on = under_way("lund-radrum")
    taken = client.post(f"/api/agreements?signed={signed_on}", content=lund, headers=AUTH)
    assert taken.status_code == 201, taken.text
    client.post("/login", data={"token": TOKEN})
    for _ in range(100):  # the read model is written a moment later
        if "IOP RådRum Lund" in client.get("/").text and "IOP Planteringen" in client.get("/").text:
            break
        time.sleep(0.05)

    def titles(query: str) -> set[str]:
        page = client.get("/?" + query).text
        return {t for t in ("IOP Planteringen", "IOP RådRum Lund") if t in page}

    assert titles("") == {"IOP Planteringen", "IOP RådRum Lund"}
    assert titles("q=rådrum") == {"IOP RådRum Lund"}
    assert titles("q=planteringen+iop") == {"IOP Planteringen"}
    assert titles("state=draft") == {"IOP Planteringen"}
    assert titles("state=active") == {"IOP RådRum Lund"}
    start = loads_agreement(PLANTERINGEN).term.start.year
    assert "IOP Planteringen" in titles(f"year={start}")
    assert titles("year=1999") == set()
    assert "Inget avtal matchar." in client.get("/?q=finns-inte").text
    # Odd input is a filter that matches nothing, never an error.
    assert client.get("/?state=x&year=abcd&q=%00").status_code == 200


def test_an_agreement_is_exported_and_starts_a_new_one(web: tuple[TestClient, Path]) -> None:
    """The agreement file of an agreement, and a new draft from it: same terms but the id,
    title and signing date; created from the form as it comes."""
    client, _ = web
    lund, signed_on = under_way("lund-radrum")
    taken = client.post(f"/api/agreements?signed={signed_on}", content=lund, headers=AUTH)
    assert taken.status_code == 201, taken.text
    client.post("/login", data={"token": TOKEN})
    for _ in range(100):  # its terms are stored a moment after it starts
        exported = client.get("/a/lund-radrum/terms.toml")
        if exported.status_code == 200:
            break
        time.sleep(0.05)
    assert exported.status_code == 200
    assert 'filename="lund-radrum.toml"' in exported.headers["content-disposition"]
    assert loads_agreement(exported.text) == loads_agreement(lund).model_copy(
        update={"signing": loads_agreement(exported.text).signing}
    )
    page = client.get("/?copy=lund-radrum").text
    draft = re.search(r'<textarea name="terms"[^>]*>([^<]*)</textarea>', page)
    assert draft is not None
    copy = loads_agreement(html.unescape(draft.group(1)))
    assert copy.id == "lund-radrum-2" and copy.title == "IOP RådRum Lund (kopia)"
    assert copy.signing.signed is None and copy.parties == loads_agreement(lund).parties
    assert client.get("/a/finns-inte/terms.toml").status_code == 404


def test_nothing_typed_is_lost_when_an_agreement_is_refused(web: tuple[TestClient, Path]) -> None:
    """A file with mistakes comes back in the form, as it was typed, with what is wrong
    above it; corrected, it is added."""
    client, _ = web
    client.post("/login", data={"token": TOKEN})
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/").text)
    assert csrf is not None
    broken = PLANTERINGEN.replace('title = "IOP Planteringen"', 'title = ""') + "\n# <åäö> & mer\n"
    sent = client.post(
        "/create", data={"csrf": csrf.group(1), "terms": broken, "signed": "2099-13-01"}
    )
    assert sent.status_code == 422
    assert "Avtalet lades inte till" in sent.text and 'role="alert"' in sent.text
    kept = re.search(r'<textarea name="terms"[^>]*>(.*?)</textarea>', sent.text, flags=re.S)
    assert kept is not None and html.unescape(kept.group(1)) == broken
    assert '<details class="box" open>' in sent.text
    again = client.post("/create", data={"csrf": csrf.group(1), "terms": broken, "signed": ""})
    assert again.status_code == 422 and "title" in again.text
    fixed = client.post(
        "/create",
        data={"csrf": csrf.group(1), "terms": PLANTERINGEN, "signed": ""},
        follow_redirects=False,
    )
    assert fixed.status_code == 303 and fixed.headers["location"] == "/a/planteringen"
