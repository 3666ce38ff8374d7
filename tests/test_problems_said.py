"""A problem in an agreement file is said in the reader's language, next to its field.

Every problem, whether a rule between fields (models/validation.py), a rule on one field
(models/agreement.py) or pydantic's own (models/loader.py), carries a message id of the
catalog and the parameters it names: in English it is the message it always was, in
Swedish the catalog's words, with nothing left out.
"""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from pydantic import BaseModel, Field, ValidationError
from typer.testing import CliRunner

from agreements.cli import app
from i18n import catalog_path, text
from models.loader import (
    MAX_FILE_BYTES,
    AgreementFileError,
    _problems,
    load_agreement,
    loads_agreement,
    parse_agreement,
)
from models.validation import GOT, Problem, check

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "helsingborg-inva-sam.toml"
# Where the problems' message ids are written, each as a literal N_("...") that Babel finds.
SOURCES = ("models/validation.py", "models/loader.py", "models/agreement.py")

Data = dict[str, Any]


def example() -> Data:
    with EXAMPLE.open("rb") as f:
        return tomllib.load(f)


def _set(path: str, value: Any) -> Callable[[Data], None]:
    """Set the value at a dotted path (`parties.amf.contacts.0.email`); `...` removes it."""

    def change(data: Data) -> None:
        *inner, last = path.split(".")
        where: Any = data
        for part in inner:
            where = where[int(part)] if isinstance(where, list) else where[part]
        if value is ...:
            del where[last]
        elif isinstance(where, list):
            where[int(last)] = value
        else:
            where[last] = value

    return change


def _all(*changes: Callable[[Data], None]) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        for one in changes:
            one(data)

    return change


CONTACT = "parties.amf.contacts.0"
NO_CADENCE = _all(_set("reports.0.first_months", ...), _set("reports.0.every_months", ...))

Case = tuple[str, Callable[[Data], None], str, str]

# One broken file for every kind of problem: (name, change, location, message id).
# The rules between fields (models/validation.py).
BETWEEN_FIELDS: list[Case] = [
    (
        "c1 control in purpose",
        _set("purpose", "Sam\x85verkan"),
        "purpose",
        "contains the control character %(chars)s",
    ),
    (
        "c1 controls in purpose",
        _set("purpose", "Sam\x85ver\x86kan"),
        "purpose",
        "contains the control characters %(chars)s",
    ),
    (
        "c1 control in title",
        _set("title", "IOP\x96"),
        "title",
        "contains the control character %(chars)s: names and titles go into email subjects "
        "and headers, which must be one line of plain text (no line breaks, tabs or other "
        "control characters)",
    ),
    (
        "c1 controls in a name",
        _set(f"{CONTACT}.name", "Maria\x85\x96"),
        "parties.amf.contacts[0].name",
        "contains the control characters %(chars)s: names and titles go into email subjects "
        "and headers, which must be one line of plain text (no line breaks, tabs or other "
        "control characters)",
    ),
    (
        "non-ascii before the @",
        _set(f"{CONTACT}.email", "åsa@kommun.example.se"),
        "parties.amf.contacts[0].email",
        "%(address)s has non-ASCII characters (%(characters)s) before the @: such an address "
        "needs SMTPUTF8, which the mail relay (or a server after it) may not offer, so emails "
        "to it could not be sent; give an address with only ASCII letters before the @",
    ),
    (
        "unknown party",
        _set("coordinator.party", "nobody"),
        "coordinator.party",
        "unknown party %(key)s (parties are: %(known)s)",
    ),
    (
        "no signatory",
        _set("parties.helsingborgshem.contacts.0.roles", ["contact"]),
        "parties.helsingborgshem.contacts",
        "a signing party needs at least one contact with the role 'signatory' "
        "(or set signs = false)",
    ),
    (
        "end before start",
        _set("term.end", dt.date(2024, 1, 1)),
        "term.end",
        "%(end)s is not after the start %(start)s",
    ),
    (
        "not whole periods",
        _set("term.end", dt.date(2025, 3, 31)),
        "term.end",
        "%(end)s does not end a whole number of %(months)s-month periods from %(start)s "
        "(a period ends the day before the same day number)",
    ),
    (
        "both maximums",
        _set("term.last_end", dt.date(2027, 4, 30)),
        "term",
        "give max_total_months or last_end, not both",
    ),
    (
        "no notice",
        _set("term.notice_months", ...),
        "term.notice_months",
        "required for renewal %(renewal)s: how many months before the end must parties decide?",
    ),
    (
        "no maximum",
        _set("term.max_total_months", ...),
        "term",
        "renewal %(renewal)s needs max_total_months or last_end (how long can the agreement "
        "run at most?)",
    ),
    (
        "renewal not whole periods",
        _set("term.renewal_months", 18),
        "term.renewal_months",
        "%(renewal)s is not a whole number of %(months)s-month periods",
    ),
    (
        "fixed with a maximum",
        _set("term.renewal", "fixed"),
        "term.renewal",
        "a fixed agreement ends on %(end)s, but the maximum term ends on %(limit)s; set "
        "renewal to 'opt-out' or 'opt-in', or remove the maximum",
    ),
    (
        "maximum before the end",
        _set("term.max_total_months", 6),
        "term",
        "the initial term ending %(end)s does not fit the maximum term ending %(limit)s",
    ),
    (
        "renewals miss the maximum",
        _all(_set("term.renewal_months", 24), _set("term.max_total_months", 48)),
        "term",
        "renewals of %(renewal)s months, counted like the periods from the start %(start)s, "
        "cannot end exactly on the maximum term's last day %(limit)s",
    ),
    (
        "date outside",
        _all(NO_CADENCE, _set("reports.0.dates", [dt.date(2030, 1, 1)])),
        "reports[0].dates[0]",
        "%(day)s is outside the agreement (%(start)s – %(end)s)",
    ),
    (
        "no payee",
        _set("contributions.0.payee", ...),
        "contributions[0].payee",
        "a money contribution needs a payee",
    ),
    (
        "payee is payer",
        _set("contributions.0.payee", "amf"),
        "contributions[0].payee",
        "payer and payee are the same party",
    ),
    (
        "no amount",
        _set("contributions.0.amount", ...),
        "contributions[0].amount",
        "a money contribution needs amount or amounts",
    ),
    (
        "amount and amounts",
        _set("contributions.0.amounts", [1, 2, 3]),
        "contributions[0]",
        "give amount (every period) or amounts (per period), not both",
    ),
    (
        "no such period",
        _set("contributions.0.periods", [9]),
        "contributions[0].periods",
        "period %(period)s does not exist (at most %(periods)s)",
    ),
    (
        "too few amounts",
        _all(_set("contributions.0.amount", ...), _set("contributions.0.amounts", [1])),
        "contributions[0].amounts",
        "lists %(count)s period(s) but the agreement can run %(needed)s",
    ),
    (
        "two instalment plans",
        _set("contributions.0.instalments", {"per_period": 1, "per_year": 1}),
        "contributions[0].instalments",
        "give exactly one of per_period, per_year, dates",
    ),
    (
        "instalments per period",
        _set("contributions.0.instalments", {"per_period": 5}),
        "contributions[0].instalments.per_period",
        "%(count)s instalments do not divide a %(months)s-month period",
    ),
    (
        "instalments per year",
        _set("contributions.0.instalments", {"per_year": 5}),
        "contributions[0].instalments.per_year",
        "%(count)s a year does not fit %(months)s-month periods",
    ),
    (
        "report key twice",
        _set("reports.1.key", "delrapport"),
        "reports[1].key",
        "%(key)s is used by another report",
    ),
    (
        "report dates and cadence",
        _set("reports.0.dates", [dt.date(2024, 12, 1)]),
        "reports[0]",
        "give dates, or every_months/first_months, not both",
    ),
    (
        "meetings both",
        _set("meetings.dates", [dt.date(2024, 12, 1)]),
        "meetings",
        "give exactly one of every_months or dates",
    ),
    (
        "too few meetings",
        _set("meetings.every_months", 6),
        "meetings.every_months",
        "every %(every)s months gives %(count)s meeting(s) per %(months)s-month period, "
        "fewer than min_per_period %(least)s",
    ),
    (
        "key used twice",
        _all(
            _set("reviews", [{"key": "halvtid", "title": "Utvärdering", "months_before_end": 2}]),
            _set("milestones", [{"key": "halvtid", "title": "Halvtid", "months_before_end": 6}]),
        ),
        "milestones[0].key",
        "%(key)s is used twice",
    ),
    (
        "date and months before end",
        _set(
            "reviews",
            [{"key": "u", "title": "U", "date": dt.date(2025, 1, 1), "months_before_end": 2}],
        ),
        "reviews[0]",
        "give exactly one of date or months_before_end",
    ),
    (
        "withdrawal opens outside",
        _set("withdrawal", {"notice_months": 1, "opens": dt.date(2040, 1, 1)}),
        "withdrawal.opens",
        "%(day)s is outside the agreement (%(start)s – %(end)s)",
    ),
    (
        "unknown prerequisite",
        _set("prerequisites.no-such-item", True),
        "prerequisites.no-such-item",
        "unknown checklist item (known: %(known)s)",
    ),
]
# The rules on one field (models/agreement.py, `Said`).
ON_A_FIELD: list[Case] = [
    (
        "newline in a title",
        _set("title", "IOP\nINVA-SAM"),
        "title",
        "must be one line without control characters (newline, tab or similar)",
    ),
    (
        "control in the purpose",
        _set("purpose", "Samverkan\x01"),
        "purpose",
        "contains a control character",
    ),
    (
        "implausible date",
        _set("term.start", dt.date(1900, 5, 1)),
        "term.start",
        "must lie between %(first)s and %(last)s",
    ),
    (
        "not an organisation number",
        _set("parties.amf.org_number", "123"),
        "parties.amf.org_number",
        "%(value)s is not an organisation number (expected NNNNNN-NNNN)",
    ),
    (
        "personal identity number",
        _set("parties.amf.org_number", "121212-1212"),
        "parties.amf.org_number",
        "%(value)s looks like a personal identity number, which must not be stored; give the "
        "organisation's number",
    ),
    (
        "wrong check digit",
        _set("parties.amf.org_number", "212000-1158"),
        "parties.amf.org_number",
        "%(value)s has a wrong check digit (Luhn)",
    ),
    (
        "amount with decimals",
        _set("contributions.0.amount", 650000.5),
        "contributions[0].amount",
        "amounts are whole kronor (write 650000, not 650000.0)",
    ),
    (
        "negative amount",
        _set("contributions.0.amount", -5),
        "contributions[0].amount",
        "amount %(amount)s is negative",
    ),
]
# pydantic's own (models/loader.py).
PYDANTIC: list[Case] = [
    ("missing", _set("term", ...), "term", "missing (required)"),
    ("unknown key", _set("contributions.0.amout", 1), "contributions[0].amout", "unknown key"),
    ("empty", _set("title", "  "), "title", "must not be empty"),
    (
        "too long text",
        _set("title", "x" * 301),
        "title",
        "should have at most %(max_length)s characters",
    ),
    (
        "not a key",
        _set("reports.0.key", "Del rapport"),
        "reports[0].key",
        "should be a key: lowercase letters a–z, digits and hyphens, starting with a letter or "
        "digit, at most 63 characters (no spaces, no å, ä or ö)",
    ),
    (
        "not a key of a table",
        _set("prerequisites.Budget", True),
        "prerequisites.Budget.[key]",
        "should be a key: lowercase letters a–z, digits and hyphens, starting with a letter or "
        "digit, at most 63 characters (no spaces, no å, ä or ö)",
    ),
    (
        "not a phone number",
        _set(f"{CONTACT}.phone", "ring Maria"),
        "parties.amf.contacts[0].phone",
        "should be a phone number: digits, perhaps a + first, and spaces, hyphens or "
        "parentheses (e.g. 042-10 50 00)",
    ),
    ("not a kind", _set("kind", "avtal"), "kind", "should be 'iop' or 'grant'"),
    ("not text", _set("title", 5), "title", "should be text (in quotes)"),
    (
        "not a number",
        _set("term.period_months", "tolv"),
        "term.period_months",
        "should be a whole number",
    ),
    (
        "not a number at all",
        _set("term.period_months", [12]),
        "term.period_months",
        "should be a whole number",
    ),
    (
        "a fraction",
        _set("term.period_months", 1.5),
        "term.period_months",
        "should be a whole number, without decimals",
    ),
    ("too small", _set("term.period_months", 0), "term.period_months", "should be at least %(ge)s"),
    (
        "too large",
        _set("term.period_months", 601),
        "term.period_months",
        "should be at most %(le)s",
    ),
    (
        "not a boolean",
        _set("termination.rescission", "kanske"),
        "termination.rescission",
        "should be true or false",
    ),
    (
        "not a boolean at all",
        _set("termination.rescission", [1]),
        "termination.rescission",
        "should be true or false",
    ),
    (
        "not a date",
        _set("term.start", "2024-13-01"),
        "term.start",
        "should be a date (YYYY-MM-DD, e.g. 2025-01-31)",
    ),
    (
        "not a date at all",
        _set("term.start", [2024]),
        "term.start",
        "should be a date (YYYY-MM-DD, e.g. 2025-01-31)",
    ),
    (
        "a date with a time",
        _set("term.start", dt.datetime(2024, 5, 1, 10, 0)),
        "term.start",
        "should be a date without a time of day (YYYY-MM-DD)",
    ),
    (
        "not a time",
        _set("reminders", {"send_time": "25:00"}),
        "reminders.send_time",
        "should be a time of day (HH:MM, e.g. 08:00)",
    ),
    (
        "not a time at all",
        _set("reminders", {"send_time": [8]}),
        "reminders.send_time",
        "should be a time of day (HH:MM, e.g. 08:00)",
    ),
    (
        "not a kind of party",
        _set("parties.amf.kind", "kommun"),
        "parties.amf.kind",
        "should be one of %(allowed)s",
    ),
    (
        "not a role",
        _set(f"{CONTACT}.roles", ["chef"]),
        "parties.amf.contacts[0].roles[0]",
        "should be one of %(allowed)s",
    ),
    (
        "no contacts",
        _set("parties.amf.contacts", []),
        "parties.amf.contacts",
        "too few: at least %(min_length)s needed, %(actual_length)s given",
    ),
    (
        "one party",
        lambda data: data.update(parties={"amf": data["parties"]["amf"]}),
        "parties",
        "too few: at least %(min_length)s needed, %(actual_length)s given",
    ),
    (
        "too many contacts",
        lambda data: data["parties"]["amf"].update(
            contacts=data["parties"]["amf"]["contacts"] * 26
        ),
        "parties.amf.contacts",
        "too many: at most %(max_length)s allowed, %(actual_length)s given",
    ),
    (
        "too many parties",
        lambda data: data.update(parties={f"p{n}": data["parties"]["amf"] for n in range(101)}),
        "parties",
        "too many: at most %(max_length)s allowed",
    ),
    (
        "parties not a table",
        _set("parties", ["amf"]),
        "parties",
        "should be a table (keys with values), not a single value or a list",
    ),
    (
        "term not a table",
        _set("term", "2024"),
        "term",
        "should be a table (keys with values), not a single value or a list",
    ),
    ("reports not a list", _set("reports", {"a": 1}), "reports", "should be a list: [ … ]"),
    (
        "no @",
        _set("coordinator.email", "malin.kommun.example.se"),
        "coordinator.email",
        "%(address)s is not a valid email address: it has no @",
    ),
    (
        "nothing after the @",
        _set("coordinator.email", "malin@"),
        "coordinator.email",
        "%(address)s is not a valid email address: there is nothing after the @",
    ),
    (
        "no period after the @",
        _set("coordinator.email", "malin@kommun"),
        "coordinator.email",
        "%(address)s is not a valid email address: the part after the @ has no period "
        "(as in kommun.se)",
    ),
]
CASES = BETWEEN_FIELDS + ON_A_FIELD + PYDANTIC


def problems_of(change: Callable[[Data], None]) -> list[Problem]:
    data = example()
    change(data)
    with pytest.raises(AgreementFileError) as caught:
        parse_agreement(copy.deepcopy(data), "broken.toml")
    return caught.value.problems


def every_problem() -> list[Problem]:
    """Every problem of every case, and of the files that cannot be read or parsed."""
    found = [p for _, change, _, _ in CASES for p in problems_of(change)]
    found += unreadable_problems() + unknown_email_problems() + unreachable_kinds()
    return found


def unreadable_problems() -> list[Problem]:
    found = []
    for written in ('id = "x"\ntitle = = "y"\n', "parties = [1,", "x"):
        with pytest.raises(AgreementFileError) as caught:
            loads_agreement(written)
        found += caught.value.problems
    return found


def unknown_email_problems() -> list[Problem]:
    """An address pydantic took and the email validator did not (an agreement made
    without validation, as older terms were): said by the rules between fields."""
    agreement = loads_agreement(EXAMPLE.read_text(encoding="utf-8"))
    found = []
    for address in ("malin", "malin@kommun", "malin@@kommun.se", "malin@kommun..se"):
        coordinator = agreement.coordinator.model_copy(update={"email": address})
        found += check(agreement.model_copy(update={"coordinator": coordinator}))
    return found


class _Other(BaseModel):
    """The kinds of pydantic error the agreement model cannot meet today but may."""

    above: Annotated[int, Field(gt=0)] = 1
    below: Annotated[int, Field(lt=5)] = 1
    choice: Literal["a", "b"] = "a"
    code: Annotated[str, Field(min_length=3)] = "abc"
    pattern: Annotated[str, Field(pattern=r"^x+$")] = "x"


def unreachable_kinds() -> list[Problem]:
    try:
        _Other.model_validate({"above": 0, "below": 5, "choice": "c", "code": "a", "pattern": "y"})
    except ValidationError as error:
        return _problems(error)
    raise AssertionError("valid")


def test_every_case_is_a_problem_of_its_kind_at_its_field() -> None:
    for name, change, location, msgid in CASES:
        found = problems_of(change)
        said = [(p.location, p.msgid) for p in found]
        assert (location, msgid) in said, (name, [(p.location, p.msgid, p.message) for p in found])


def test_every_problem_has_a_message_id() -> None:
    bare = [str(p) for p in every_problem() if p.msgid is None]
    assert not bare, bare


def test_every_problem_is_said_in_english_as_its_message() -> None:
    for problem in every_problem():
        assert problem.said("en") == problem.message
        assert problem.located("en") == str(problem)


def test_every_problem_is_said_in_swedish_with_every_parameter() -> None:
    for problem in every_problem():
        said = problem.said("sv")  # a parameter missing would be a KeyError
        assert said and "%(" not in said, problem
        assert problem.located("sv").endswith(said)
        if problem.location:
            assert problem.located("sv").startswith(f"{problem.location}: ")


def test_our_own_rules_say_their_message_id_in_english() -> None:
    """The English of our own rules is their message id filled in (and the value given, if
    the message does not name it): the Swedish translates what an English reader reads."""
    for name, change, location, _ in BETWEEN_FIELDS + ON_A_FIELD:
        (problem,) = [p for p in problems_of(change) if p.location == location][:1]
        assert problem.msgid is not None
        filled = problem.msgid % dict(problem.params)
        assert problem.message == filled or problem.message.startswith(f"{filled} (got "), name


def test_every_message_id_is_one_babel_extracts() -> None:
    extracted = message_ids()
    used = {p.msgid for p in every_problem()} | {GOT}
    assert used <= extracted, used - extracted


def test_the_value_given_is_shown_where_the_message_does_not_name_it() -> None:
    (problem,) = problems_of(_set("term.start", dt.date(1900, 5, 1)))
    assert problem.message == (
        "must lie between 1990-01-01 and 2199-12-31 (got datetime.date(1900, 5, 1))"
    )
    assert problem.got == "1900-05-01"
    assert problem.said("sv").endswith(" " + text("sv", GOT, got="1900-05-01"))


def test_the_toml_error_says_where_in_english_and_in_swedish() -> None:
    with pytest.raises(AgreementFileError) as caught:
        loads_agreement('id = "x"\ntitle = = "y"\n')
    (problem,) = caught.value.problems
    assert problem.message == "not valid TOML: Invalid value (at line 2, column 9)"
    assert problem.msgid == "not valid TOML: an error at line %(line)s, column %(column)s"
    assert dict(problem.params) == {"line": "2", "column": "9"}
    assert "2" in problem.said("sv") and "9" in problem.said("sv")


def test_files_that_cannot_be_read_say_why(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('title = "Föreningen"'.encode("latin-1"))
    large = tmp_path / "large.toml"
    large.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    for path, msgid in [
        (latin1, "not UTF-8 text (byte %(byte)s)"),
        (large, "%(size)s bytes is larger than %(limit)s bytes"),
        (tmp_path, "cannot read: it is a folder, not a file"),
        (tmp_path / "nowhere.toml", "cannot read: there is no such file"),
    ]:
        with pytest.raises(AgreementFileError) as caught:
            load_agreement(path)
        (problem,) = caught.value.problems
        assert problem.msgid == msgid
        assert problem.said("sv")
        assert caught.value.said("sv") == f"{path}: {problem.said('sv')}"


def test_a_problem_stays_frozen_and_hashable() -> None:
    problems = every_problem()
    assert len(set(problems)) <= len(problems)
    with pytest.raises(AttributeError):
        problems[0].message = "x"  # type: ignore[misc]


BROKEN = ROOT / "tests" / "broken" / "several-mistakes.toml"


def test_the_command_line_says_the_problems_in_swedish_by_default() -> None:
    with pytest.raises(AgreementFileError) as caught:
        load_agreement(BROKEN)
    result = CliRunner().invoke(app, ["check", str(BROKEN)], env={"AGREEMENTS_LANGUAGE": None})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    for problem in caught.value.problems:
        assert f"{BROKEN}: {problem.located('sv')}" in lines


def test_the_command_line_says_the_problems_in_english_when_asked() -> None:
    with pytest.raises(AgreementFileError) as caught:
        load_agreement(BROKEN)
    result = CliRunner().invoke(app, ["check", str(BROKEN)], env={"AGREEMENTS_LANGUAGE": "en"})
    assert result.exit_code == 1
    assert result.output.splitlines() == str(caught.value).splitlines()


def message_ids() -> set[str]:
    """Every message id written in the sources of the problems, as Babel extracts them."""
    found = set()
    for source in SOURCES:
        for _, message, _, _ in extract_from_file("python", ROOT / source, keywords={"N_": None}):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_problem_has_swedish_in_the_catalog() -> None:
    """Fails until the problems' messages are merged into the catalog (i18n/)."""
    with catalog_path("sv").open("rb") as f:
        swedish = read_po(f, locale="sv")
    missing = []
    for msgid in sorted(message_ids()):
        entry = swedish.get(msgid)
        if entry is None or entry.fuzzy or not entry.string or entry.string == msgid:
            missing.append(msgid)
    assert not missing, "no Swedish for:\n" + "\n".join(missing)
    for problem in every_problem():
        assert problem.msgid is not None
        entry = swedish.get(problem.msgid)
        assert entry is not None
        assert isinstance(entry.string, str)
        entry.string % dict(problem.params)  # every parameter the Swedish names is given
