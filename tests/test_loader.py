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
    ("control-in-title.toml", "title", "control character U+0096: names and titles go into"),
    (
        "contact-name-nel.toml",
        "parties.forening.contacts[0].name",
        "control character U+0085: names and titles go into email subjects and headers",
    ),
    ("non-ascii-local-part.toml", "parties.forening.contacts[0].email", "needs SMTPUTF8"),
]


def test_every_broken_file_is_covered() -> None:
    assert {p.name for p in BROKEN.glob("*.toml")} == {c[0] for c in CASES} | {
        "several-mistakes.toml"
    }


@pytest.mark.parametrize(("name", "field", "reason"), CASES)
def test_check_names_file_field_and_reason(name: str, field: str, reason: str) -> None:
    # In English: the reasons are the English messages (tests/test_problems_said.py has them
    # in Swedish, the command line's default).
    result = CliRunner().invoke(
        app, ["check", str(BROKEN / name)], env={"AGREEMENTS_LANGUAGE": "en"}
    )
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


# A valid agreement with every kind of text that goes into an email header.
HEADERS = """
id = "rubriker"
title = "IOP Rubriker"
reference = "KS 2025/17"
purpose = "Samverkan.\\nTvå rader, med\\ttabb."
[coordinator]
name = "Malin Samordnare"
email = "malin@kommun.example.se"
[parties.kommun]
name = "Kommunen"
kind = "public"
contacts = [
  { name = "Maria Chef", title = "Chef", email = "maria@kommun.example.se", roles = ["signatory"] },
]
[parties.forening]
name = "Föreningen"
kind = "nonprofit"
contacts = [
  { name = "Saul Ordförande", email = "saul@föreningen.example.se", roles = ["signatory"] },
]
[term]
start = 2025-01-01
end = 2025-12-31
[[contributions]]
payer = "kommun"
payee = "forening"
amount = 100000
description = "Bidrag"
[[reports]]
key = "arsrapport"
name = "Årsrapport"
party = "forening"
[meetings]
name = "Styrgruppsmöte"
convener = "kommun"
every_months = 6
[[reviews]]
key = "utvardering"
title = "Utvärdering"
months_before_end = 2
[[milestones]]
key = "halvtid"
title = "Halvtid"
date = 2025-07-01
"""


def test_the_header_sample_is_valid() -> None:
    agreement = loads_agreement(HEADERS)
    # An international domain is accepted; it goes to the relay in its IDNA form (xn--…).
    assert agreement.parties["forening"].contacts[0].email == "saul@föreningen.example.se"
    assert agreement.purpose == "Samverkan.\nTvå rader, med\ttabb."


@pytest.mark.parametrize(
    ("written", "location"),
    [
        ('title = "IOP Rubriker"', "title"),
        ('reference = "KS 2025/17"', "reference"),
        ('name = "Malin Samordnare"', "coordinator.name"),
        ('name = "Kommunen"', "parties.kommun.name"),
        ('name = "Maria Chef"', "parties.kommun.contacts[0].name"),
        ('title = "Chef"', "parties.kommun.contacts[0].title"),
        ('name = "Saul Ordförande"', "parties.forening.contacts[0].name"),
        ('description = "Bidrag"', "contributions[0].description"),
        ('name = "Årsrapport"', "reports[0].name"),
        ('name = "Styrgruppsmöte"', "meetings.name"),
        ('title = "Utvärdering"', "reviews[0].title"),
        ('title = "Halvtid"', "milestones[0].title"),
    ],
)
@pytest.mark.parametrize("char", ["\\u0085", "\\u0080", "\\u009f"])
def test_a_c1_control_character_in_header_text_is_refused(
    written: str, location: str, char: str
) -> None:
    """U+0085 and the other C1 controls (category Cc) were let through: the field rules
    refused only C0, DEL and the line separators."""
    assert written in HEADERS
    name, _, value = written.partition(" = ")
    broken = HEADERS.replace(written, f"{name} = {value[:3]}{char}{value[3:]}", 1)
    with pytest.raises(AgreementFileError) as caught:
        loads_agreement(broken)
    (problem,) = caught.value.problems
    assert problem.location == location
    assert problem.message.startswith(f"contains the control character U+{char[-4:].upper()}")


@pytest.mark.parametrize("char", ["\\u0085", "\\u0000", "\\u2028", "\\u007f", "\\u001b"])
def test_every_control_character_is_refused_in_header_text(char: str) -> None:
    with pytest.raises(AgreementFileError) as caught:
        loads_agreement(HEADERS.replace("Årsrapport", f"Års{char}rapport"))
    assert [p.location for p in caught.value.problems] == ["reports[0].name"]


@pytest.mark.parametrize(("char", "refused"), [("\\u0085", True), ("\\u2028", False)])
def test_the_purpose_may_break_lines_but_holds_no_c1_control(char: str, refused: bool) -> None:
    text = HEADERS.replace("Två rader", f"Två{char}rader")
    if not refused:  # a line separator in running text is only a line break
        assert loads_agreement(text).purpose == "Samverkan.\nTvå\u2028rader, med\ttabb."
        return
    with pytest.raises(AgreementFileError) as caught:
        loads_agreement(text)
    assert [str(p) for p in caught.value.problems] == [
        "purpose: contains the control character U+0085"
    ]


@pytest.mark.parametrize("address", ["åsa@kommun.example.se", "märia@kommun.example.se"])
def test_an_address_with_non_ascii_before_the_at_is_refused(address: str) -> None:
    with pytest.raises(AgreementFileError) as caught:
        loads_agreement(HEADERS.replace("malin@kommun.example.se", address))
    (problem,) = caught.value.problems
    assert problem.location == "coordinator.email"
    assert address in problem.message and "SMTPUTF8" in problem.message
