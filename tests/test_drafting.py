"""Drafting in the pages (agreements/web/drafting.py): the form holds every agreement's
terms exactly, builds the same terms again, and puts each problem next to its field."""

from __future__ import annotations

import html
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agreements.web import drafting
from models.lifecycle import terms_sha256
from models.loader import load_agreement, loads_agreement
from tests.conftest import TOKEN

EXAMPLES = sorted(Path("examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_an_agreement_opened_in_the_form_and_saved_unchanged_has_the_same_terms(
    path: Path,
) -> None:
    agreement = load_agreement(path)
    fields = drafting.fields_of(agreement)
    draft = drafting.build(fields, "sv")
    assert draft.count == 0, (draft.errors, draft.general)
    assert draft.agreement is not None
    assert terms_sha256(draft.agreement) == terms_sha256(agreement)
    assert draft.agreement == agreement


# A new agreement as a coordinator fills in the form.
KVARNBY = {
    "title": "IOP Läxhjälp i Kvarnby",
    "reference": "KS 2026/123",
    "coordinator.name": "Anna Ek",
    "coordinator.email": "anna.ek@kommun.example.se",
    "coordinator.party": "0",
    "party.0.name": "Kvarnby kommun, Kultur- och fritidsförvaltningen",
    "party.0.org_number": "212000-1355",
    "party.0.contact.0.name": "Anna Ek",
    "party.0.contact.0.email": "anna.ek@kommun.example.se",
    "party.1.name": "Läxhjälpen Kvarnby ideell förening",
    "party.1.contact.0.name": "Sam Öberg",
    "party.1.contact.0.email": "sam@laxhjalpen.example.se",
    "contribution.0.payer": "0",
    "contribution.0.payee": "1",
    "contribution.0.amount": "250 000 kr",
    "report.0.name": "Verksamhetsrapport",
    "report.0.party": "1",
    "term.start": "2027-01-01",
    "term.end": "2028-12-31",
}


def test_a_new_agreement_from_the_blank_form() -> None:
    fields = {**drafting.blank(), **KVARNBY}
    draft = drafting.build(fields, "sv")
    assert draft.count == 0, (draft.errors, draft.general)
    a = draft.agreement
    assert a is not None
    assert a.id == "iop-laxhjalp-i-kvarnby"
    assert (
        list(a.parties)
        == [
            "kvarnby-kommun-kultur-och-fritidsforvaltni",
            "laxhjalpen-kvarnby-ideell-forening",
        ][: len(a.parties)]
        or len(a.parties) == 2
    )
    first, second = a.parties
    assert a.coordinator.party == first
    assert a.contributions[0].payer == first and a.contributions[0].payee == second
    assert a.contributions[0].amount == 250_000
    assert a.reports[0].party == second and a.reports[0].key == "verksamhetsrapport"
    # The same terms as a file would give.
    again = loads_agreement(drafting_toml(a))
    assert terms_sha256(again) == terms_sha256(a)


def drafting_toml(agreement: object) -> str:
    from models.loader import dumps_agreement

    return dumps_agreement(agreement)  # type: ignore[arg-type]


def test_each_problem_is_next_to_its_field() -> None:
    agreement = load_agreement(EXAMPLES[0])
    fields = drafting.fields_of(agreement)
    fields["party.1.org_number"] = "802002-8639"  # wrong check digit
    fields["party.0.contact.0.email"] = "inte en adress"
    fields["term.period_months"] = "tolv"
    fields["contribution.0.payer"] = "99"
    draft = drafting.build(fields, "sv")
    assert draft.agreement is None
    assert "contribution.0.payer" in draft.errors
    fields["contribution.0.payer"] = "0"
    draft = drafting.build(fields, "sv")
    assert set(draft.errors) == {
        "party.1.org_number",
        "party.0.contact.0.email",
        "term.period_months",
    }, (draft.errors, draft.general)
    assert not draft.general


def test_rows_left_empty_are_left_out_and_rows_can_be_added() -> None:
    agreement = load_agreement(EXAMPLES[0])
    fields = drafting.fields_of(agreement)
    fields = drafting.grown(fields, "party")
    fields = drafting.grown(fields, "contact.0")
    fields = drafting.grown(fields, "report")
    new = len(agreement.parties)
    assert f"party.{new}.kind" in fields
    draft = drafting.build(fields, "sv")
    assert draft.agreement is not None and draft.agreement == agreement


def test_a_damaged_hidden_part_is_said_not_raised() -> None:
    fields = drafting.fields_of(load_agreement(EXAMPLES[0]))
    fields["kept"] = "{not json"
    draft = drafting.build(fields, "sv")
    assert draft.agreement is None and draft.general


def test_the_form_reads_only_its_own_fields() -> None:
    class Form(dict[str, str]):
        def getlist(self, name: str) -> list[str]:
            return [self[name]]

    form = Form(
        {
            "title": "x" * 10_000,
            "party.0.name": "A",
            "evil": "1",
            "party.0.contact.0.roles": "contact",
        }
    )
    fields = drafting.read_form(form)
    assert set(fields) == {"title", "party.0.name", "party.0.contact.0.roles"}
    assert len(fields["title"]) == drafting.MAX_VALUE
    assert fields["party.0.contact.0.roles"] == ["contact"]
    assert tomllib  # the examples are TOML files


# --- the pages, against the real service ------------------------------------------------------


def form_of(page: str) -> dict[str, Any]:
    """The fields a browser would send from the drafting form as it is shown (selected
    options, checked boxes, hidden and typed values)."""
    form = page[page.index('id="draft-form"') :]
    form = form[: form.index("</form>")]
    fields: dict[str, Any] = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        got = html.unescape(value.group(1)) if value else ""
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                fields.setdefault(name.group(1), []).append(got)
            continue
        fields[name.group(1)] = got
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S):
        fields[name] = html.unescape(body)
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body) or re.search(
            r'<option value="([^"]*)"', body
        )
        fields[name] = html.unescape(chosen.group(1)) if chosen else ""
    return fields


def test_a_coordinator_drafts_checks_corrects_and_adds_an_agreement_in_the_form(
    web: tuple[TestClient, Path],
) -> None:
    client, _ = web
    client.post("/login", data={"token": TOKEN})
    blank = client.get("/draft")
    assert blank.status_code == 200 and "Nytt avtal" in blank.text
    fields = form_of(blank.text)
    fields.update(KVARNBY)
    fields["party.1.org_number"] = "802002-8639"  # a wrong check digit
    # One more party row, asked for with the button: nothing typed is lost.
    grown = client.post("/draft", data={**fields, "do": "more:party"})
    assert grown.status_code == 200
    again = form_of(grown.text)
    assert "party.2.name" in again and again["party.1.org_number"] == "802002-8639"
    assert again["title"] == "IOP Läxhjälp i Kvarnby"
    # Saved with a mistake: refused, the problem next to its field, in the summary.
    refused = client.post("/draft", data={**again, "do": "save"})
    assert refused.status_code == 422
    assert 'id="f-party-1-org_number-error"' in refused.text
    assert 'aria-invalid="true"' in refused.text and 'href="#f-party-1-org_number"' in refused.text
    kept = form_of(refused.text)
    assert kept["contribution.0.amount"] == "250 000 kr"
    # The plan beside the form, once the terms hold.
    kept["party.1.org_number"] = "802002-8638"
    checked = client.post("/draft", data={**kept, "do": "check"})
    assert checked.status_code == 200 and "f-party-1-org_number-error" not in checked.text
    assert "<svg" in checked.text and "Verksamhetsrapport" in checked.text
    fragment = client.post("/draft/plan", data=kept)
    assert fragment.status_code == 200 and "<svg" in fragment.text
    assert "<html" not in fragment.text
    assert client.post("/draft/plan", data={**kept, "csrf": "x"}).status_code == 403
    added = client.post("/draft", data={**kept, "do": "save"}, follow_redirects=False)
    assert added.status_code == 303, added.text
    assert added.headers["location"] == "/a/iop-laxhjalp-i-kvarnby"
    page = client.get("/a/iop-laxhjalp-i-kvarnby")
    assert page.status_code == 200 and "Läxhjälpen Kvarnby" in page.text
    # Changed in the same form: the draft's terms are replaced, with who did it.
    change = client.get("/a/iop-laxhjalp-i-kvarnby/draft")
    assert change.status_code == 200
    changed = form_of(change.text)
    assert changed["party.1.name"] == "Läxhjälpen Kvarnby ideell förening"
    changed["contribution.0.amount"] = "300000"
    saved = client.post(
        "/a/iop-laxhjalp-i-kvarnby/draft", data={**changed, "do": "save"}, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    for _ in range(100):
        terms = client.get("/a/iop-laxhjalp-i-kvarnby/terms.toml")
        if "300000" in terms.text:
            break
        time.sleep(0.05)
    assert loads_agreement(terms.text).contributions[0].amount == 300_000
    # Two people with the draft open at once: the second save, made from the terms as they
    # were, is refused with a sentence saying so, and what they typed is still there.
    one = form_of(client.get("/a/iop-laxhjalp-i-kvarnby/draft").text)
    two = form_of(client.get("/a/iop-laxhjalp-i-kvarnby/draft").text)
    one["contribution.0.amount"] = "310000"
    first = client.post("/a/iop-laxhjalp-i-kvarnby/draft", data={**one, "do": "save"})
    assert first.status_code == 200  # followed to the agreement's page
    two["reference"] = "KS 2026/999"
    second = client.post("/a/iop-laxhjalp-i-kvarnby/draft", data={**two, "do": "save"})
    assert second.status_code == 409 and "ändrats av någon annan" in second.text
    assert form_of(second.text)["reference"] == "KS 2026/999"
    # The page's list of emails, alone, for the page's script; only for those who may read.
    outbox = client.get("/a/iop-laxhjalp-i-kvarnby/outbox")
    assert outbox.status_code == 200 and "<table>" in outbox.text and "<html" not in outbox.text
    assert 'data-live-outbox="/a/iop-laxhjalp-i-kvarnby/outbox"' in page.text
    assert client.get("/a/finns-inte/outbox").status_code == 404


def test_documents_travel_through_the_form_and_a_row_removes_one() -> None:
    agreement = load_agreement(EXAMPLES[0])
    documents = [
        {"sha256": c * 64, "name": f"Dok {c}", "kind": kind, "size": 100, "pages": 2}
        for c, kind in (("a", "text"), ("b", "attachment"))
    ]
    with_documents = agreement.model_validate(
        {**agreement.model_dump(mode="json"), "documents": documents}
    )
    fields = drafting.fields_of(with_documents)
    assert fields["document.1.name"] == "Dok b" and "sha256" in fields["document.1.kept"]
    draft = drafting.build(fields, "sv")
    assert draft.agreement == with_documents
    fields["document.0.remove"] = "yes"
    fields["document.1.name"] = "Bilaga 1"
    draft = drafting.build(fields, "sv")
    assert draft.agreement is not None
    assert [(d.name, d.sha256) for d in draft.agreement.documents] == [("Bilaga 1", "b" * 64)]
