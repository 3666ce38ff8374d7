"""The signing link under abuse, and the tokens it carries, against a running service (real
Temporal dev server, worker process, mail sink, SQLite).

A link is read-only until its signer acts: reloading it a thousand times with a huge user
agent, and a hundred refused posts, leave the round's history as small as one "opened"
makes it. A signer's token never leaves the round and its signing page: no API answer, no
`--json` output of the CLI and no event log row carries one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from typer.testing import CliRunner

import models.config as config
from agreements import ops
from agreements.cli import app as cli_app
from agreements.simulate import started
from emails.links import make_link, read_link
from models.agreement import SigningMethod
from models.config import Settings
from models.lifecycle import RoundAnswer, RoundInfo
from models.loader import load_agreement
from models.prerequisites import CHECKLIST
from models.schedule import dates
from tests.conftest import ROOT, TOKEN
from tests.mail import signing_requests
from tests.test_web import AUTH, PLANTERINGEN
from workflows.agreement import AgreementWorkflow, ConfirmPrerequisites, Snapshot, StartSigning
from workflows.signing import SignatureRoundWorkflow, SignRequest

SECRET = Settings().signing_secret.get_secret_value()
URL = "/api/agreements/planteringen"
PREREQUISITES = {"keys": ["no-market", "not-an-order", "budget-plan", "follow-up-plan"]}

# The round's whole history may hold at most this many events after the abuse below. A
# sequential round of six, once its first signing request is out and the signer has opened
# the link once, measured 30 (start, the request, the event log writes, one "opened" update
# and what it wakes). Before, every reload wrote an update answered with the whole round:
# a thousand reloads added thousands of events and megabytes.
HISTORY_BOUND = 60
# What one "opened" may add: the update (accepted, completed), the workflow tasks around
# it and its event log write. Measured 13; fifty more views added 0.
OPENED_BOUND = 16


def settings(service_env: dict[str, str]) -> Settings:
    return Settings(
        temporal_address=service_env["AGREEMENTS_TEMPORAL_ADDRESS"],
        temporal_namespace=service_env["AGREEMENTS_TEMPORAL_NAMESPACE"],
        data_dir=Path(service_env["AGREEMENTS_DATA_DIR"]),
        smtp_port=int(service_env["AGREEMENTS_SMTP_PORT"]),
        api_token=TOKEN,
    )


def temporal(service_env: dict[str, str], work: Any) -> Any:
    """Run `work(client)` against the dev server with a client of its own."""

    async def go() -> Any:
        return await work(await ops.connect(settings(service_env)))

    return asyncio.run(go())


def history_length(service_env: dict[str, str], workflow_id: str) -> tuple[int, list[Any]]:
    """The number of events in a workflow's history, and the inputs of its updates."""

    async def work(client: Any) -> tuple[int, list[Any]]:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        inputs = []
        for event in history.events:
            if event.HasField("workflow_execution_update_accepted_event_attributes"):
                request = event.workflow_execution_update_accepted_event_attributes
                args = request.accepted_request.input.args.payloads
                inputs += await client.data_converter.decode(args, [dict])
        return len(history.events), inputs

    result: tuple[int, list[Any]] = temporal(service_env, work)
    return result


def requests_so_far(mail: Path, count: int) -> list[tuple[str, str]]:
    """(signer, link path) of every signing request in the sink, once there are `count`."""
    for _ in range(400):
        found = [(s, url[url.index("/sign/") :]) for _, s, url in signing_requests(mail)]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} signing requests did not arrive")


def state(client: TestClient) -> dict[str, Any]:
    answer = client.get(URL, headers=AUTH)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def settled(client: TestClient, *wanted: str) -> dict[str, Any]:
    for _ in range(200):
        data = state(client)
        if data["state"] in wanted:
            return data
        time.sleep(0.05)
    raise AssertionError(f"the agreement did not become {wanted}: {state(client)}")


def start(client: TestClient, text: str) -> None:
    assert client.post("/api/agreements", content=text, headers=AUTH).status_code == 201
    assert client.post(f"{URL}/prerequisites", json=PREREQUISITES, headers=AUTH).status_code == 200
    assert client.post(f"{URL}/signing", headers=AUTH).json()["state"] == "signing"


def test_a_reloaded_link_and_refused_posts_leave_the_round_small(
    web: tuple[TestClient, Path], service_env: dict[str, str]
) -> None:
    client, mail = web
    start(client, PLANTERINGEN.replace('mode = "parallel"', 'mode = "sequential"', 1))
    [(first, path)] = requests_so_far(mail, 1)
    round_id = state(client)["round_workflow_id"]
    tokens: dict[str, str] = temporal(service_env, lambda c: ops.round_tokens(c, round_id))
    link = read_link(SECRET, path.removeprefix("/sign/"), dt.datetime.now(dt.UTC))
    assert tokens[first] == link.token and len(tokens) == 6
    expires = dt.datetime.fromtimestamp(link.expires, dt.UTC)
    agent = "Mozilla/5.0 (abuse) " + "x" * 5000

    # A thousand reloads: queries only, after the first one's "opened".
    began = time.monotonic()
    for _ in range(1000):
        page = client.get(path, headers={"User-Agent": agent})
        assert page.status_code == 200 and "Jag undertecknar" in page.text
    reloads = time.monotonic() - began

    # A hundred refused posts, each answered with a reason and changing nothing.
    second = next(s for s in tokens if s != first)
    not_yet = "/sign/" + make_link(SECRET, "planteringen", 1, second, tokens[second], expires)
    assert client.get(not_yet).status_code == 200  # a page, and no "opened" out of turn
    forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    too_long = "Nej. " + "för långt " * 250
    for _ in range(25):
        answer = client.post(path, data={"action": "decline", "reason": too_long})
        # Said in the signer's language (Swedish), and only in it.
        assert answer.status_code == 400 and "högst 2000 tecken" in answer.text
        assert "at most 2000 characters" not in answer.text
        answer = client.post(not_yet, data={"action": "sign"})
        assert answer.status_code == 409 and "inte deras tur att underteckna" in answer.text
        assert client.post(forged, data={"action": "sign"}).status_code == 403
        answer = client.post(path, data={"action": "decline", "reason": "   "})
        assert answer.status_code == 400

    length, updates = history_length(service_env, round_id)
    print(f"round history: {length} events after 1000 reloads in {reloads:.1f} s")
    assert length <= HISTORY_BOUND, length
    # One update in all, the first view's "opened", with the user agent cut to 300.
    assert [(u["token"], u["user_agent"]) for u in updates] == [(link.token, agent[:300])]
    info = temporal(service_env, lambda c: ops.current_round(c, "planteringen"))
    opened = [e for e in info.events if e.what == "opened"]
    assert [(e.signer, e.ip) for e in opened] == [(first, None)]  # once; shown without IP

    # The agreement runs on, and every signer signs in turn afterwards.
    described = temporal(
        service_env, lambda c: c.get_workflow_handle("agreement-planteringen").describe()
    )
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert state(client)["state"] == "signing"
    for count in range(1, 7):
        _, personal = requests_so_far(mail, count)[count - 1]
        assert client.get(personal).status_code == 200
        signed = client.post(personal, data={"action": "sign"})
        assert signed.status_code == 200 and "Din underskrift är registrerad" in signed.text
    signed_state = settled(client, "signed", "ended")  # the 2024 term is over: it ends
    assert signed_state["round"]["outcome"] == "completed"
    length_after, _ = history_length(service_env, round_id)
    print(f"round history: {length_after} events once all six have signed")


def test_one_opened_is_all_a_link_adds(
    web: tuple[TestClient, Path], service_env: dict[str, str]
) -> None:
    """The bound above, measured: what the first view adds, and that the next add nothing."""
    client, mail = web
    start(client, PLANTERINGEN)
    found = requests_so_far(mail, 6)
    round_id = state(client)["round_workflow_id"]
    _, path = found[0]
    time.sleep(1)  # the round's start-up work (requests, event log) is done
    before, _ = history_length(service_env, round_id)
    assert client.get(path).status_code == 200
    time.sleep(1)
    once, _ = history_length(service_env, round_id)
    for _ in range(50):
        assert client.get(path).status_code == 200
    time.sleep(1)
    after, _ = history_length(service_env, round_id)
    print(f"round history: {before} before, {once} after one view, {after} after 50 more")
    assert 0 < once - before <= OPENED_BOUND
    assert after == once


@pytest.fixture
def cli(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    config.settings.cache_clear()
    yield CliRunner()
    config.settings.cache_clear()


def test_no_token_leaves_the_round(
    web: tuple[TestClient, Path], service_env: dict[str, str], cli: CliRunner
) -> None:
    client, mail = web
    agent = "LeakCheck-Agent/1.0"
    outputs: dict[str, str] = {}

    def api(name: str, method: str, url: str, **kwargs: Any) -> Any:
        answer = client.request(method, url, headers=AUTH, **kwargs)
        assert answer.status_code in (200, 201), (name, answer.text)
        outputs[name] = answer.text
        return answer.json()

    def command(name: str, *args: str) -> Any:
        result = cli.invoke(cli_app, [*args, "--json"])
        assert result.exit_code == 0, (name, result.output)
        outputs[name] = result.stdout
        return json.loads(result.stdout)

    start(client, PLANTERINGEN)
    found = requests_so_far(mail, 6)
    personal = dict(found)
    sara = personal["sara.svensson@raddabarnen.example.se"]
    # Sara opens and signs from her link, Maria opens hers.
    assert client.get(sara, headers={"User-Agent": agent}).status_code == 200
    assert client.post(sara, data={"action": "sign"}, headers={"User-Agent": agent}).status_code
    maria = personal["maria.holm@helsingborg.example.se"]
    assert client.get(maria, headers={"User-Agent": agent}).status_code == 200
    today = dt.date.today().isoformat()
    paper = api(
        "api paper",
        "POST",
        f"{URL}/signing/paper",
        json={
            "signer": "patrik.karlsson@rfsisu.example.se",
            "signed_on": today,
            "recorded_by": "api",
        },
    )
    assert set(paper) == {"number", "purpose", "outcome", "signer", "status"}
    assert paper["status"] == "signed" and paper["outcome"] == "open"
    signers = [s for s, _ in found]
    command(
        "cli sign-paper", "sign-paper", "planteringen", "--signer", signers[-1], "--date", today
    )
    api("api list", "GET", "/api/agreements")
    shown = api("api show", "GET", URL)
    assert all(
        set(s) >= {"email", "status"} and "token" not in s for s in shown["round"]["signers"]
    )
    api("api outbox", "GET", f"{URL}/outbox")
    command("cli show", "show", "planteringen")
    command("cli list", "list")
    command("cli outbox", "outbox")
    command("cli outbox id", "outbox", "planteringen")
    # The coordinator cancels through the API; the snapshot now holds the round's result.
    cancel = api("api cancel", "POST", f"{URL}/signing/cancel", json={"reason": "Fel", "by": "api"})
    assert (cancel["outcome"], cancel["signer"]) == ("cancelled", None)
    ended = settled(client, "draft")
    outputs["api show after"] = json.dumps(ended)
    events = ended["round"]["events"]
    assert {"opened", "signed", "cancelled"} <= {e["what"] for e in events}
    assert all(e["ip"] is None and "user_agent" not in e for e in events)
    paper_event = next(e for e in events if e["method"] == "paper")
    # Whoever the body named, the server records who entered it: here the local key.
    assert paper_event["signed_on"] == today and paper_event["recorded_by"] == "local-key"
    command("cli show after", "show", "planteringen")
    # A second round, cancelled from the command line.
    api("api restart", "POST", f"{URL}/signing")
    found = requests_so_far(mail, 12)
    cancelled = command("cli sign-cancel", "sign-cancel", "planteringen", "--reason", "Igen")
    assert cancelled["number"] == 2 and cancelled["outcome"] == "cancelled"
    settled(client, "draft")
    api("api show last", "GET", URL)
    command("cli show last", "show", "planteringen")
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    page = client.get("/a/planteringen")
    assert page.status_code == 200
    outputs["agreement page"] = page.text

    # Every token of both rounds, from the emails and from the rounds' own input.
    now = dt.datetime.now(dt.UTC)
    tokens = {read_link(SECRET, p.removeprefix("/sign/"), now).token for _, p in found}
    for number in (1, 2):
        kept: dict[str, str] = temporal(
            service_env,
            lambda c, n=number: ops.round_tokens(c, f"agreement-planteringen-round-{n}"),
        )
        tokens |= set(kept.values())
    assert len(tokens) == 12 and all(len(t) >= 32 for t in tokens)
    rows = ops.events(settings(service_env), "planteringen")
    assert rows
    log = {
        f"event {r.id}": " ".join(str(v) for v in (r.event_key, r.actor, r.summary, r.data_json))
        for r in rows
    }
    for name, text in {**outputs, **log}.items():
        leaked = [t for t in tokens if t in text]
        assert not leaked, f"{name} carries a signer's token"
        if name == "agreement page":  # the coordinator's: in the signers' traces only
            before, _, section = text.partition("Varifrån signerarna agerade")
            text = before + section.partition("</details>")[2]
            assert agent in section
        assert agent not in text, f"{name} carries a signer's user agent"
    for name, text in outputs.items():  # the IP stays in the event log only
        assert '"ip": "127.0.0.1"' not in text and '"ip":"127.0.0.1"' not in text, name
    # The event log keeps who recorded a paper signature; a link signature's IP and user
    # agent are in its trace beside the log (signer_trace, which gallring weeds), not in it.
    signed = [
        json.loads(r.data_json) | {"actor": r.actor} for r in rows if r.kind == "signature.signed"
    ]
    assert any(d["method"] == "link" and "ip" not in d for d in signed), signed
    assert any(d["method"] == "paper" and d["actor"] == "local-key" for d in signed), signed
    traces = ops.signer_traces(settings(service_env), "planteringen")
    assert ("signature.signed", "sara.svensson@raddabarnen.example.se", "127.0.0.1", agent) in [
        (t.kind, t.signer, t.ip, t.user_agent) for t in traces
    ], traces


async def test_bad_input_is_refused_and_fails_nothing(tmp_path: Path) -> None:
    """Whatever a client sends the round (wrong shapes, forged tokens, huge strings, a
    future paper date, a blank reason), each action is refused with a reason before it is
    accepted: no failed workflow task, nothing in the history, and the round signs on.
    The time-skipping server, as in tests/test_decisions.py."""
    base = load_agreement(ROOT / "examples" / "lund-radrum.toml")
    agreement = base.model_copy(
        update={"signing": base.signing.model_copy(update={"method": SigningMethod.link})}
    )
    at = dt.datetime(2019, 6, 3, 9, 0, tzinfo=dates.STOCKHOLM)
    async with started(agreement, at, tmp_path) as (env, handle, _):
        await handle.execute_update(
            AgreementWorkflow.confirm_prerequisites, ConfirmPrerequisites(keys=list(CHECKLIST))
        )
        snap = await handle.execute_update("start_signing", StartSigning(), result_type=Snapshot)
        assert snap.round_workflow_id is not None
        assert snap.round is not None
        assert all("token" not in s.model_dump() for s in snap.round.signers)
        round_handle = env.client.get_workflow_handle(snap.round_workflow_id, result_type=RoundInfo)
        tokens = await ops.round_tokens(env.client, round_handle.id)
        first = next(iter(tokens))
        bad: list[tuple[str, Any]] = [
            ("open", {"token": 5}),
            ("open", "not a request"),
            ("open", {"token": "x" * 100_000}),
            ("sign", {"token": "forged"}),
            ("sign", {}),
            ("decline", {"token": tokens[first], "reason": ""}),
            ("decline", {"token": tokens[first], "reason": "   "}),
            ("decline", {"token": tokens[first], "reason": "x" * 2001}),
            ("sign_paper", {"signer": first, "signed_on": "2099-12-31", "recorded_by": "c"}),
            ("sign_paper", {"signer": first, "signed_on": "not a date", "recorded_by": "c"}),
            ("sign_paper", {"signer": "x" * 1000, "signed_on": "2019-06-03", "recorded_by": "c"}),
            ("sign_paper", {"signer": first, "signed_on": "2019-06-03", "recorded_by": ""}),
            ("cancel", {"reason": "", "by": "c"}),
            ("cancel", {"reason": "x", "by": "c" * 1000}),
            ("cancel", None),
            ("no_such_update", {}),
        ]
        for name, payload in bad:
            try:
                await round_handle.execute_update(name, payload, result_type=RoundAnswer)
            except WorkflowUpdateFailedError:
                continue
            raise AssertionError(f"{name} {str(payload)[:80]} was accepted")  # pragma: no cover
        # Queries with nonsense answer nothing or fail alone.
        assert await round_handle.query(SignatureRoundWorkflow.signer, "forged") is None
        with pytest.raises(WorkflowQueryFailedError):
            await round_handle.query("signer", {"a": 1})
        events = (await round_handle.fetch_history()).events
        accepted = [
            e for e in events if e.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert not accepted, "a refused action wrote to the history"
        # A long user agent and IP are cut, not refused; then everyone signs.
        answer = await round_handle.execute_update(
            SignatureRoundWorkflow.sign,
            SignRequest(token=tokens[first], ip="1" * 500, user_agent="u" * 5000),
        )
        assert answer.status is not None and answer.status.value == "signed"
        for email in list(tokens)[1:]:
            await round_handle.execute_update(
                SignatureRoundWorkflow.sign, SignRequest(token=tokens[email])
            )
        info: RoundInfo = await round_handle.result()
        assert info.outcome.value == "completed"
        assert all(e.ip is None for e in info.events)
        events = (await round_handle.fetch_history()).events
        failed = [e for e in events if e.HasField("workflow_task_failed_event_attributes")]
        assert not failed
