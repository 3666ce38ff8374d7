"""Bad input, generated and hand-made: every broken agreement file gets a clear error that
names the file and the field, never a traceback; what is accepted renders into emails with
no injected header and no unescaped HTML."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections import Counter
from copy import deepcopy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agreements.cli import app
from emails.message import build
from emails.render import render_email
from models.agreement import Agreement
from models.lifecycle import EmailSpec, terms_sha256
from models.loader import AgreementFileError, loads_agreement, parse_agreement
from models.plan import Scenario
from models.schedule.engine import plan
from tests.reliability.harness import report

ROOT = Path(__file__).resolve().parent.parent.parent
BASE = tomllib.loads((ROOT / "examples" / "planteringen.toml").read_text(encoding="utf-8"))
SOURCE = "bad.toml"
HOSTILE = [
    "Ny\r\nBcc: victim@example.org",
    "rad\nbrytning",
    "<script>alert('x')</script>",
    "\x00\x07\x1b[31m",
    "x" * 100_000,
    "",
    " ",
    "Ölands ”föreningar” & <b>vänner</b>",
]

values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=400),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True),
    st.booleans(),
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
    st.lists(st.integers(), max_size=5),
    st.dictionaries(st.text(max_size=10), st.integers(), max_size=3),
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths(value, (*prefix, index))
    return found


PATHS = paths(BASE)


def replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = deepcopy(BASE)
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


def safe_emails(agreement: Agreement) -> None:
    """Every kind of email the agreement's plan sends: one-line headers, escaped HTML."""
    promised = plan(agreement, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    milestones = {m.id: m for m in promised.milestones}
    seen: set[str] = set()
    for email in promised.emails:
        if email.template in seen:
            continue
        seen.add(email.template)
        spec = EmailSpec(
            key=email.key,
            agreement_id=agreement.id,
            terms_sha256=terms_sha256(agreement),
            template=email.template,
            to=email.to,
            milestone=milestones[email.milestone_id],
            days_before=email.days_before,
        )
        message = build(
            agreement,
            spec,
            render_email(agreement, spec, None),
            "Avtal <avtal@example.se>",
            dt.datetime.now(dt.UTC),
        )
        assert isinstance(message, EmailMessage)
        for name, value in message.items():
            assert "\r" not in str(value) and "\n" not in str(value), (name, value)
        assert message["Bcc"] is None
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        assert "<script>" not in html.get_content()


def test_any_one_wrong_value_is_a_clear_error_or_safe() -> None:
    outcome: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(path=st.sampled_from(PATHS), value=values)
    def one(path: tuple[Any, ...], value: Any) -> None:
        try:
            agreement = parse_agreement(replaced(path, value), SOURCE)
        except AgreementFileError as error:
            text = str(error)
            assert text.startswith(f"{SOURCE}: "), text
            assert "Traceback" not in text
            outcome["clear error"] += 1
            return
        safe_emails(agreement)
        outcome["accepted, emails safe"] += 1

    one()
    assert outcome["clear error"] > 0 and outcome["accepted, emails safe"] > 0, outcome
    report("generated agreement files, one wrong value each", tried=outcome.total(), **outcome)


def test_any_text_is_a_clear_error_or_an_agreement() -> None:
    outcome: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=2000))
    def one(text: str) -> None:
        try:
            loads_agreement(text, SOURCE)
        except AgreementFileError as error:
            assert str(error).startswith(f"{SOURCE}: ")
            outcome["clear error"] += 1
            return
        outcome["accepted"] += 1

    one()
    report("generated text as an agreement file", tried=outcome.total(), **outcome)


def test_hand_made_cases_each_name_their_field(tmp_path: Path) -> None:
    many = {f"p{n}": deepcopy(BASE["parties"][next(iter(BASE["parties"]))]) for n in range(10_000)}
    cases = {
        "parties": replaced(("parties",), many),
        "title": replaced(("title",), "x" * 1_000_000),
        "coordinator.name": replaced(("coordinator", "name"), "Ny\r\nBcc: victim@example.org"),
        "term.end": replaced(("term", "end"), dt.date(9999, 12, 31)),
        "term.start": replaced(("term", "start"), "i morgon"),
    }
    for field, data in cases.items():
        try:
            parse_agreement(data, SOURCE)
        except AgreementFileError as error:
            assert f"{SOURCE}: {field}" in str(error), (field, str(error)[:300])
        else:
            raise AssertionError(f"{field}: accepted")
    # The command line says the same, with exit code 1 and no traceback.
    path = tmp_path / "bad.toml"
    path.write_text('id = "x"\ntitle = "a\\r\\nBcc: v@example.org"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path)], env={"AGREEMENTS_LANGUAGE": "en"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "title: must be one line" in result.output


def test_html_in_a_title_is_escaped_in_every_email() -> None:
    agreement = parse_agreement(
        replaced(("title",), "<script>alert('x')</script> & <b>vänner</b>"), SOURCE
    )
    safe_emails(agreement)
