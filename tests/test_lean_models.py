"""What a worker holds per cached agreement: the parts of the terms that many agreements
share are held once, every model shares its set of given field names, the workflow's input
travels without its defaults, and the shell can remember the rows it wrote in 16 bytes each.
Plain pydantic, no Temporal; the memory itself is measured by `python -m bench --only memory`."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic_core import to_json
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.common import SIGNED, agreement_copy
from models.agreement import Agreement, Contact
from models.core import AgreementInput
from models.lifecycle import terms_sha256
from models.loader import load_agreement
from models.plan import MilestoneStatus
from workflows import decider

NOW = dt.datetime(2031, 6, 1, 10, tzinfo=dt.UTC)


def as_the_worker_reads_it(value: AgreementInput) -> AgreementInput:
    """The workflow input through Temporal's converter, as a worker receives it."""
    [payload] = pydantic_data_converter.payload_converter.to_payloads([value])
    [back] = pydantic_data_converter.payload_converter.from_payloads([payload], [AgreementInput])
    assert isinstance(back, AgreementInput)
    return back


def test_two_agreements_with_the_same_coordinator_and_parties_hold_them_once():
    first = as_the_worker_reads_it(AgreementInput(agreement=agreement_copy(1)))
    second = as_the_worker_reads_it(AgreementInput(agreement=agreement_copy(2)))
    assert first.agreement.id != second.agreement.id
    assert first.agreement.coordinator is second.agreement.coordinator
    for key, party in first.agreement.parties.items():
        assert party is second.agreement.parties[key]
    assert first.agreement.reminders is second.agreement.reminders
    # Each agreement's own terms are still its own, and read back unchanged.
    assert first.agreement is not second.agreement
    assert terms_sha256(first.agreement) == terms_sha256(agreement_copy(1))


def test_a_part_is_shared_only_with_one_given_the_same_fields():
    terse = load_agreement(SIGNED)  # the file gives a contact's name, email and roles
    full = Agreement.model_validate_json(terse.model_dump_json())  # every field given
    [given, *_] = next(iter(terse.parties.values())).contacts
    [read, *_] = next(iter(full.parties.values())).contacts
    assert given == read and given.model_fields_set != read.model_fields_set
    assert given is not read
    assert read.model_dump(exclude_unset=True) == read.model_dump()
    again = Agreement.model_validate_json(terse.model_dump_json())
    assert next(iter(again.parties.values())).contacts[0] is read


def test_the_shared_names_cannot_be_changed_and_a_copy_gets_its_own():
    contact = Contact(name="Maria Chef", email="maria@kommun.example.se")
    with pytest.raises(TypeError):
        contact.model_fields_set.add("phone")
    titled = contact.model_copy(update={"title": "Chef"})
    assert titled.title == "Chef" and "title" in titled.model_fields_set
    assert "title" not in contact.model_fields_set


def test_the_workflow_input_travels_without_its_defaults_and_reads_back_the_same():
    core = decider.take_on(AgreementInput(agreement=agreement_copy(1)).core(), NOW, NOW).core
    value = AgreementInput(**dict(core), clock_offset_seconds=5.0)
    [payload] = pydantic_data_converter.payload_converter.to_payloads([value])
    full = to_json(value.model_dump())  # as Python, then JSON: every field, defaults too
    assert len(payload.data) < 0.7 * len(full), (len(payload.data), len(full))
    back = as_the_worker_reads_it(value)
    assert back == value
    assert terms_sha256(back.agreement) == terms_sha256(value.agreement)


def test_a_row_fingerprint_changes_with_the_row_and_only_then():
    core = decider.take_on(AgreementInput(agreement=agreement_copy(1)).core(), NOW, NOW).core
    rows = decider.outlook(core, NOW).milestones
    again = decider.outlook(core, NOW).milestones
    assert [decider.fingerprint(r) for r in rows] == [decider.fingerprint(r) for r in again]
    assert len({decider.fingerprint(r) for r in rows}) == len(rows)
    paid = rows[0].model_copy(update={"status": MilestoneStatus.paid})
    assert decider.fingerprint(paid) != decider.fingerprint(rows[0])
