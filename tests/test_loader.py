"""Broken agreement files: each gets a clear error naming the file, the field and the
reason, with exit code 1 and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agreements.cli import app
from models.loader import AgreementFileError, load_agreement, loads_agreement

BROKEN = Path(__file__).resolve().parent / "broken"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = [
    ("unknown-party.toml", "contributions[0].payee", "unknown party 'foreningen'"),
    ("end-before-start.toml", "term.end", "is not after the start 2025-01-01"),
    ("bad-email.toml", "parties.forening.contacts[0].email", "must have an @-sign"),
    ("bad-org-number.toml", "parties.forening.org_number", "wrong check digit (Luhn)"),
    ("personnummer.toml", "parties.forening.org_number", "personal identity number"),
    ("negative-amount.toml", "contributions[0].amount", "is negative"),
    ("float-amount.toml", "contributions[0].amount", "whole kronor"),
    ("period-exceeds-max.toml", "term", "cannot end exactly on the maximum term's last day"),
    ("unknown-key.toml", "contributions[0].amout", "unknown key"),
    ("missing-term.toml", "term", "missing (required)"),
    ("toml-syntax.toml", "not valid TOML", "line 3"),
    ("opt-out-without-notice.toml", "term.notice_months", "required for renewal 'opt-out'"),
    ("report-unknown-party.toml", "reports[0].party", "unknown party 'foreningen'"),
    ("no-signatory.toml", "parties.kommun.contacts", "at least one contact with the role"),
]


def test_every_broken_file_is_covered() -> None:
    assert {p.name for p in BROKEN.glob("*.toml")} == {c[0] for c in CASES} | {
        "several-mistakes.toml"
    }


@pytest.mark.parametrize(("name", "field", "reason"), CASES)
def test_check_names_file_field_and_reason(name: str, field: str, reason: str) -> None:
    result = CliRunner().invoke(app, ["check", str(BROKEN / name)])
    assert result.exit_code == 1
    output = result.output
    assert "Traceback" not in output
    line = next(line for line in output.splitlines() if field in line)
    assert line.startswith(f"{BROKEN / name}: ")
    assert reason in line


def test_several_mistakes_are_reported_together() -> None:
    with pytest.raises(AgreementFileError) as caught:
        load_agreement(BROKEN / "several-mistakes.toml")
    locations = [p.location for p in caught.value.problems]
    assert "parties.forening.contacts[0].email" in locations
    assert "contributions[0].amount" in locations


def test_unreadable_inputs_get_clear_errors(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('title = "Föreningen"'.encode("latin-1"))
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    for path, expected in [
        (latin1, "UTF-8"),
        (empty, "missing"),
        (tmp_path, "cannot read"),
        (tmp_path / "nowhere.toml", "cannot read"),
    ]:
        with pytest.raises(AgreementFileError) as caught:
            load_agreement(path)
        message = str(caught.value)
        assert str(path) in message and expected in message, message


def test_a_problem_in_text_names_its_source() -> None:
    with pytest.raises(AgreementFileError) as caught:
        loads_agreement('id = "x"\n', source="inline")
    assert str(caught.value).startswith("inline: ")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_examples_load(path: Path) -> None:
    assert load_agreement(path).id == path.stem
