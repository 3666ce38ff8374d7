"""What a security reviewer tries first, each answered as it should be: security headers on
every answer; credentials of any text refused (401, 403, 404), never a 500; a body too
large refused before it is read; spreadsheet formulas in the CSV made text; the API pages
behind login with no script from elsewhere; a forwarded client address believed only from
a trusted proxy; and no start beyond loopback on a default or short secret."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from agreements import ops
from agreements.simulate import free_port
from agreements.up import refuse_weak_secrets, web_config
from agreements.web.app import create_app
from agreements.web.security import MAX_BODY, same
from models.config import Settings
from models.plan import MilestoneKind, MilestoneState, MilestoneStatus
from models.records import AgreementRecord
from tests.conftest import TOKEN
from tests.test_web import AUTH

HEADERS = {
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cache-control",
}


def test_every_kind_of_answer_carries_the_security_headers(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    answers = {
        "login page": client.get("/login"),
        "api": client.get("/api/agreements", headers=AUTH),
        "api refused": client.get("/api/agreements"),
        "signing link": client.get("/sign/nonsense.mac"),
        "not found": client.get("/no/such/page"),
    }
    for what, answer in answers.items():
        missing = HEADERS - set(answer.headers)
        assert not missing, f"{what}: {missing}"
        assert answer.headers["referrer-policy"] == "no-referrer", what
        assert answer.headers["x-frame-options"] == "DENY", what
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], what
        assert "strict-transport-security" not in answer.headers  # served over plain HTTP
    # The pages run only the service's own script file: nothing inline, nothing from elsewhere.
    policy = answers["login page"].headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["connect-src"] == "'self'"


NOT_ASCII = "Bearer åäö–€".encode()


def test_credentials_of_any_text_are_refused_never_an_error(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    assert client.get("/api/agreements", headers={"Authorization": NOT_ASCII}).status_code == 401
    cookie = {"Cookie": "avtal_session=åäö".encode()}
    assert client.get("/", headers=cookie, follow_redirects=False).status_code == 303  # login
    wrong = client.post("/login", data={"token": "nyckel-åäö"})
    assert wrong.status_code == 401 and "Fel nyckel" in wrong.text
    assert client.get("/a/planteringen/calendar.ics", params={"key": "åäö"}).status_code == 404
    assert client.get("/sign/åäö.åäö").status_code == 403
    login = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert login.status_code == 303
    forged = client.post("/a/planteringen/prerequisites", data={"csrf": "åäö"})
    assert forged.status_code == 403
    assert same("åäö", "åäö") and not same("åäö", "aao") and not same(None, "x")
    assert not same("\ud800", "x")  # a lone surrogate, as a broken client may send


def test_a_body_too_large_is_refused_before_it_is_read(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    big = b"x" * (MAX_BODY + 1)
    answer = client.post("/api/agreements", content=big, headers=AUTH)
    assert answer.status_code == 413
    assert answer.json()["code"] == "too-large"
    assert answer.json()["detail"] == "Begäran är för stor: högst 1024 KiB tas emot."
    assert "x-frame-options" in answer.headers

    def chunks() -> Any:  # no Content-Length: counted as it streams in
        for _ in range(3):
            yield b"x" * (MAX_BODY // 2)

    streamed = client.post("/api/agreements", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    english = client.post("/api/agreements", content=big, headers={**AUTH, "Accept-Language": "en"})
    assert english.json()["detail"] == "The request is too large: at most 1024 KiB is taken."


def test_a_huge_horizon_is_an_answer_not_an_error(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    assert client.get("/api/upcoming", params={"days": 999999999999}, headers=AUTH).status_code in (
        200,
        422,
    )
    client.post("/login", data={"token": TOKEN})
    for path in ("/upcoming", "/upcoming.csv"):
        assert client.get(path, params={"days": 999999999999}).status_code in (200, 422), path
        assert client.get(path, params={"days": "9" * 5000}).status_code == 422, path


def test_a_cell_a_spreadsheet_would_run_is_text() -> None:
    record = AgreementRecord(
        id="x",
        title='=HYPERLINK("http://evil.example","klicka")',
        reference="@SUM(A1)",
        language="sv",
        state="active",
        terms_sha256="0" * 64,
        workflow_id="agreement-x",
        start=dt.date(2030, 1, 1),
        end=dt.date(2030, 12, 31),
    )
    row = MilestoneState(
        id="m",
        kind=MilestoneKind.invoice,
        date=dt.date(2030, 3, 1),
        effective_date=dt.date(2030, 3, 1),
        rule="forward",
        title="-1+1",
        status=MilestoneStatus.due,
        amount=5000,
        number="+46 70",
    )
    _, cells = csv.reader(io.StringIO(ops.upcoming_csv("sv", [(record, row)], {})), delimiter=";")
    assert cells[0] == '\'=HYPERLINK("http://evil.example","klicka")'
    assert cells[1] == "'@SUM(A1)"
    assert cells[5] == "'-1+1"
    assert cells[6] == "5000"  # our own numbers stay numbers
    assert cells[11] == "'+46 70"
    assert ops.inert("Avtal 2030") == "Avtal 2030"


def test_the_api_pages_are_behind_login_and_load_nothing_from_elsewhere(
    web: tuple[TestClient, Path],
) -> None:
    client, _ = web
    assert client.get("/docs", follow_redirects=False).status_code == 303
    assert client.get("/openapi.json", follow_redirects=False).status_code == 303
    docs = client.get("/docs", headers=AUTH)
    assert docs.status_code == 200
    assert "https://" not in docs.text and "/static/docs/swagger-ui-bundle.js" in docs.text
    assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    assert "/api/agreements" in client.get("/openapi.json", headers=AUTH).json()["paths"]


def test_a_forwarded_address_counts_only_from_a_trusted_proxy() -> None:
    """A real uvicorn on loopback, configured as `agreements up` configures it, in front
    of an application that answers with the client address it was given."""

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        host = (scope.get("client") or ("", 0))[0]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": host.encode()})

    def seen(trusted: str) -> str:
        config = Settings(web_port=free_port(), trusted_proxies=trusted)
        server = uvicorn.Server(web_config(config, echo))
        server.config.lifespan = "off"
        thread = threading.Thread(target=lambda: asyncio.run(server.serve()))
        thread.start()
        try:
            for _ in range(100):
                if server.started:
                    break
                threading.Event().wait(0.05)
            url = f"http://127.0.0.1:{config.web_port}/"
            return httpx.get(url, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10).text
        finally:
            server.should_exit = True
            thread.join(timeout=10)

    assert seen("") == "127.0.0.1"  # by default no proxy is believed, loopback neither
    assert seen("127.0.0.1") == "203.0.113.9"


def test_no_start_beyond_loopback_on_a_default_or_short_secret() -> None:
    strong = "k" * 40
    refuse_weak_secrets(Settings(web_host="127.0.0.1"))  # a trial on loopback: allowed
    with pytest.raises(ops.OperationError) as default:
        refuse_weak_secrets(Settings(web_host="0.0.0.0", signing_secret=strong))
    assert default.value.code == "weak-secret"
    assert default.value.params["name"] == "AGREEMENTS_API_TOKEN"
    with pytest.raises(ops.OperationError) as short:
        refuse_weak_secrets(Settings(web_host="0.0.0.0", api_token=strong, signing_secret="kort"))
    assert short.value.params["name"] == "AGREEMENTS_SIGNING_SECRET"
    refuse_weak_secrets(Settings(web_host="0.0.0.0", api_token=strong, signing_secret=strong))


def test_failed_sign_ins_are_slowed_and_logged_without_what_was_sent(
    service_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Five wrong keys from one address within a quarter of an hour, and the sixth try is
    refused whatever it sends (the right key too), with when to try again; the API's
    token counts the same way. Each failure is logged by address, never the key."""
    config = Settings(
        temporal_address=service_env["AGREEMENTS_TEMPORAL_ADDRESS"],
        temporal_namespace=service_env["AGREEMENTS_TEMPORAL_NAMESPACE"],
        data_dir=Path(service_env["AGREEMENTS_DATA_DIR"]),
        api_token=TOKEN,
    )
    caplog.set_level("WARNING", logger="agreements.web")
    app = create_app(config)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        for n in range(5):
            assert client.post("/login", data={"token": f"gissning-{n}"}).status_code == 401
        blocked = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert blocked.status_code == 429
        assert "För många misslyckade försök härifrån: försök igen om 15 minuter." in blocked.text
        assert 840 < int(blocked.headers["retry-after"]) <= 900
        api = client.get("/api/agreements", headers=AUTH)  # the right token, same address
        assert api.status_code == 429 and api.json()["code"] == "too-many-attempts"
    with TestClient(app, client=("127.0.0.2", 50000)) as elsewhere:  # another address here
        assert elsewhere.get("/api/agreements", headers=AUTH).status_code == 200
    failures = [r.getMessage() for r in caplog.records if "failed login" in r.getMessage()]
    assert failures[-1] == "failed login from 127.0.0.1 (5 in 15 min)"
    assert not any("gissning" in r.getMessage() for r in caplog.records)
