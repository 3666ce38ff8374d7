"""What an operator watches: the metrics a worker serves in Prometheus format (the SDK's and
the service's, seen to move as an agreement sends its first emails and decisions are
applied and refused), and readiness (/readyz) that names what is wrong.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from agreements import logs
from agreements.simulate import free_port
from agreements.web.app import create_app
from models.config import Settings
from tests.conftest import TOKEN, eventually
from tests.mail import signing_requests
from tests.test_browser import settings_here
from tests.test_documents import start_signing
from tests.test_web import AUTH, PLANTERINGEN
from tests.test_worker import AGREEMENTS

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(address: str) -> dict[str, float]:
    """The metrics served at `address`: each sample by its name and labels as written."""
    answer = httpx.get(f"http://{address}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    samples: dict[str, float] = {}
    for line in answer.text.splitlines():
        found = SAMPLE.match(line)
        if found and not line.startswith("#"):
            name, labels, value = found.groups()
            samples[name + (labels or "")] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include these."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if key.split("{")[0] == name and all(w in key for w in wanted)
    )


@pytest.fixture
def metrics_address(monkeypatch: pytest.MonkeyPatch) -> str:
    """A free loopback address for the worker the next fixture starts to serve metrics at."""
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("AGREEMENTS_METRICS_ADDRESS", address)
    return address


def test_metrics_move_as_an_agreement_sends_its_first_emails_and_decisions_are_made(
    metrics_address: str, web: tuple[TestClient, Path]
) -> None:
    client, _ = web
    before = scrape(metrics_address)
    assert any(key.startswith("temporal_") for key in before), sorted(before)[:20]
    assert total(before, "agreements_emails_total", template="signature_request") == 0

    created = client.post("/api/agreements", content=PLANTERINGEN, headers=AUTH)
    assert created.status_code == 201, created.text
    start_signing(client, "planteringen")
    again = client.post("/api/agreements/planteringen/signing", headers=AUTH)
    assert again.status_code == 409  # a round is running: refused

    def emails_counted() -> bool:
        now = scrape(metrics_address)
        return total(now, "agreements_emails_total", template="signature_request") >= 6

    eventually(emails_counted, "the signing invitations counted", 30)
    after = scrape(metrics_address)
    sent = total(after, "agreements_emails_total", template="signature_request", outcome="sent")
    assert sent == 6  # planteringen's six signatories, each invited once
    assert total(after, "agreements_decisions_total", kind="start_signing", outcome="applied") == 1
    assert total(after, "agreements_decisions_total", kind="start_signing", outcome="refused") == 1
    applied = total(after, "agreements_decisions_total", outcome="applied")
    assert applied >= 2  # the prerequisites confirmed too
    assert total(after, "temporal_activity_execution_latency_count") > total(
        before, "temporal_activity_execution_latency_count"
    )


def test_ready_names_what_is_wrong(web: tuple[TestClient, Path], tmp_path: Path) -> None:
    client, _ = web
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ready"] is True and body["database"] == "ok" and body["temporal"] == "ok"
    assert body["workers"] in ("1 polling", "2 polling")
    assert client.get("/healthz").text == "ok"

    config = client.app.state.config  # type: ignore[attr-defined]
    nobody = config.model_copy(update={"task_queue": "ingen-arbetare-har"})
    with TestClient(create_app(nobody), client=("127.0.0.1", 50000)) as lonely:
        empty = lonely.get("/readyz")
        assert empty.status_code == 503
        assert empty.json()["workers"] == "no worker polls the task queue ingen-arbetare-har"
        assert empty.json()["database"] == "ok"

    broken = config.model_copy(
        update={
            "database_url": f"postgresql+psycopg://avtal:hemligt-losen@127.0.0.1:{free_port()}/avtal"
        }
    )
    with TestClient(create_app(broken), client=("127.0.0.1", 50000)) as lost:
        gone = lost.get("/readyz")
        assert gone.status_code == 503
        assert gone.json()["database"].startswith("the database does not answer")
        assert TOKEN not in gone.text and "hemligt-losen" not in gone.text


def test_the_log_is_json_lines_that_name_the_agreement_and_hold_no_secret(
    tmp_path: Path,
) -> None:
    """`agreements up` with its log going to a file (not a terminal): every log line is a JSON
    object with time, level, logger and message; the worker says it is ready at start;
    lines from an agreement's activities name the agreement; no signing link's token, API
    token or email address is in the log."""
    env, base = settings_here(AGREEMENTS_METRICS_ADDRESS="")
    mail = tmp_path / "data" / "mail"
    log = tmp_path / "up.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [str(AGREEMENTS), "up"],
            env={**os.environ, **env},
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            eventually(lambda: answers(base + "/healthz"), "the service", 60)
            key = env["AGREEMENTS_API_TOKEN"]
            api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
            assert api.post("/api/agreements", content=PLANTERINGEN).status_code == 201
            start = api.get("/api/agreements/planteringen").json()["prerequisites_missing"]
            assert api.post("/api/agreements/planteringen/prerequisites", json={"keys": start})
            assert api.post("/api/agreements/planteringen/signing").status_code == 200
            eventually(lambda: len(signing_requests(mail)) >= 6, "the invitations", 30)
            eventually(lambda: "readiness:" in log.read_text(), "the worker's readiness", 30)
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 0
    out = log.read_text()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    ready = [r["message"] for r in records if r["message"].startswith("readiness:")]
    assert ready[0] == "readiness: ready: database, Temporal, 1 worker(s) polling", ready
    steps = [r for r in records if r["message"].startswith("step:")]
    assert steps and {r.get("agreement") for r in steps} == {"planteringen"}
    assert {r.get("activity") for r in steps} == {"carry_out_step"}
    tokens = [url.rsplit("/", 1)[-1] for _, _, url in signing_requests(mail)]
    assert len(tokens) == 6 and not any(token in out for token in tokens)
    assert env["AGREEMENTS_API_TOKEN"] not in out
    assert not re.search(r"[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9-]+\.[A-Za-z.]{2,}", out), out


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_log_line_is_redacted_and_carries_its_workflow() -> None:
    out = io.StringIO()
    assert logs.configure(Settings(log_format="json"), out) == "json"
    logging.getLogger("agreements.check").warning(
        "token %s, secret whsec_QUJD==, link /sign/eyJ0.abc?x=1, %s, postgresql://u:pw@db/a",
        "avt_0a1b_secretpart",
        "Anna.Berg@lund.se",
    )
    workflow_log = logging.LoggerAdapter(
        logging.getLogger("temporalio.workflow"),
        {"temporal_workflow": {"workflow_id": "agreement-lund-radrum-round-2", "run_id": "r"}},
    )
    workflow_log.info("round over")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == (
        "token avt_…, secret whsec_…, link /sign/…?x=1, A…@lund.se, postgresql://u:…@db/a"
    )
    assert second["agreement"] == "lund-radrum" and second["message"] == "round over"
    assert logs.configure(Settings(log_format="text"), io.StringIO()) == "text"


def test_simulate_writes_the_metrics_a_worker_would_serve_after_the_life(tmp_path: Path) -> None:
    """`agreements simulate --metrics FILE`: the Prometheus text after the whole life, with
    the emails counted as the simulation lists them and the decisions the life took."""
    out = tmp_path / "metrics.txt"
    example = Path(__file__).resolve().parent.parent / "examples" / "kristianstad-gamlegarden.toml"
    done = subprocess.run(
        [str(AGREEMENTS), "simulate", str(example), "--json", "--metrics", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    life = json.loads(done.stdout)
    samples: dict[str, float] = {}
    for line in out.read_text().splitlines():
        found = SAMPLE.match(line)
        if found and not line.startswith("#"):
            name, labels, value = found.groups()
            samples[name + (labels or "")] = float(value)
    assert total(samples, "agreements_emails_total", outcome="sent") == len(life["emails"])
    assert total(samples, "agreements_decisions_total", kind="sign_paper", outcome="applied") == 3
    assert total(samples, "agreements_decisions_total", kind="start_signing") == 1
    assert total(samples, "temporal_workflow_task_execution_latency_count") > 0
