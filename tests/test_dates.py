"""Swedish date rules (DOMAIN.md): hand-checked cases against a calendar, and properties over
wide date ranges (leap days, month ends, holidays and eves, daylight saving time)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.agreement import DateRule
from models.schedule import dates

D = dt.date
DAYS = st.dates(min_value=D(1990, 1, 1), max_value=D(2100, 12, 31))


@pytest.mark.parametrize(
    ("written", "effective"),
    [
        (D(2025, 6, 20), D(2025, 6, 23)),  # midsommarafton (an eve), then the weekend
        (D(2025, 12, 24), D(2025, 12, 29)),  # julafton, juldagen, annandag jul, weekend
        (D(2025, 12, 31), D(2026, 1, 2)),  # nyårsafton, nyårsdagen
        (D(2026, 5, 1), D(2026, 5, 4)),  # första maj on a Friday
        (D(2024, 5, 1), D(2024, 5, 2)),
        (D(2025, 4, 18), D(2025, 4, 22)),  # långfredagen, weekend, annandag påsk
        (D(2025, 6, 6), D(2025, 6, 9)),  # nationaldagen on a Friday
        (D(2021, 1, 31), D(2021, 2, 1)),  # a Sunday
        (D(2025, 1, 30), D(2025, 1, 30)),  # an ordinary Thursday stays
    ],
)
def test_action_deadlines_move_to_the_next_business_day(written: D, effective: D) -> None:
    assert dates.effective_date(written, DateRule.forward) == effective


@pytest.mark.parametrize(
    ("written", "effective"),
    [
        (D(2025, 6, 21), D(2025, 6, 19)),  # midsommardagen (Sat): back past the eve
        (D(2024, 6, 30), D(2024, 6, 28)),  # a Sunday: the Friday before
        (D(2026, 1, 1), D(2025, 12, 30)),  # nyårsdagen, nyårsafton: back to the 30th
    ],
)
def test_notices_counted_back_never_move_later(written: D, effective: D) -> None:
    assert dates.effective_date(written, DateRule.back) == effective


def test_a_date_with_no_rule_stays_as_written() -> None:
    assert dates.effective_date(D(2025, 12, 25), DateRule.none) == D(2025, 12, 25)


def test_the_eves_are_not_business_days_and_have_names() -> None:
    for eve in (D(2025, 6, 20), D(2025, 12, 24), D(2025, 12, 31)):
        assert not dates.is_business_day(eve)
    assert dates.holiday_name(D(2025, 6, 20)) == "Midsommarafton"
    assert dates.is_business_day(D(2025, 6, 19))


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2024, 1, 31), 1, D(2024, 2, 29)),  # leap year
        (D(2023, 1, 31), 1, D(2023, 2, 28)),
        (D(2024, 2, 29), 12, D(2025, 2, 28)),
        (D(2024, 8, 31), 1, D(2024, 9, 30)),
        (D(2024, 5, 1), 36, D(2027, 5, 1)),
    ],
)
def test_month_arithmetic_clamps_to_the_month_end(day: D, months: int, expected: D) -> None:
    assert dates.add_months(day, months) == expected


def test_months_before_clamps_too() -> None:
    assert dates.months_before(D(2025, 5, 31), 3) == D(2025, 2, 28)
    assert dates.months_before(D(2025, 4, 30), 3) == D(2025, 1, 30)


def test_reminders_go_out_on_the_business_day_before_never_later() -> None:
    # 30 days before Monday 2 June 2025 is Saturday 3 May: the reminder goes on Friday 2 May.
    assert dates.reminder_day(D(2025, 6, 2), 30) == D(2025, 5, 2)
    assert dates.reminder_day(D(2025, 6, 2), 0) == D(2025, 6, 2)


@pytest.mark.parametrize(
    ("day", "offset"),
    [
        (D(2025, 3, 29), dt.timedelta(hours=1)),  # the day before summer time
        (D(2025, 3, 30), dt.timedelta(hours=2)),  # summer time starts at 02:00
        (D(2025, 10, 25), dt.timedelta(hours=2)),
        (D(2025, 10, 26), dt.timedelta(hours=1)),  # back to winter time at 03:00
    ],
)
def test_send_times_are_stockholm_wall_clock_across_dst(day: D, offset: dt.timedelta) -> None:
    moment = dates.local_time(day, dt.time(8, 0))
    assert moment.utcoffset() == offset
    assert moment.astimezone(dates.STOCKHOLM).time() == dt.time(8, 0)
    assert moment.astimezone(dt.UTC).hour == 8 - offset.seconds // 3600


@settings(max_examples=300, deadline=None)
@given(DAYS)
def test_forward_rule_is_the_first_business_day_on_or_after(day: D) -> None:
    effective = dates.effective_date(day, DateRule.forward)
    assert effective >= day
    assert dates.is_business_day(effective)
    assert (effective - day).days <= 6
    between = day
    while between < effective:
        assert not dates.is_business_day(between)
        between += dt.timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(DAYS)
def test_back_rule_is_the_last_business_day_on_or_before(day: D) -> None:
    effective = dates.effective_date(day, DateRule.back)
    assert effective <= day
    assert dates.is_business_day(effective)
    assert (day - effective).days <= 6
    between = day
    while between > effective:
        assert not dates.is_business_day(between)
        between -= dt.timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(DAYS, st.integers(min_value=0, max_value=240))
def test_add_months_lands_in_the_right_month_clamped(day: D, months: int) -> None:
    result = dates.add_months(day, months)
    index = day.year * 12 + day.month - 1 + months
    assert (result.year, result.month) == (index // 12, index % 12 + 1)
    next_month = D(result.year + result.month // 12, result.month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    assert result.day == min(day.day, last_day)
    assert dates.months_before(result, months) <= day


@settings(max_examples=200, deadline=None)
@given(DAYS, st.sampled_from([1, 3, 6, 12, 24]), st.integers(min_value=2, max_value=12))
def test_periods_tile_the_term_without_gaps_or_overlaps(start: D, months: int, n: int) -> None:
    bounds = [dates.period_bounds(start, months, i) for i in range(1, n + 1)]
    assert bounds[0][0] == start
    for (first, last), (following, _) in itertools.pairwise(bounds):
        assert first <= last
        assert following == last + dt.timedelta(days=1)
    assert bounds[-1][1] == dates.add_months(start, n * months) - dt.timedelta(days=1)


@settings(max_examples=200, deadline=None)
@given(DAYS, st.integers(min_value=0, max_value=90))
def test_reminder_day_is_a_business_day_no_later_than_promised(day: D, before: int) -> None:
    effective = dates.effective_date(day, DateRule.forward)
    reminder = dates.reminder_day(effective, before)
    assert reminder <= effective - dt.timedelta(days=before) or reminder == effective
    assert dates.is_business_day(reminder)


# Renewals are counted from the start, like the periods (issue 12) ----------------------------


def test_half_yearly_renewals_from_31_august_end_with_the_periods() -> None:
    start = D(2025, 8, 31)
    end = dates.term_end(start, 6)
    assert end == D(2026, 2, 27)  # 2026-02-28 is start + 6 months: the day before ends it
    ends = dates.renewal_ends(start, end, 6, 6, dates.term_end(start, 36))
    # Chained from the previous end, the second would be 2026-08-27 (from 2026-02-28).
    assert ends == [
        D(2026, 2, 27),
        D(2026, 8, 30),
        D(2027, 2, 27),
        D(2027, 8, 30),
        D(2028, 2, 28),  # start + 30 months is 2028-02-29 (a leap year)
        D(2028, 8, 30),
    ]
    assert ends == [dates.period_bounds(start, 6, i)[1] for i in range(1, 7)]


def test_yearly_renewals_from_a_leap_day_reach_a_maximum_of_48_months_exactly() -> None:
    start = D(2028, 2, 29)
    limit = dates.term_end(start, 48)
    assert limit == D(2032, 2, 28)
    ends = dates.renewal_ends(start, dates.term_end(start, 12), 12, 12, limit)
    # Chained: 2030-02-27, 2031-02-27, 2032-02-27, and the maximum never ends a renewal.
    assert ends == [D(2029, 2, 27), D(2030, 2, 27), D(2031, 2, 27), D(2032, 2, 28)]
    assert ends[-1] == limit


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (D(2025, 11, 30), 3, [D(2026, 2, 27), D(2026, 5, 29), D(2026, 8, 29), D(2026, 11, 29)]),
        (D(2025, 10, 31), 4, [D(2026, 2, 27), D(2026, 6, 29), D(2026, 10, 30), D(2027, 2, 27)]),
        (D(2023, 1, 29), 1, [D(2023, 2, 27), D(2023, 3, 28), D(2023, 4, 28), D(2023, 5, 28)]),
    ],
)
def test_renewals_from_the_29th_30th_and_31st_end_on_the_same_day_number(
    start: D, months: int, expected: list[D]
) -> None:
    ends = dates.renewal_ends(start, expected[0], months, months, expected[-1])
    assert ends == expected


def test_a_renewal_longer_than_a_period_is_counted_from_the_start_too() -> None:
    start = D(2025, 8, 31)
    end = dates.term_end(start, 6)
    ends = dates.renewal_ends(start, end, 6, 12, dates.term_end(start, 30))
    assert ends == [D(2026, 2, 27), D(2027, 2, 27), D(2028, 2, 28)]
    assert dates.months_to(start, D(2028, 2, 28), 6) == 30


@settings(max_examples=300, deadline=None)
@given(
    DAYS,
    st.sampled_from([1, 2, 3, 4, 6, 12]),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=6),
)
def test_every_renewal_ends_where_a_period_ends(
    start: D, months: int, initial: int, per_renewal: int, renewals: int
) -> None:
    renewal = months * per_renewal
    end = dates.term_end(start, initial * months)
    limit = dates.term_end(start, initial * months + renewals * renewal)
    ends = dates.renewal_ends(start, end, months, renewal, limit)
    period_ends = {dates.period_bounds(start, months, i)[1] for i in range(1, 100)}
    assert ends[0] == end and ends[-1] == limit
    assert len(ends) == renewals + 1
    assert set(ends) <= period_ends
    assert ends == sorted(set(ends))
