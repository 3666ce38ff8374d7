"""Refusals are stable codes with parameters, said in the reader's language.

Every code the decider, the agreement's and the signing round's `reject` and ops use has a
message (i18n/refusals.py), the parameters each call gives fill its message, and
`explain` says a real refusal in Swedish without English, in English without Swedish.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from agreements import ops
from emails.links import LinkError
from i18n import text
from i18n.refusals import REFUSALS, explain
from models.commands import ConfirmPrerequisites, MilestoneUpdate, StartSigning
from models.plan import MilestoneStatus
from tests.test_decider import DRAFTED, SIGNED, at, new, signed, step
from workflows import decider
from workflows.agreement import reject
from workflows.decider import Refusal

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _code(node: ast.expr) -> list[str]:
    """The code(s) a call's argument names: a literal, or either side of an `if`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _code(node.body) + _code(node.orelse)
    return []


def refusals() -> list[tuple[str, str, set[str]]]:
    """(file, code, parameter names) of every refusal the sources raise."""
    found = []
    sources = {
        "workflows/decider.py": ("Refusal", 0),
        "workflows/signing.py": ("reject", 0),
        "agreements/ops.py": ("OperationError", 1),
    }
    for name, (function, position) in sources.items():
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or getattr(node.func, "id", None) != function:
                continue
            if len(node.args) <= position:
                continue
            keywords = {k.arg for k in node.keywords if k.arg}
            for code in _code(node.args[position]):
                found.append((name, code, keywords))
        if name == "agreements/ops.py":  # refusals ops finds before asking the workflow
            for node in ast.walk(tree):
                call = isinstance(node, ast.Call) and getattr(node.func, "id", None)
                if call == "refused" and len(node.args) > 5:  # type: ignore[attr-defined]
                    for code in _code(node.args[5]):  # type: ignore[attr-defined]
                        found.append((name, code, {"agreement"}))
    return found


def test_every_refusal_code_has_a_message():
    found = refusals()
    codes = {code for _, code, _ in found}
    assert len(codes) > 60, "the decider, the round and ops refuse with codes"
    assert {"closing", "ended"} <= set(REFUSALS)  # the agreement's own, while it closes
    assert sorted(codes - set(REFUSALS)) == []


def test_every_refusal_gives_what_its_message_names():
    for name, code, given in refusals():
        wanted = set(PLACEHOLDER.findall(REFUSALS[code]))
        if "party" in given:
            given = given | {"party_name"}  # a party the terms do not know: its key
        assert wanted <= given, (name, code, wanted - given)


def test_every_refusal_has_swedish_words():
    for code, message in REFUSALS.items():
        swedish = text("sv", message)
        assert swedish != message, code
        assert set(PLACEHOLDER.findall(swedish)) == set(PLACEHOLDER.findall(message)), code


def caught(core, command, now) -> Refusal:
    with pytest.raises(Refusal) as error:
        decider.decide(core, command, now)
    return error.value


def test_a_refusal_reads_in_swedish_with_its_state_and_milestone_in_words():
    refusal = caught(signed(), StartSigning(), SIGNED)
    assert refusal.code == "not-draft" and refusal.params == {"state": "signed"}
    assert explain("sv", refusal) == (
        "det går bara medan avtalet är ett utkast; nu är det undertecknat, har inte börjat löpa"
    )
    assert explain("en", refusal) == (
        "this can only be done while the agreement is a draft; it is signed, not started"
    )
    assert str(refusal) == "a signature round starts from a draft; this one is signed"

    core = signed()
    first = next(m for m in decider.planned(core, at("2025-02-01")).milestones if m.payer)
    paid = MilestoneUpdate(milestone=first.id, status=MilestoneStatus.paid, by="malin")
    refusal = caught(core, paid, at("2025-02-01"))
    assert refusal.params == {"milestone": first.title}
    assert explain("sv", refusal) == f"{first.title} har inte registrerats som fakturerad"
    assert first.id not in explain("sv", refusal)  # a milestone by its title, not its id


def test_missing_prerequisites_are_named_by_their_text_never_their_key():
    core = step(new(), ConfirmPrerequisites(keys=["no-market"]), DRAFTED).core
    refusal = caught(core, StartSigning(), DRAFTED)
    assert refusal.code == "prerequisites-missing"
    said = explain("sv", refusal)
    assert said.startswith("bekräfta först förutsättningarna för IOP: ")
    assert "trust" not in said and "no-market" not in said
    assert "Alla parter bidrar med resurser" in said


def test_a_refusal_reaches_the_client_with_its_code_and_parameters():
    """What the workflow raises (workflows/agreement.py `reject`) is what ops reads back."""
    error = reject("not-signed", "the agreement is not signed yet (draft)", {"state": "draft"})
    assert error.non_retryable and error.type == "Rejected"
    message, code, params = ops.refusal(error)
    assert (message, code, params) == (
        "the agreement is not signed yet (draft)",
        "not-signed",
        {"state": "draft"},
    )
    refused = ops.OperationError(message, code, **params)
    assert str(refused) == "the agreement is not signed yet (draft)"
    assert explain("sv", refused) == "avtalet är inte undertecknat ännu (det är utkast)"


def test_ops_refusals_have_codes_and_keep_their_english_text():
    with pytest.raises(ops.OperationError) as error:
        ops.update_id_for("decide", "x" * 201)
    assert error.value.code == "key-length"
    assert str(error.value) == "Idempotency-Key: must be 1 to 200 characters, not 201"
    assert explain("sv", error.value) == "Idempotency-Key: måste vara 1 till 200 tecken, inte 201"


def test_an_error_without_a_code_is_shown_as_its_text_and_a_link_in_its_language() -> None:
    assert explain("sv", ValueError("something odd")) == "something odd"
    assert explain("sv", ops.OperationError("plain words")) == "plain words"
    expired = LinkError("The link has expired.", "link-expired")
    assert explain("sv", expired).startswith("Länken har gått ut")
    assert explain("en", expired).startswith("The link has expired")


def test_a_code_from_another_version_or_with_other_parameters_is_shown_as_its_text():
    assert explain("sv", Refusal("brand-new", "a new reason", x="1")) == "a new reason"
    assert explain("sv", Refusal("not-signed", "old words")) == "old words"  # no state
