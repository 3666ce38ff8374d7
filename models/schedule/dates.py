"""Swedish date rules (Lag (1930:173) om beräkning av lagstadgad tid) as pure functions.

- Months are counted by day number, clamped to the month's last day (§ 1).
- An action deadline on a Saturday, Sunday, public holiday, midsommarafton,
  julafton or nyårsafton may be met on the next weekday (§ 2): rule `forward`.
- A notice counted back from an end is never moved later: it moves to the last
  weekday on or before it (rule `back`), so that reminders come earlier instead.
- Send times are local Europe/Stockholm wall-clock times, correct across DST.

No I/O and no clock: safe to call from workflow code.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from dateutil.relativedelta import relativedelta

from models.agreement import DateRule

STOCKHOLM = ZoneInfo("Europe/Stockholm")

# Public holidays plus the de facto holidays: the three eves are only in DE_FACTO since 0.86.
_CATEGORIES = (holidays.PUBLIC, holidays.DE_FACTO)


@lru_cache(maxsize=256)
def _year_holidays(year: int, language: str) -> dict[dt.date, str]:
    calendar = holidays.country_holidays(
        "SE", years=year, categories=_CATEGORIES, language="sv" if language == "sv" else "en_US"
    )
    return dict(calendar.items())


def warm(first: int = 1990, last: int = 2100) -> None:
    """Compute the holiday calendars ahead (a worker does this once at start)."""
    for year in range(first, last + 1):
        _year_holidays(year, "sv")


def holiday_name(day: dt.date, language: str = "sv") -> str | None:
    """The name of the Swedish (de facto) holiday on `day`, or None."""
    return _year_holidays(day.year, language).get(day)


def is_business_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in _year_holidays(day.year, "sv")


def next_business_day(day: dt.date) -> dt.date:
    """`day` itself when it is a weekday that is no holiday, else the next such day."""
    while not is_business_day(day):
        day += dt.timedelta(days=1)
    return day


def previous_business_day(day: dt.date) -> dt.date:
    """`day` itself when it is a weekday that is no holiday, else the last such day before it."""
    while not is_business_day(day):
        day -= dt.timedelta(days=1)
    return day


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day number `months` later (or earlier); the month's last day where there is none."""
    result: dt.date = day + relativedelta(months=months)
    return result


def months_before(day: dt.date, months: int) -> dt.date:
    return add_months(day, -months)


def effective_date(written: dt.date, rule: DateRule) -> dt.date:
    if rule is DateRule.forward:
        return next_business_day(written)
    if rule is DateRule.back:
        return previous_business_day(written)
    return written


def reminder_day(effective: dt.date, days_before: int) -> dt.date:
    """The day a reminder `days_before` the date goes out: never on a day off, and never later
    than asked, so the lead time a contact gets is at least what the agreement promises."""
    return previous_business_day(effective - dt.timedelta(days=days_before))


def local_time(day: dt.date, at: dt.time) -> dt.datetime:
    """`at` o'clock on `day` in Stockholm, as an aware datetime (CET or CEST as that day has)."""
    return dt.datetime.combine(day, at, tzinfo=STOCKHOLM)


def term_end(start: dt.date, months: int) -> dt.date:
    """The last day of `months` counted from `start`: the day before start + months."""
    return add_months(start, months) - dt.timedelta(days=1)


def period_bounds(start: dt.date, period_months: int, index: int) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of period `index` (1-based), anchored on `start` so that
    month-end clamping never drifts from one period to the next."""
    first = add_months(start, (index - 1) * period_months)
    last = term_end(start, index * period_months)
    return first, last


def months_to(start: dt.date, end: dt.date, step: int) -> int:
    """How many months from `start` a term ending on `end` runs, in whole `step`s: the first
    multiple of `step` whose term ends on or after `end` (exactly on it for a valid term)."""
    months = step
    while term_end(start, months) < end:
        months += step
    return months


def renewal_ends(
    start: dt.date, end: dt.date, period_months: int, renewal_months: int, limit: dt.date
) -> list[dt.date]:
    """The initial term's last day `end`, then the last day of each renewal, as long as the
    one before ends before `limit` (the maximum term's last day).

    Every renewal is counted from the agreement's `start` (start + initial + k·renewal months,
    minus a day) like the periods, never chained from the previous end: chained, a start on
    the 29th, 30th or 31st drifts to an earlier day after the first short month, and the
    renewals would no longer end with the periods or on a maximum term counted in months."""
    initial = months_to(start, end, period_months)
    ends = [end]
    while ends[-1] < limit:
        ends.append(term_end(start, initial + len(ends) * renewal_months))
    return ends
