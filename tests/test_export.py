"""An agreement exported as a file and read back gives the same terms (the same SHA-256
that is signed), for every real agreement and for drafts with every optional part."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agreements.cli import shifted
from models.lifecycle import terms_sha256
from models.loader import dumps_agreement, load_agreement, loads_agreement

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_export_and_import_give_the_same_terms(path: Path) -> None:
    agreement = load_agreement(path)
    again = loads_agreement(dumps_agreement(agreement))
    assert again == agreement
    assert terms_sha256(again) == terms_sha256(agreement)
    assert dumps_agreement(again) == dumps_agreement(agreement)  # stable


@settings(max_examples=60, deadline=None)
@given(
    title=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
        min_size=1,
        max_size=80,
    ).filter(lambda t: t.strip() == t and t != ""),
    years=st.integers(min_value=0, max_value=10),
)
def test_any_title_and_term_survive_the_round_trip(title: str, years: int) -> None:
    """Quotes, backslashes, accents and any script in a title, and the term moved."""
    moved = loads_agreement(shifted(EXAMPLES[-1].read_text(encoding="utf-8"), years))
    changed = moved.model_copy(update={"title": title})
    again = loads_agreement(dumps_agreement(changed))
    assert again == changed and terms_sha256(again) == terms_sha256(changed)
    assert isinstance(again.term.start, dt.date)
