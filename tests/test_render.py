"""Formatting every email shares: amounts, dates, subjects that stay one line."""

from __future__ import annotations

import datetime as dt

from emails.render import day, kronor, long_date, one_line


def test_amounts_are_whole_kronor_with_a_no_break_space_between_thousands():
    assert kronor(650000) == "650\u00a0000\u00a0kr"
    assert kronor(1492049) == "1\u00a0492\u00a0049\u00a0kr"
    assert kronor(0) == "0\u00a0kr"
    assert kronor(None) == ""


def test_dates_are_iso_with_the_weekday_and_long_form_for_prose():
    assert day(dt.date(2025, 1, 30)) == "2025-01-30 (torsdag)"
    assert day(dt.date(2025, 1, 30), "en") == "2025-01-30 (Thursday)"
    assert long_date(dt.date(2025, 1, 30)) == "30 januari 2025"


def test_a_header_never_carries_a_raw_newline():
    assert one_line("Delrapport\r\nBcc: x@example.org") == "Delrapport Bcc: x@example.org"
    assert one_line("a\u2028b\nc") == "a b c"
