"""Taking on an agreement that is under way: one whose term has started is taken on only
with the day it was signed (the command line's --signed, the API's ?signed=, the page's
"Redan undertecknat den"), as signed and sending nothing for what is past; one whose term
is over is refused. The rule is `ops.taken_on`, which every way of creating goes through.
Also `agreements shift`, which moves an example forward to be signed today."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agreements import ops
from agreements.cli import app, future_text, years_to_future
from models.agreement import Agreement
from models.loader import load_agreement, loads_agreement
from tests.conftest import TOKEN
from tests.reliability.harness import idle, wait_until
from tests.test_web import until
from workflows.agreement import workflow_id

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TODAY = ops.stockholm_today()
runner = CliRunner()


def example(name: str) -> Agreement:
    return load_agreement(EXAMPLES / f"{name}.toml")


def under_way_text(name: str) -> str:
    """An example moved whole years so that its term started within the past year (before
    today), and is not over."""
    text = (EXAMPLES / f"{name}.toml").read_text(encoding="utf-8")
    start = loads_agreement(text).term.start
    years = years_to_future(start, TODAY - dt.timedelta(days=1)) - 1
    return future_text(text, years)


# The rule, without a server ------------------------------------------------------------------


def test_a_term_that_has_started_needs_the_day_it_was_signed() -> None:
    lund = example("lund-radrum")
    with pytest.raises(ops.OperationError) as refused:
        ops.taken_on(lund, today=dt.date(2020, 3, 1), flag="--signed YYYY-MM-DD")
    message = str(refused.value)
    assert "lund-radrum: its term started on 2019-07-01" in message
    assert "--signed YYYY-MM-DD" in message and "nothing is sent" in message
    taken = ops.taken_on(lund, dt.date(2019, 6, 10), today=dt.date(2020, 3, 1))
    assert taken.signing.signed == dt.date(2019, 6, 10)
    assert lund.signing.signed is None  # the terms given are not changed
    # The file can say it too.
    signed = lund.model_copy(
        update={"signing": lund.signing.model_copy(update={"signed": dt.date(2019, 6, 10)})}
    )
    assert ops.taken_on(signed, today=dt.date(2020, 3, 1)).signing.signed == dt.date(2019, 6, 10)


def test_a_term_not_started_or_starting_today_can_be_a_draft() -> None:
    lund = example("lund-radrum")
    assert ops.taken_on(lund, today=dt.date(2019, 6, 1)).signing.signed is None
    assert ops.taken_on(lund, today=dt.date(2019, 7, 1)).signing.signed is None  # its first day
    # Signed ahead of its term: taken on as signed.
    early = ops.taken_on(lund, dt.date(2019, 6, 10), today=dt.date(2019, 6, 20))
    assert early.signing.signed == dt.date(2019, 6, 10)


def test_a_term_that_is_over_is_refused() -> None:
    lund = example("lund-radrum")
    for signed in (None, dt.date(2019, 6, 10)):
        with pytest.raises(ops.OperationError) as refused:
            ops.taken_on(lund, signed, today=dt.date(2021, 7, 1))
        assert "its term ran 2019-07-01 – 2021-06-30 and is over" in str(refused.value)
    # Its last day is not over.
    ops.taken_on(lund, dt.date(2019, 6, 10), today=dt.date(2021, 6, 30))
    # Opt-in: without an extension approved in the service the term ended on its first end.
    with pytest.raises(ops.OperationError) as opt_in:
        ops.taken_on(example("planteringen"), dt.date(2024, 4, 17), today=dt.date(2025, 3, 1))
    assert "2024-01-01 – 2024-12-31 and is over" in str(opt_in.value)
    assert "give the end it now runs to as term.end" in str(opt_in.value)
    # Opt-out: it renews unless notice is given, so it runs to its last possible end.
    ops.taken_on(example("helsingborg-inva-sam"), dt.date(2024, 4, 26), today=dt.date(2027, 1, 1))


def test_a_signing_day_in_the_future_is_refused() -> None:
    with pytest.raises(ops.OperationError) as refused:
        ops.taken_on(example("lund-radrum"), dt.date(2020, 3, 2), today=dt.date(2020, 3, 1))
    assert "cannot be in the future: 2020-03-02 is after today, 2020-03-01" in str(refused.value)


def test_the_command_line_refuses_before_it_connects(tmp_path: Path) -> None:
    """No service needed to be told: the rule is applied before connecting (the address
    below has nothing listening)."""
    env = {"AGREEMENTS_TEMPORAL_ADDRESS": "127.0.0.1:1", "AGREEMENTS_DATA_DIR": str(tmp_path)}
    over = runner.invoke(app, ["create", str(EXAMPLES / "lund-radrum.toml")], env=env)
    assert over.exit_code == 1
    assert "avtalstiden var 2019-07-01 – 2021-06-30 och är slut" in over.output
    path = tmp_path / "lund.toml"
    path.write_text(under_way_text("lund-radrum"), encoding="utf-8")
    started = runner.invoke(app, ["create", str(path)], env=env)
    assert started.exit_code == 1 and "(--signed YYYY-MM-DD)" in started.output
    bad = runner.invoke(app, ["create", str(path), "--signed", "10 juni"], env=env)
    assert bad.exit_code == 1 and "--signed: '10 juni' är inte ett datum (ÅÅÅÅ-MM-DD)" in bad.output
    today = ops.stockholm_today()  # now, not at import: a run may pass midnight
    ahead = (today + dt.timedelta(days=2)).isoformat()
    future = runner.invoke(app, ["create", str(path), "--signed", ahead], env=env)
    assert future.exit_code == 1 and "kan inte ligga i framtiden" in future.output
    # With the day it was signed it goes on to the service (here: not running).
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    signed = runner.invoke(app, ["create", str(path), "--signed", yesterday], env=env)
    assert signed.exit_code == 1 and "når inte Temporal" in signed.output
    assert "Traceback" not in over.output + started.output + signed.output


# agreements shift -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [p.stem for p in sorted(EXAMPLES.glob("*.toml"))])
def test_shift_moves_every_date_whole_years_to_start_after_today(name: str) -> None:
    result = runner.invoke(app, ["shift", str(EXAMPLES / f"{name}.toml")])
    assert result.exit_code == 0, result.output
    moved = loads_agreement(result.stdout)
    original = example(name)
    years = moved.term.start.year - original.term.start.year
    assert moved.term.start > TODAY >= moved.term.start.replace(year=moved.term.start.year - 1)
    assert result.stdout.startswith(f"# Every date moved {years} years (`agreements shift`)")
    # Every date in the data moved by the same years; nothing else changed.
    before = tomllib.loads((EXAMPLES / f"{name}.toml").read_text(encoding="utf-8"))
    after = tomllib.loads(result.stdout)

    def moved_by(value: object) -> object:
        if isinstance(value, dt.date):
            return value.replace(year=value.year + years)
        if isinstance(value, dict):
            return {k: moved_by(v) for k, v in value.items()}
        if isinstance(value, list):
            return [moved_by(v) for v in value]
        return value

    assert after == moved_by(before)
    # The comments still quote the original agreement.
    comments = [line for line in result.stdout.splitlines() if line.startswith("#")][2:]
    original_comments = [
        line
        for line in (EXAMPLES / f"{name}.toml").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    ]
    assert comments == original_comments
    # The moved copy can be created as a draft today.
    assert ops.taken_on(moved).signing.signed is None


def test_shift_takes_a_number_of_years_and_names_a_bad_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["shift", str(EXAMPLES / "lund-radrum.toml"), "--years", "10"])
    assert result.exit_code == 0
    assert loads_agreement(result.stdout).term.start == dt.date(2029, 7, 1)
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "x"\n', encoding="utf-8")
    refused = runner.invoke(app, ["shift", str(bad)], env={"AGREEMENTS_LANGUAGE": "en"})
    assert refused.exit_code == 1 and "coordinator: missing" in refused.output


# The API and the page, against the running service ---------------------------------------------


def outbox(client: TestClient, agreement_id: str) -> list[dict[str, object]]:
    answer = client.get(f"/api/agreements/{agreement_id}/outbox", headers=AUTH)
    assert answer.status_code == 200
    rows: list[dict[str, object]] = answer.json()
    return rows


def test_the_api_takes_on_an_agreement_under_way_with_signed(
    web: tuple[TestClient, Path],
) -> None:
    client, _ = web
    text = under_way_text("lund-radrum")
    started = loads_agreement(text).term.start
    refused = client.post("/api/agreements", content=text, headers=AUTH)
    assert refused.status_code == 422
    assert f"avtalstiden började {started}" in refused.json()["detail"]
    assert "?signed=YYYY-MM-DD" in refused.json()["detail"]
    over = client.post(
        "/api/agreements",
        params={"signed": "2019-06-10"},
        content=(EXAMPLES / "lund-radrum.toml").read_bytes(),
        headers=AUTH,
    )
    assert over.status_code == 422 and "och är slut" in over.json()["detail"]
    not_a_date = client.post(
        "/api/agreements", params={"signed": "10 juni"}, content=text, headers=AUTH
    )
    assert not_a_date.status_code == 422
    signed_on = started - dt.timedelta(days=21)
    created = client.post(
        "/api/agreements", params={"signed": signed_on.isoformat()}, content=text, headers=AUTH
    )
    assert created.status_code == 201, created.text
    assert created.json()["signed_on"] == signed_on.isoformat()
    assert created.json()["round"] is None  # no signing round
    active = until(client, "lund-radrum", "active")
    assert active["next"], "its coming milestones"
    # Nothing is sent for what is past: no email planned before it was taken on, once its
    # first steps are carried out (whatever they sent is in the outbox by then).
    config = client.app.state.config  # type: ignore[attr-defined]
    wait_until(lambda: idle(config, [workflow_id("lund-radrum")]), 30, "its first steps")
    handed_over = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    early = [
        row
        for row in outbox(client, "lund-radrum")
        if dt.datetime.fromisoformat(str(row["planned_at"])).replace(tzinfo=dt.UTC) < handed_over
    ]
    assert early == []
    assert not [r for r in outbox(client, "lund-radrum") if r["template"] == "signature_request"]


def test_the_page_asks_whether_it_is_already_signed(web: tuple[TestClient, Path]) -> None:
    client, _ = web
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    home = client.get("/")
    assert 'name="signed" type="date"' in home.text and "Redan undertecknat den" in home.text
    assert "Already signed on" in client.get("/?lang=en").text
    client.get("/?lang=sv")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', home.text)
    assert csrf is not None
    text = under_way_text("kristianstad-gamlegarden")
    refused = client.post("/create", data={"csrf": csrf.group(1), "terms": text, "signed": ""})
    assert refused.status_code == 422
    assert "avtalstiden började" in refused.text and "«Redan undertecknat den»" in refused.text
    bad = client.post("/create", data={"csrf": csrf.group(1), "terms": text, "signed": "igår"})
    assert bad.status_code == 422 and "är inte ett datum" in bad.text
    over = client.post(
        "/create",
        data={
            "csrf": csrf.group(1),
            "terms": (EXAMPLES / "lund-radrum.toml").read_text(encoding="utf-8"),
            "signed": "2019-06-10",
        },
    )
    assert over.status_code == 422 and "och är slut" in over.text
    signed_on = loads_agreement(text).term.start
    created = client.post(
        "/create",
        data={"csrf": csrf.group(1), "terms": text, "signed": signed_on.isoformat()},
        follow_redirects=False,
    )
    assert created.status_code == 303 and created.headers["location"] == (
        "/a/kristianstad-gamlegarden"
    )
    data = until(client, "kristianstad-gamlegarden", "active")
    assert data["signed_on"] == signed_on.isoformat()
