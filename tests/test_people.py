"""People, not a shared token: sign-in through a real OpenID Connect provider on loopback
(oidc-provider-mock, which runs Authlib's provider), sessions kept on the server, roles per
organisation through the pages, the API and the calendar feed, personal API tokens, the
local key only from this machine, and the server naming who made each decision."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import oidc_provider_mock
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from agreements import access
from agreements.access import PersonRole
from agreements.web.app import create_app
from models.config import Settings
from models.db import engine
from models.people import ApiToken, Person, WebSession
from models.records import EventRecord, SignerTrace
from tests.conftest import TOKEN
from tests.test_web import PLANTERINGEN

LOCAL = {"Authorization": f"Bearer {TOKEN}"}
HERE = ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """A real OpenID Connect provider on loopback: discovery, JWKS, authorization code with
    PKCE, signed ID tokens."""
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


def settings_for(service_env: dict[str, str], provider: str, **more: object) -> Settings:
    values: dict[str, object] = {"public_base_url": "http://testserver", **more}
    return Settings(
        temporal_address=service_env["AGREEMENTS_TEMPORAL_ADDRESS"],
        temporal_namespace=service_env["AGREEMENTS_TEMPORAL_NAMESPACE"],
        data_dir=Path(service_env["AGREEMENTS_DATA_DIR"]),
        smtp_port=int(service_env["AGREEMENTS_SMTP_PORT"]),
        api_token=TOKEN,
        oidc_issuer=provider,
        oidc_client_id="avtalstjansten",
        oidc_client_secret="provider-secret-for-tests",
        oidc_name="Kommunens inloggning",
        **values,  # type: ignore[arg-type]
    )


@pytest.fixture
def site(service_env: dict[str, str], provider: str) -> Iterator[tuple[Settings, FastAPI]]:
    """The application with two administrations and their people: Kultur (Anna coordinates,
    Frida is finance, Rut reads) and Social (Bo coordinates); planteringen belongs to Kultur."""
    config = settings_for(service_env, provider)
    app = create_app(config)
    db = engine(config.db_url())
    with TestClient(app, client=HERE) as local:
        access.add_organisation(db, "kultur", "Kultur- och fritidsnämnden")
        access.add_organisation(db, "social", "Socialnämnden")
        people = {
            "anna": ("kultur", PersonRole.coordinator),
            "frida": ("kultur", PersonRole.finance),
            "rut": ("kultur", PersonRole.reader),
            "bo": ("social", PersonRole.coordinator),
            "ada": ("kultur", PersonRole.administrator),
        }
        for name, (org, role) in people.items():
            access.grant(db, f"{name}@lund.se", org, role, name=name.title())
        created = local.post(
            "/api/agreements?organisation=kultur", content=PLANTERINGEN, headers=LOCAL
        )
        assert created.status_code == 201, created.text
        yield config, app


def sign_in(client: TestClient, provider: str, sub: str, **claims: str) -> httpx.Response:
    """Through the provider as a browser would: our /login/oidc redirects there, the provider's
    form is posted for `sub`, and its redirect brings the code back to /login/callback."""
    put = httpx.put(f"{provider}/users/{quote(sub)}", json=claims)
    assert put.status_code == 204
    start = client.get("/login/oidc", follow_redirects=False)
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(provider) and "code_challenge=" in authorize
    assert "nonce=" in authorize
    answer = httpx.post(authorize, data={"sub": sub})
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert back.path == "/login/callback"
    done: httpx.Response = client.get(f"{back.path}?{back.query}", follow_redirects=False)
    return done


def person(client: TestClient, provider: str, name: str) -> TestClient:
    done = sign_in(client, provider, f"sub-{name}", email=f"{name}@lund.se", name=name.title())
    assert done.status_code == 303 and done.headers["location"] == "/todo", done.text
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, page[:400]
    return found.group(1)


def made_token(client: TestClient, name: str, scope: str) -> str:
    """A personal token made on the person's own page, as the page shows it (once)."""
    made = client.post(
        "/me/tokens", data={"csrf": csrf_of(client.get("/me").text), "name": name, "scope": scope}
    )
    found = re.search(r'<code id="new-token">([^<]+)</code>', made.text)
    assert made.status_code == 201 and found is not None, made.text[:400]
    return html.unescape(found.group(1))


def settled(client: TestClient, path: str, text: str) -> str:
    for _ in range(100):  # the read model is written by the worker a moment later
        page: str = client.get(path).text
        if text in page:
            return page
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never on {path}")


def test_sign_in_through_the_provider_sessions_and_sign_out(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    config, app = site
    db = engine(config.db_url())
    with TestClient(app, client=("192.0.2.10", 50000)) as browser:  # someone elsewhere
        login = browser.get("/login")
        assert "Logga in med Kommunens inloggning" in login.text
        assert 'name="token"' not in login.text  # the local key's form: on the server only
        # A person the provider knows but no administrator added: told so, no session.
        stranger = sign_in(browser, provider, "sub-x", email="okand@lund.se", name="Okänd")
        assert stranger.status_code == 403
        assert "men har ingen behörighet i avtalstjänsten" in stranger.text
        assert browser.get("/", follow_redirects=False).status_code == 303

        person(browser, provider, "anna")
        home = settled(browser, "/", "IOP Planteringen")
        assert "Anna" in home and "Logga ut" in home
        cookie = browser.cookies.get("avtal_session")
        assert cookie and len(cookie) >= 40
        with Session(db) as session:  # kept on the server, as a hash only
            rows = list(session.exec(select(WebSession)))
        assert [r for r in rows if r.id_sha256 == access.digest(cookie)]
        assert not [r for r in rows if r.id_sha256 == cookie]
        # The second sign-in of the same person is recognised by the subject, not the email.
        with Session(db) as session:
            bound = session.exec(select(Person).where(Person.email == "anna@lund.se"))
            assert next(iter(bound)).subject == "sub-anna"

        # A sign-in state is used once: replaying the provider's answer changes nothing.
        out = browser.post("/logout", data={"csrf": csrf_of(home)}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login?out=1"
        assert "Du är utloggad." in browser.get("/login?out=1").text
        browser.cookies.set("avtal_session", cookie)  # the old cookie, kept by someone
        assert browser.get("/", follow_redirects=False).status_code == 303

        # Sessions end when revoked by an administrator, and on deactivation.
        browser.cookies.clear()
        person(browser, provider, "anna")
        assert browser.get("/", follow_redirects=False).status_code == 200
        anna = access.person_by_email(db, "anna@lund.se")
        assert anna is not None and anna.person_id is not None
        assert access.end_sessions(db, anna.person_id) == 1
        assert browser.get("/", follow_redirects=False).status_code == 303


def test_a_sign_in_answer_is_used_once_and_a_forged_one_is_refused(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    _, app = site
    with TestClient(app, client=("192.0.2.11", 50000)) as browser:
        httpx.put(f"{provider}/users/sub-anna", json={"email": "anna@lund.se"})
        start = browser.get("/login/oidc", follow_redirects=False)
        answer = httpx.post(start.headers["location"], data={"sub": "sub-anna"})
        back = urlsplit(answer.headers["location"])
        assert browser.get(f"{back.path}?{back.query}", follow_redirects=False).status_code == 303
        browser.cookies.clear()
        replayed = browser.get(f"{back.path}?{back.query}", follow_redirects=False)
        assert replayed.status_code == 400
        assert "Inloggningen gick inte igenom: börja om." in replayed.text
        # A code for another browser's sign-in (state that does not match) is refused too.
        browser.get("/login/oidc", follow_redirects=False)
        forged = browser.get("/login/callback?code=abc&state=zzz", follow_redirects=False)
        assert forged.status_code == 400 and "avtal_session" not in forged.headers.get(
            "set-cookie", ""
        )


def test_a_session_ends_when_idle_or_old(site: tuple[Settings, FastAPI]) -> None:
    config, _ = site
    db = engine(config.db_url())
    anna = access.person_by_email(db, "anna@lund.se")
    assert anna is not None and anna.person_id is not None
    value = access.open_session(db, anna.person_id, dt.timedelta(hours=1))
    assert access.session_person(db, value, dt.timedelta(minutes=30)) is not None
    with Session(db) as session:  # an hour without a request
        row = session.get(WebSession, access.digest(value))
        assert row is not None
        row.last_seen_at = row.last_seen_at - dt.timedelta(hours=1)
        session.add(row)
        session.commit()
    assert access.session_person(db, value, dt.timedelta(minutes=30)) is None
    old = access.open_session(db, anna.person_id, dt.timedelta(seconds=-1))  # expired
    assert access.session_person(db, old, dt.timedelta(hours=1)) is None
    assert access.session_person(db, "x" * 500, dt.timedelta(hours=1)) is None


def test_a_person_sees_and_decides_on_their_organisations_agreements_only(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    config, app = site
    db = engine(config.db_url())
    with TestClient(app, client=("192.0.2.20", 50000)) as bo:
        person(bo, provider, "bo")  # Social's coordinator
        assert "IOP Planteringen" not in bo.get("/").text
        assert bo.get("/a/planteringen").status_code == 404
        refused = bo.post("/a/planteringen/sign-start", data={"csrf": csrf_of(bo.get("/me").text)})
        assert refused.status_code == 404
        assert bo.get("/upcoming?days=3650&role=coordinator").text.count("planteringen") == 0
        assert "planteringen" not in bo.get("/upcoming.csv?days=3650&role=coordinator").text
        # Bo's own token: the API answers as if the agreement did not exist.
        header = {"Authorization": f"Bearer {made_token(bo, 'test', 'decide')}"}
        assert bo.get("/api/agreements", headers=header).json() == []
        api = bo.get("/api/agreements/planteringen", headers=header)
        assert api.status_code == 404 and api.json()["code"] == "no-agreement"
        start = bo.post("/api/agreements/planteringen/signing", headers=header)
        assert start.status_code == 404
        assert bo.get("/api/agreements/planteringen/outbox", headers=header).status_code == 404
        assert bo.get("/api/agreements/planteringen/milestones", headers=header).status_code == 404
        # The calendar feed: even a key made for Bo and this agreement gives nothing.
        bo_id = access.person_by_email(db, "bo@lund.se").person_id  # type: ignore[union-attr]
        key = app.state.gate.feed_key("planteringen", bo_id)
        feed = bo.get(f"/a/planteringen/calendar.ics?p={bo_id}&key={key}")
        assert feed.status_code == 404

    with TestClient(app, client=("192.0.2.21", 50000)) as anna:
        person(anna, provider, "anna")  # Kultur's coordinator: her agreement
        page = settled(anna, "/a/planteringen", "IOP Planteringen")
        feed = re.search(r'href="(/a/planteringen/calendar\.ics\?[^"]+)"', page)
        assert feed is not None
        feed_url = html.unescape(feed.group(1))
        assert anna.get(feed_url).status_code == 200
        # Anna leaves Kultur: her feed stops with her right to read.
        access.remove(db, "anna@lund.se", "kultur")
        assert anna.get(feed_url).status_code == 404
        assert anna.get("/a/planteringen").status_code == 404
        access.grant(db, "anna@lund.se", "kultur", PersonRole.coordinator)


def test_roles_finance_records_money_and_a_reader_reads(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    config, app = site
    with Session(engine(config.db_url())) as session:  # a signer's address, as signing keeps it
        session.add(
            SignerTrace(
                event_key="planteringen:trace",
                agreement_id="planteringen",
                at=dt.datetime.now(dt.UTC),
                kind="signature.signed",
                signer="sara@example.se",
                ip="198.51.100.23",
                user_agent="Mozilla/5.0 (test)",
            )
        )
        session.commit()
    with TestClient(app, client=("192.0.2.30", 50000)) as rut:
        person(rut, provider, "rut")
        page = settled(rut, "/a/planteringen", "IOP Planteringen")
        assert "din roll låter dig inte fatta beslut" in page
        assert "198.51.100.23" not in page  # signers' addresses: coordinators only
        assert 'action="/a/planteringen/sign-start"' not in page
        refused = rut.post("/a/planteringen/sign-start", data={"csrf": csrf_of(page)})
        assert refused.status_code == 403 and "din roll (läsare) tillåter inte" in refused.text
    with TestClient(app, client=("192.0.2.32", 50000)) as anna:
        person(anna, provider, "anna")
        page = settled(anna, "/a/planteringen", "198.51.100.23")
        assert "Mozilla/5.0 (test)" in page and "Varifrån signerarna agerade" in page
    with TestClient(app, client=("192.0.2.31", 50000)) as frida:
        person(frida, provider, "frida")
        page = settled(frida, "/a/planteringen", "IOP Planteringen")
        assert "Du kan registrera fakturor och betalningar" in page
        assert "198.51.100.23" not in page
        header = {"Authorization": f"Bearer {made_token(frida, 'ekonomi', 'decide')}"}
        start = frida.post("/api/agreements/planteringen/signing", headers=header)
        assert start.status_code == 403 and start.json()["code"] == "not-allowed"
        # Finance may record an invoice: the workflow judges it (not signed yet: 409), the
        # role does not stop it.
        invoice = frida.post(
            "/api/agreements/planteringen/milestones/x",
            json={"status": "invoiced", "number": "F-1"},
            headers=header,
        )
        assert invoice.status_code == 409, invoice.text


def test_personal_tokens_are_shown_once_stored_hashed_scoped_and_revocable(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    config, app = site
    db = engine(config.db_url())
    with TestClient(app, client=("192.0.2.40", 50000)) as anna:
        person(anna, provider, "anna")
        me = anna.get("/me")
        assert "Kultur- och fritidsnämnden" in me.text and "samordnare" in me.text
        token = made_token(anna, "Diariet", "read")
        assert token.startswith("avt_")
        assert token not in anna.get("/me").text  # shown once
        with Session(db) as session:
            rows = list(session.exec(select(ApiToken)))
        assert not any(token in json.dumps(r.model_dump(mode="json")) for r in rows)
        header = {"Authorization": f"Bearer {token}"}
        listed = anna.get("/api/agreements", headers=header)
        assert [a["id"] for a in listed.json()] == ["planteringen"]
        # Signed in, the API reads with the session cookie but decides with a token only.
        assert anna.get("/api/agreements").status_code == 200
        assert anna.post("/api/agreements/planteringen/signing").status_code == 401
        # Read only: a decision is refused with 403 though Anna herself may decide.
        decide = anna.post("/api/agreements/planteringen/signing", headers=header)
        assert decide.status_code == 403 and decide.json()["code"] == "not-allowed"
        row = next(r for r in rows if r.name == "Diariet")
        revoked = anna.post(f"/me/tokens/{row.id}/revoke", data={"csrf": csrf_of(me.text)})
        assert revoked.status_code == 200 and "återkallad" in revoked.text
        assert anna.get("/api/agreements", headers=header).status_code == 401
        # Any text as a token: refused, never an error.
        for odd in ("avt_", "avt_x_y", "avt_åäö_ö", "avt_" + "a" * 300):
            answer = anna.get(
                "/api/agreements", headers={"Authorization": f"Bearer {odd}".encode()}
            )
            assert answer.status_code == 401


def test_the_server_names_who_decided(site: tuple[Settings, FastAPI], provider: str) -> None:
    config, app = site
    db = engine(config.db_url())
    with TestClient(app, client=("192.0.2.50", 50000)) as anna:
        person(anna, provider, "anna")
        header = {"Authorization": f"Bearer {made_token(anna, 'i', 'decide')}"}
        # The client says someone else made the decision; the log names Anna.
        confirm = anna.post(
            "/api/agreements/planteringen/prerequisites",
            json={"keys": ["budget-plan"], "by": "Kommunstyrelsens ordförande"},
            headers=header,
        )
        assert confirm.status_code in (200, 409), confirm.text
        started = anna.post("/api/agreements/planteringen/signing", headers=header)
        assert started.status_code in (200, 409), started.text
        # A refused decision names her too (a second start while the round runs).
        again = anna.post("/api/agreements/planteringen/signing", headers=header)
        assert again.status_code == 409
        for _ in range(200):
            with Session(db) as session:
                events = list(
                    session.exec(
                        select(EventRecord).where(EventRecord.agreement_id == "planteringen")
                    )
                )
            if any(e.kind == "refused" for e in events) and any(
                e.kind.startswith("signing") or "sign" in e.kind for e in events
            ):
                break
            time.sleep(0.05)
        actors = {e.actor for e in events if e.actor}
        assert "Kommunstyrelsens ordförande" not in json.dumps(
            [e.model_dump(mode="json") for e in events]
        )
        assert "Anna (anna@lund.se)" in actors
        assert any(e.kind == "refused" and e.actor == "Anna (anna@lund.se)" for e in events)
        # Who handed the agreement over is named on its first event (the local key here).
        assert [e.actor for e in events if e.kind == "created"] == ["local-key"]
        # A paper signature names who entered it, whatever the body says.
        paper = anna.post(
            "/api/agreements/planteringen/signing/paper",
            json={
                "signer": "kontakt@example.se",
                "signed_on": dt.date.today().isoformat(),
                "recorded_by": "någon annan",
            },
            headers=header,
        )
        assert paper.status_code in (200, 409), paper.text
        page = settled(anna, "/a/planteringen", "Anna (anna@lund.se)")
        assert "någon annan" not in page


def test_the_local_key_only_from_this_machine(site: tuple[Settings, FastAPI]) -> None:
    _, app = site
    with TestClient(app, client=("192.0.2.60", 50000)) as elsewhere:
        assert elsewhere.get("/api/agreements", headers=LOCAL).status_code == 401
        refused = elsewhere.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert refused.status_code == 403
        assert "tas bara emot på servern själv" in refused.text
    with TestClient(app, client=HERE) as here:
        assert here.get("/api/agreements", headers=LOCAL).status_code == 200
        # Through a proxy on this machine: every request looks local, so the key is refused.
        proxied = {**LOCAL, "X-Forwarded-For": "203.0.113.9"}
        assert here.get("/api/agreements", headers=proxied).status_code == 401
        signed_in = here.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert signed_in.status_code == 303
        assert here.get("/", follow_redirects=False).status_code == 200
        # The local key's session is not taken through a proxy either.
        assert (
            here.get(
                "/", headers={"X-Forwarded-For": "203.0.113.9"}, follow_redirects=False
            ).status_code
            == 303
        )


def test_administrators_add_people_to_their_organisations_only(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    config, app = site
    db = engine(config.db_url())
    with TestClient(app, client=("192.0.2.70", 50000)) as ada:
        person(ada, provider, "ada")
        people = ada.get("/people")
        assert people.status_code == 200 and "Kultur- och fritidsnämnden" in people.text
        assert "Socialnämnden" not in people.text and "bo@lund.se" not in people.text
        csrf = csrf_of(people.text)
        added = ada.post(
            "/people/grant",
            data={"csrf": csrf, "email": "Ny@Lund.se", "organisation": "kultur", "role": "reader"},
        )
        assert added.status_code == 200 and "ny@lund.se" in added.text
        other = ada.post(
            "/people/grant",
            data={
                "csrf": csrf,
                "email": "x@lund.se",
                "organisation": "social",
                "role": "administrator",
            },
        )
        assert other.status_code == 403
        bad = ada.post(
            "/people/grant",
            data={
                "csrf": csrf,
                "email": "inte-en-adress",
                "organisation": "kultur",
                "role": "reader",
            },
        )
        assert bad.status_code == 400 and "inte-en-adress är ingen e-postadress" in bad.text
    assert access.person_by_email(db, "x@lund.se") is None
    with TestClient(app, client=("192.0.2.71", 50000)) as bo:
        person(bo, provider, "bo")
        assert bo.get("/people").status_code == 403


def test_the_temporal_console_is_linked_for_administrators_only(
    service_env: dict[str, str], provider: str
) -> None:
    """The Web UI can cancel a workflow and has no sign-in: its link is on the agreement
    page for the organisation's administrators, not for its coordinators."""
    config = settings_for(service_env, provider, temporal_ui_url="https://temporal.lund.se")
    app = create_app(config)
    db = engine(config.db_url())
    with TestClient(app, client=HERE) as local:
        access.add_organisation(db, "kultur", "Kultur- och fritidsnämnden")
        access.grant(db, "ada@lund.se", "kultur", PersonRole.administrator, name="Ada")
        access.grant(db, "anna@lund.se", "kultur", PersonRole.coordinator, name="Anna")
        created = local.post("/api/agreements", content=PLANTERINGEN, headers=LOCAL)
        assert created.status_code == 201, created.text
    console = "https://temporal.lund.se/namespaces/"
    with TestClient(app, client=("192.0.2.80", 50000)) as anna:
        person(anna, provider, "anna")
        assert console not in settled(anna, "/a/planteringen", "IOP Planteringen")
    with TestClient(app, client=("192.0.2.81", 50000)) as ada:
        person(ada, provider, "ada")
        page = settled(ada, "/a/planteringen", "IOP Planteringen")
        assert (
            f'href="{console}{config.temporal_namespace}/workflows/agreement-planteringen"' in page
        )


def test_cookies_are_secure_behind_https(service_env: dict[str, str], provider: str) -> None:
    config = settings_for(service_env, provider, public_base_url="https://avtal.lund.se")
    with TestClient(create_app(config), base_url="https://testserver", client=HERE) as here:
        answer = here.post("/login", data={"token": TOKEN}, follow_redirects=False)
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("__Host-avtal_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert "samesite=lax" in cookie.lower()
        started = here.get("/login/oidc", follow_redirects=False)
        assert "Secure" in started.headers["set-cookie"]
        assert (
            "redirect_uri=https%3A%2F%2Favtal.lund.se%2Flogin%2Fcallback"
            in started.headers["location"]
        )


def test_people_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first administrator is added on the server; what cannot be done is one line in
    Swedish, never a traceback."""
    from typer.testing import CliRunner

    import models.config as settings_module
    from agreements.cli import app as cli
    from models.db import migrate

    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(tmp_path))
    settings_module.settings.cache_clear()
    db = migrate(Settings(data_dir=tmp_path).db_url())
    run = CliRunner()
    try:
        assert (
            run.invoke(cli, ["people", "org", "kultur", "Kultur- och fritidsnämnden"]).exit_code
            == 0
        )
        granted = run.invoke(
            cli, ["people", "grant", "Ada@Lund.se", "kultur", "administrator", "--name", "Ada"]
        )
        assert granted.exit_code == 0 and "ada@lund.se: administratör (kultur)" in granted.output
        wrong = run.invoke(cli, ["people", "grant", "x@lund.se", "kultur", "chef"])
        assert wrong.exit_code == 1 and "är inte en av administrator" in wrong.output
        nowhere = run.invoke(cli, ["people", "grant", "x@lund.se", "social", "reader"])
        assert nowhere.exit_code == 1 and "det finns ingen organisation social" in nowhere.output
        listed = run.invoke(cli, ["people", "list", "--json"])
        assert json.loads(listed.output)[0]["roles"] == {"kultur": "administrator"}
        ada = access.person_by_email(db, "ada@lund.se")
        assert ada is not None and ada.person_id is not None
        session = access.open_session(db, ada.person_id, dt.timedelta(hours=1))
        access.make_token(db, ada.person_id, "t", "read")
        gone = run.invoke(cli, ["people", "deactivate", "ada@lund.se"])
        assert gone.exit_code == 0 and "2 sessioner och nycklar avslutade" in gone.output
        assert access.session_person(db, session, dt.timedelta(hours=1)) is None
        missing = run.invoke(cli, ["people", "assign", "finns-inte", "kultur"])
        assert missing.exit_code == 1 and "Traceback" not in missing.output
        assert "finns-inte" in missing.output
    finally:
        settings_module.settings.cache_clear()


def test_a_provider_that_is_down_gets_a_clear_page(tmp_path: Path) -> None:
    """The identity provider cannot be reached: a page that says so (503), no traceback."""
    from agreements.simulate import free_port
    from models.db import migrate

    config = Settings(
        data_dir=tmp_path,
        oidc_issuer=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        oidc_client_id="avtal",
    )
    migrate(config.db_url())
    client = TestClient(create_app(config), client=("192.0.2.90", 50000))  # no Temporal needed
    down = client.get("/login/oidc", follow_redirects=False)
    assert down.status_code == 503
    assert "Identitetsleverantören går inte att nå just nu" in down.text
    assert "Traceback" not in down.text


def test_a_personal_calendar_follows_the_persons_roles(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    """Each person's own feed holds the coming milestones of the agreements they may read,
    with an alarm; Social's coordinator gets none of Kultur's; leaving Kultur empties it."""
    from icalendar import Calendar

    config, app = site
    db = engine(config.db_url())
    with TestClient(app, client=("192.0.2.100", 50000)) as anna:
        person(anna, provider, "anna")
        settled(anna, "/a/planteringen", "IOP Planteringen")
        link = re.search(r'href="(/me/calendar\.ics\?[^"]+)"', anna.get("/me").text)
        assert link is not None
        feed = html.unescape(link.group(1))
        events = Calendar.from_ical(anna.get(feed).content).walk("VEVENT")
        assert events and all("IOP Planteringen" in str(e["summary"]) for e in events)
        assert all(e.walk("VALARM") for e in events)
        assert anna.get(feed.replace("key=", "key=0")).status_code == 404
        access.remove(db, "anna@lund.se", "kultur")
        assert Calendar.from_ical(anna.get(feed).content).walk("VEVENT") == []
        access.grant(db, "anna@lund.se", "kultur", PersonRole.coordinator)
    with TestClient(app, client=("192.0.2.101", 50000)) as bo:
        person(bo, provider, "bo")
        link = re.search(r'href="(/me/calendar\.ics\?[^"]+)"', bo.get("/me").text)
        assert link is not None
        assert Calendar.from_ical(bo.get(html.unescape(link.group(1))).content).walk("VEVENT") == []


def test_a_person_chooses_the_language_of_their_weekly_email(
    site: tuple[Settings, FastAPI], provider: str
) -> None:
    config, app = site
    db = engine(config.db_url())
    with TestClient(app, client=("192.0.2.41", 50000)) as bo:
        person(bo, provider, "bo")
        me = bo.get("/me")
        assert "Varje måndag 07:00" in me.text and 'value="sv" selected' in me.text
        who = access.person_by_email(db, "bo@lund.se")
        assert who is not None and who.person_id is not None
        assert access.email_language(db, who.person_id) == "sv"
        forged = bo.post("/me/language", data={"csrf": "x", "language": "en"})
        assert forged.status_code == 403
        odd = bo.post("/me/language", data={"csrf": csrf_of(me.text), "language": "de"})
        assert odd.status_code == 400
        chosen = bo.post("/me/language", data={"csrf": csrf_of(me.text), "language": "en"})
        assert chosen.status_code == 200 and 'value="en" selected' in chosen.text
        assert access.email_language(db, who.person_id) == "en"
