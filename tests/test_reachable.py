"""Every decision is reachable, once: each update of the agreement workflow and of the
signature round has a command, an API route and a form on the pages (or is said here why
not), and invoking each one reaches the workflow with the update it names.

The updates are read from the workflow classes, and the mapping below is an explicit dict
whose keys must equal them: a new update without an interface fails this test.

The invocations run against a stand-in Temporal client that records each update and
refuses it, so they need no server and check that the refusal's reason reaches the person
asking. The signers' own updates (`open`, `sign`, `decline`) are exposed only through the
personal signing link (/sign/{value}), not the API or the command line; that path is
exercised for real in tests/test_web.py::test_signers_sign_from_their_links.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer.main
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from temporalio import workflow
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner

import models.config as config
from agreements.cli import app as cli_app
from agreements.web.app import TEMPLATES, create_app
from models.agreement import DateRule
from models.config import Settings
from models.db import migrate
from models.loader import load_agreement
from models.plan import MilestoneKind, MilestoneState, MilestoneStatus
from tests.conftest import TOKEN
from tests.test_documents import pdf
from workflows.agreement import AgreementWorkflow
from workflows.signing import SignatureRoundWorkflow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REFUSAL = "the stand-in workflow refuses this"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ID = "planteringen"


@dataclass(frozen=True)
class Exposed:
    """Where one update is reachable. `cli`: the command's name and its arguments after
    the agreement id; `api`: method, path and body (dict: JSON, str: an agreement file);
    `page`: the form's action under /a/{id}/ and its fields. None: not exposed there, and
    `why` says why."""

    cli: tuple[str, ...] | None
    api: tuple[str, str, dict[str, Any] | str | None] | None
    page: tuple[str, dict[str, str]] | None
    why: str = ""
    # More page actions that reach the same update (the buttons of one form).
    more_pages: tuple[str, ...] = field(default_factory=tuple)


A = "/api/agreements/{agreement_id}"
TOML = "FILE"  # the agreement file, filled in by the tests
# A milestone of planteringen.toml: its id has colons, the route takes them as they are.
MILESTONE = "invoice:sff:radda-barnen:1:1"

AGREEMENT: dict[str, Exposed] = {
    "edit_draft": Exposed(
        cli=("edit", TOML), api=("PUT", f"{A}/draft", TOML), page=("edit", {"terms": TOML})
    ),
    "confirm_prerequisites": Exposed(
        cli=("confirm", "trust"),
        api=("POST", f"{A}/prerequisites", {"keys": ["trust"]}),
        page=("confirm", {"keys": "trust"}),
    ),
    "start_signing": Exposed(
        cli=("sign-start",), api=("POST", f"{A}/signing", None), page=("sign-start", {})
    ),
    "record_report": Exposed(
        cli=("report", "--report", "arsrapport", "--period", "1"),
        api=("POST", f"{A}/reports", {"report": "arsrapport", "occurrence": 1}),
        page=("report", {"report": "arsrapport", "period": "1"}),
    ),
    "record_milestone": Exposed(
        cli=("milestone", MILESTONE, "invoiced", "--number", "F-1"),
        api=(
            "POST",
            f"{A}/milestones/{{milestone_id:path}}",
            {"status": "invoiced", "number": "F-1"},
        ),
        page=("milestone", {"milestone": MILESTONE, "status": "invoiced", "number": "F-1"}),
    ),
    "decide_renewal": Exposed(
        cli=("decide", "notice", "--party", "kommun"),
        api=("POST", f"{A}/renewals", {"party": "kommun", "renew": False}),
        page=("notice", {"party": "kommun"}),
        more_pages=("approve",),
    ),
    "terminate": Exposed(
        cli=("terminate", "--notice", "kommun", "--reason", "Ändrade förhållanden"),
        api=(
            "POST",
            f"{A}/ending",
            {"kind": "termination", "party": "kommun", "reason": "Ändrade förhållanden"},
        ),
        page=("terminate", {"party": "kommun", "reason": "Ändrade förhållanden"}),
        more_pages=("withdraw", "rescind"),
    ),
    "withdrawal_outcome": Exposed(
        cli=("withdrawal", "--continue"),
        api=("POST", f"{A}/withdrawal", {"end_all": False}),
        page=("withdrawal", {"end_all": "no"}),
    ),
    "amend": Exposed(
        cli=("amend", TOML), api=("POST", f"{A}/amendments", TOML), page=("amend", {"terms": TOML})
    ),
}

SIGNER = "signers act through their personal link (/sign/{value}), never the API or the CLI"
ROUND: dict[str, Exposed] = {
    "open": Exposed(cli=None, api=None, page=None, why=f"GET /sign/{{value}}: {SIGNER}"),
    "sign": Exposed(cli=None, api=None, page=None, why=f"POST /sign/{{value}} sign: {SIGNER}"),
    "decline": Exposed(
        cli=None, api=None, page=None, why=f"POST /sign/{{value}} decline: {SIGNER}"
    ),
    "sign_paper": Exposed(
        cli=("sign-paper", "--signer", "maria@kommun.example.se", "--date", "2026-11-20"),
        api=(
            "POST",
            f"{A}/signing/paper",
            {"signer": "maria@kommun.example.se", "signed_on": "2026-11-20", "recorded_by": "api"},
        ),
        page=("sign-paper", {"signer": "maria@kommun.example.se", "date": "2026-11-20"}),
    ),
    "cancel": Exposed(
        cli=("sign-cancel", "--reason", "Fel belopp"),
        api=("POST", f"{A}/signing/cancel", {"reason": "Fel belopp", "by": "api"}),
        page=("sign-cancel", {"reason": "Fel belopp"}),
    ),
}
# The signing page's routes, and the action each of its forms posts.
SIGNING_PAGE = {"open": ("GET", None), "sign": ("POST", "sign"), "decline": ("POST", "decline")}


def updates(cls: type) -> set[str]:
    definition = workflow._Definition.from_class(cls)
    assert definition is not None, cls
    return {name for name in definition.updates if name is not None}


def test_the_mapping_names_every_update_and_nothing_else() -> None:
    assert set(AGREEMENT) == updates(AgreementWorkflow), (
        "an update of the agreement workflow without an interface (or a stale entry): "
        "give it a command, an API route and a form, and add it here"
    )
    assert set(ROUND) == updates(SignatureRoundWorkflow)
    for name, exposed in {**AGREEMENT, **ROUND}.items():
        missing = [n for n in ("cli", "api", "page") if getattr(exposed, n) is None]
        assert not missing or exposed.why, f"{name}: no {', '.join(missing)} and no reason why"


# --- they exist ---------------------------------------------------------------------------


def routes() -> set[tuple[str, str]]:
    app = create_app(Settings(api_token=TOKEN), client=SimpleNamespace())  # type: ignore[arg-type]
    found = set()
    for route in app.routes:
        if isinstance(route, APIRoute):
            found |= {(method, route.path) for method in route.methods or ()}
    return found


def test_every_update_has_a_command_and_an_api_route() -> None:
    commands = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    known = routes()
    for name, exposed in {**AGREEMENT, **ROUND}.items():
        if exposed.cli is not None:
            assert exposed.cli[0] in commands, f"{name}: no command {exposed.cli[0]}"
        if exposed.api is not None:
            method, path, _ = exposed.api
            assert (method, path) in known, f"{name}: no route {method} {path}"
    assert ("POST", "/a/{agreement_id}/{action}") in known
    for name, (method, _) in SIGNING_PAGE.items():
        assert (method, "/sign/{value}") in known, name
    sign = (ROOT / "agreements" / "web" / "templates" / "sign.html").read_text(encoding="utf-8")
    for name, (_, action) in SIGNING_PAGE.items():
        if action is not None:
            assert f'name="action" value="{action}"' in sign, f"{name}: no form on sign.html"


def snapshot(state: str, **values: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "agreement_id": ID,
        "title": "IOP Planteringen",
        "state": SimpleNamespace(value=state),
        "start": dt.date(2024, 4, 1),
        "end": dt.date(2026, 3, 31),
        "ending": None,
        "prerequisites_missing": [],
        "withdrawal_pending": None,
    }
    return SimpleNamespace(**{**base, **values})


def instalment(status: MilestoneStatus) -> MilestoneState:
    """A timeline row: planteringen's first instalment, due today, with `status`."""
    return MilestoneState(
        id=MILESTONE,
        kind=MilestoneKind.invoice,
        date=dt.date.today(),
        effective_date=dt.date.today(),
        rule=DateRule.forward,
        title="Fakturering",
        status=status,
    )


def agreement_page(
    s: SimpleNamespace,
    terms: Any,
    info: Any,
    timeline: list[Any],
    may_decide: bool = True,
    may_money: bool = True,
) -> str:
    """The agreement page rendered in Swedish with no emails or events."""
    html: str = TEMPLATES.get_template("agreement.html").render(
        s=s,
        info=info,
        terms=terms,
        timeline=timeline,
        emails=[],
        events=[],
        feed="/feed",
        csrf="c",
        form_key="k",
        lang="sv",
        may_decide=may_decide,
        may_money=may_money,
    )
    return html


def rendered_actions(
    s: SimpleNamespace,
    terms: Any,
    info: Any = None,
    timeline: list[Any] | None = None,
    may_decide: bool = True,
    may_money: bool = True,
) -> set[str]:
    html = agreement_page(s, terms, info, timeline or [], may_decide, may_money)
    forms = re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S)
    actions = set()
    for form in forms:
        assert 'method="post"' in form and 'name="csrf"' in form, form
        targets = re.findall(r'(?:form)?action="/a/' + ID + r'/([a-z-]+)"', form)
        if targets and not {"sign-paper", "sign-cancel"} & set(targets):
            # Every decision's form carries its idempotency key (a round's action does
            # once service.ops.round_action takes an update id).
            assert 'name="idempotency_key" value="k"' in form, form
        actions |= set(targets)
    return actions


def test_every_coordinator_update_has_a_form_on_the_agreement_page() -> None:
    plant = load_agreement(EXAMPLES / "planteringen.toml")  # opt-in, reports
    helsingborg = load_agreement(EXAMPLES / "helsingborg-inva-sam.toml")  # opt-out
    gamlegarden = load_agreement(EXAMPLES / "kristianstad-gamlegarden.toml")  # withdrawal
    round_open = SimpleNamespace(
        number=1, method="link", outcome=SimpleNamespace(value="open"), signers=[]
    )
    shown = set()
    shown |= rendered_actions(snapshot("draft", prerequisites_missing=["trust"]), plant)
    shown |= rendered_actions(snapshot("signing"), plant, round_open)
    shown |= rendered_actions(snapshot("active"), plant)
    # A timeline row a person can act on carries its form (an instalment to invoice).
    to_invoice = [instalment(MilestoneStatus.to_invoice)]
    assert "milestone" not in shown
    assert "milestone" not in rendered_actions(snapshot("signing"), plant, timeline=to_invoice)
    shown |= rendered_actions(snapshot("active"), plant, timeline=to_invoice)
    shown |= rendered_actions(snapshot("active"), helsingborg)
    shown |= rendered_actions(snapshot("active", withdrawal_pending="shaf"), gamlegarden)
    for name, exposed in {**AGREEMENT, **ROUND}.items():
        if exposed.page is not None:
            wanted = {exposed.page[0], *exposed.more_pages}
            assert wanted <= shown, f"{name}: no form posting to {wanted - shown}"
    # A reader gets no form at all; finance only the instalment's.
    for state in ("draft", "signing", "active"):
        assert (
            rendered_actions(snapshot(state), plant, round_open, to_invoice, False, False) == set()
        )
    money = rendered_actions(snapshot("active"), plant, None, to_invoice, False, True)
    assert money == {"milestone"}
    # A withdrawal form only where the snapshot says one is waiting.
    assert "withdrawal" not in rendered_actions(snapshot("active"), gamlegarden)


# --- invoking each one reaches the workflow ------------------------------------------------


class Recorder:
    """A stand-in Temporal client: remembers each update (name, update id) and refuses it
    as a workflow's validator would. A query answers with a snapshot that has a round."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> Handle:
        return Handle(self, workflow_id)


class Handle:
    def __init__(self, recorder: Recorder, workflow_id: str) -> None:
        self.recorder = recorder
        self.id = workflow_id

    async def execute_update(self, update: Any, arg: Any = None, **options: Any) -> Any:
        name, _ = workflow._UpdateDefinition.get_name_and_result_type(update)
        self.recorder.calls.append((self.id, name, options.get("id")))
        raise WorkflowUpdateFailedError(ApplicationError(REFUSAL, type="Rejected"))

    async def query(self, *_: Any, **__: Any) -> Any:
        return snapshot("signing", round_workflow_id=f"agreement-{ID}-round-1", round=None)


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """The stand-in client for the API, the pages and the command line (via ops.connect),
    with a migrated database under tmp_path so refusals are written to the event log."""
    fake = Recorder()
    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AGREEMENTS_API_TOKEN", TOKEN)
    config.settings.cache_clear()
    migrate(config.settings().db_url())

    async def connect(_: Any) -> Recorder:
        return fake

    monkeypatch.setattr("agreements.ops.connect", connect)
    yield fake
    config.settings.cache_clear()


def agreement_file(tmp_path: Path) -> Path:
    path = tmp_path / "planteringen.toml"
    path.write_text((EXAMPLES / "planteringen.toml").read_text(encoding="utf-8"), "utf-8")
    return path


def test_every_command_reaches_its_update(recorder: Recorder, tmp_path: Path) -> None:
    path = str(agreement_file(tmp_path))
    runner = CliRunner()
    for name, exposed in {**AGREEMENT, **ROUND}.items():
        if exposed.cli is None:
            continue
        command, *rest = (path if a == TOML else a for a in exposed.cli)
        result = runner.invoke(cli_app, [command, ID, *rest])
        assert "Traceback" not in result.output
        assert result.exit_code == 1 and REFUSAL in result.output, (name, result.output)
        assert recorder.calls[-1][1] == name, (command, recorder.calls[-1])
    # A key makes the update's id, named after the update; a bad key is refused first.
    key = ["--idempotency-key", "retry-7"]
    assert runner.invoke(cli_app, ["sign-start", ID, *key]).exit_code == 1
    assert recorder.calls[-1] == (f"agreement-{ID}", "start_signing", "start_signing:retry-7")
    calls = len(recorder.calls)
    bad = runner.invoke(cli_app, ["sign-start", ID, "--idempotency-key", "x" * 201])
    assert bad.exit_code == 1 and "--idempotency-key: måste vara 1 till 200" in bad.output
    assert len(recorder.calls) == calls


def test_every_api_route_reaches_its_update(recorder: Recorder, tmp_path: Path) -> None:
    text = agreement_file(tmp_path).read_text(encoding="utf-8")
    with TestClient(create_app(config.settings()), client=("127.0.0.1", 50000)) as client:
        for name, exposed in {**AGREEMENT, **ROUND}.items():
            if exposed.api is None:
                continue
            method, path, body = exposed.api
            url = re.sub(
                r"\{(\w+)(?::\w+)?\}",
                lambda found: {"agreement_id": ID, "milestone_id": MILESTONE}[found.group(1)],
                path,
            )
            key = {"Idempotency-Key": f"key {name}"}
            if body == TOML:
                answer = client.request(method, url, content=text, headers={**AUTH, **key})
            else:
                answer = client.request(method, url, json=body, headers={**AUTH, **key})
            assert answer.status_code == 409, (name, answer.text)
            assert answer.json()["detail"] == REFUSAL
            _, update, update_id = recorder.calls[-1]
            assert update == name
            if name in AGREEMENT:  # the round's actions take no update id yet
                assert update_id == f"{name}:key {name}"
        calls = len(recorder.calls)
        for bad, reason in (
            ("x" * 201, "måste vara 1 till 200 tecken, inte 201"),
            ("", "måste vara 1 till 200 tecken, inte 0"),
            ("tab\there", "får bara innehålla utskrivbara ASCII-tecken"),
            ("åäö", "får bara innehålla utskrivbara ASCII-tecken"),
        ):
            answer = client.post(
                f"/api/agreements/{ID}/signing",
                headers={**AUTH, "Idempotency-Key": bad.encode()},  # raw UTF-8 bytes
            )
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["detail"].startswith(f"Idempotency-Key: {reason}")
        assert len(recorder.calls) == calls  # a bad key reaches nothing
        # A bad agreement file is a 422 naming the problem, before any workflow is asked.
        wrong = client.put(f"/api/agreements/{ID}/draft", content='id = "x"\n', headers=AUTH)
        assert wrong.status_code == 422 and "request:" in wrong.json()["detail"]
        assert len(recorder.calls) == calls


def test_every_form_reaches_its_update(recorder: Recorder, tmp_path: Path) -> None:
    text = agreement_file(tmp_path).read_text(encoding="utf-8")
    with TestClient(create_app(config.settings()), client=("127.0.0.1", 50000)) as client:
        client.post("/login", data={"token": TOKEN})
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/").text)
        assert found is not None
        csrf = found.group(1)
        for name, exposed in {**AGREEMENT, **ROUND}.items():
            if exposed.page is None:
                continue
            action, fields = exposed.page
            for each in (action, *exposed.more_pages):
                data = {k: text if v == TOML else v for k, v in fields.items()}
                # A paper signature comes with its scanned signed copy (a PDF).
                scan = {"scan": ("skanning.pdf", pdf(), "application/pdf")}
                answer = client.post(
                    f"/a/{ID}/{each}",
                    data={"csrf": csrf, "idempotency_key": "form-1", "confirmed": "yes", **data},
                    files=scan if each == "sign-paper" else None,
                    follow_redirects=False,
                )
                assert answer.status_code == 409 and REFUSAL in answer.text, (each, answer.text)
                _, update, update_id = recorder.calls[-1]
                assert update == name, each
                if name in AGREEMENT:  # name, form key and a digest of what was asked
                    assert update_id is not None
                    assert re.fullmatch(rf"{name}:form-1:[0-9a-f]{{16}}", update_id)
        calls = len(recorder.calls)
        # What is wrong is said, and nothing reaches the workflow.
        forged = client.post(f"/a/{ID}/withdrawal", data={"csrf": "x", "end_all": "no"})
        assert forged.status_code == 403
        unchosen = client.post(f"/a/{ID}/withdrawal", data={"csrf": csrf, "confirmed": "yes"})
        assert unchosen.status_code == 400 and "Välj om avtalet upphör" in unchosen.text
        bad_file = client.post(
            f"/a/{ID}/edit", data={"csrf": csrf, "terms": 'id = "x"', "confirmed": "yes"}
        )
        assert bad_file.status_code == 422 and "avtalsfilen:" in bad_file.text
        bad_key = client.post(
            f"/a/{ID}/sign-start",
            data={"csrf": csrf, "idempotency_key": "x" * 201, "confirmed": "yes"},
        )
        assert bad_key.status_code == 400 and "Idempotency-Key" in bad_key.text
        assert len(recorder.calls) == calls
        # The refusals are in the agreement's event log, with the workflow's reason.
        from agreements import ops

        logged = [e for e in ops.events(config.settings(), ID) if e.kind == "refused"]
        assert logged and all(REFUSAL in e.summary for e in logged)


def test_choices_come_from_lists_with_labels() -> None:
    """A report is chosen by its name and due date, a paper signature by the signer's name
    (only those still to sign); every control has a label."""
    terms = load_agreement(EXAMPLES / "helsingborg-inva-sam.toml")  # reports
    report = terms.reports[0]
    due = MilestoneState(
        id=f"report:{report.key}:2",
        kind=MilestoneKind.report_due,
        date=dt.date(2027, 3, 31),
        effective_date=dt.date(2027, 3, 31),
        rule=DateRule.forward,
        title="Rapport 2",
        report=report.key,
        occurrence=2,
        status=MilestoneStatus.due,
    )
    received = due.model_copy(
        update={"id": "r1", "occurrence": 1, "status": MilestoneStatus.received}
    )

    def signer(name: str, email: str, status: str) -> SimpleNamespace:
        return SimpleNamespace(
            name=name, party_name="Part", email=email, status=SimpleNamespace(value=status)
        )

    round_open = SimpleNamespace(
        number=1,
        method="link",
        outcome=SimpleNamespace(value="open"),
        signers=[signer("Sara", "sara@x.se", "signed"), signer("Maria", "maria@x.se", "invited")],
    )
    for state, info in (("active", None), ("signing", round_open)):
        html = agreement_page(snapshot(state), terms, info, [due, received])
        if state == "active":
            option = f'<option value="{report.key}:2">Rapport 2 (2027-03-31 (onsdag))</option>'
            assert option in html
            assert f'value="{report.key}:1"' not in html  # received already
        else:
            assert '<option value="maria@x.se">Maria (Part)</option>' in html
            assert 'value="sara@x.se"' not in html  # signed already
        for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if 'type="hidden"' in control:
                continue
            before = html[: html.index(control)]
            labelled = before.rfind("<label") > before.rfind("</label>") or "aria-label=" in control
            assert labelled, control


def test_a_confirmation_counts_whom_the_workflow_will_email() -> None:
    """Planteringen's round invites six signatories (the six signing emails of the README's
    quick start); its ending tells every contact and the coordinator once each. A finance
    person is told of an ending only when money is repaid, so is not counted here."""
    from agreements.web.app import consequence

    plant = load_agreement(EXAMPLES / "planteringen.toml")
    start = consequence("sv", "sign-start", {}, plant)
    assert "Var och en av de 6 undertecknarna" in start[0]
    told = {
        c.email.lower() for p in plant.parties.values() for c in p.contacts if "contact" in c.roles
    }
    told.add(plant.coordinator.email.lower())
    ending = consequence("sv", "terminate", {"party": next(iter(plant.parties))}, plant)
    assert f"Alla {len(told)} kontaktpersoner får veta det via mejl." in ending
