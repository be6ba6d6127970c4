"""Trading hours without services: parsing, midnight-crossing periods, exceptions and DST changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudsync.dialects.mssql import maintenance as mssql_maintenance
from cloudsync.guards.errors import BadHours
from cloudsync.guards.reindex import is_maintenance_statement
from cloudsync.guards.trading_hours import Period, parse_periods, parse_schedule, parse_week

SYDNEY = "Australia/Sydney"
LONDON = "Europe/London"
WEEK = "mon-fri 07:00-23:30; sat 10:00-02:00; sun closed"


def local(tz: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(tz))


def test_parses_the_staff_form():
    week = parse_week(WEEK)
    assert week[0] == (Period(7 * 60, 23 * 60 + 30),)
    assert week[4] == week[0]
    assert week[5] == (Period(10 * 60, 26 * 60),)  # to 02:00 on Sunday
    assert week[6] == ()
    assert parse_schedule(WEEK).describe_week() == (
        "mon 07:00-23:30; tue 07:00-23:30; wed 07:00-23:30; thu 07:00-23:30; fri 07:00-23:30; "
        "sat 10:00-02:00; sun closed")


def test_split_periods_day_lists_wrapping_ranges_and_all_day():
    week = parse_week("mon,wed 11:00-15:00, 17:00-22:00; fri-sun 00:00-24:00")
    assert week[0] == (Period(660, 900), Period(1020, 1320)) == week[2]
    assert week[1] == () and week[3] == ()
    assert week[4] == week[5] == week[6] == (Period(0, 1440),)
    assert parse_periods(" 07:00 - 23:30 ") == (Period(420, 1410),)


def test_saturday_night_period_runs_into_sunday():
    s = parse_schedule(WEEK)
    # 2026-11-21 is a Saturday
    assert s.trading(local(SYDNEY, 2026, 11, 21, 23, 59), SYDNEY)
    assert s.trading(local(SYDNEY, 2026, 11, 22, 1, 59), SYDNEY)
    assert not s.trading(local(SYDNEY, 2026, 11, 22, 2, 0), SYDNEY)
    assert not s.trading(local(SYDNEY, 2026, 11, 22, 12, 0), SYDNEY)  # sun closed
    assert not s.trading(local(SYDNEY, 2026, 11, 21, 9, 59), SYDNEY)
    assert s.trading(local(SYDNEY, 2026, 11, 23, 7, 0), SYDNEY)  # monday opening
    assert not s.trading(local(SYDNEY, 2026, 11, 23, 23, 30), SYDNEY)


def test_instants_are_judged_in_the_venue_zone():
    s = parse_schedule(WEEK)
    # Monday 07:30 in Sydney (UTC+11 in November) is Sunday 20:30 UTC
    assert s.trading(dt.datetime(2026, 11, 22, 20, 30, tzinfo=dt.UTC), SYDNEY)
    assert not s.trading(dt.datetime(2026, 11, 22, 20, 30, tzinfo=dt.UTC), LONDON)  # Sunday evening there


def test_exception_closes_a_day_and_replaces_its_overnight_part():
    s = parse_schedule(WEEK, {"2026-12-25": "closed", "2026-12-26": "18:00-03:00"})
    assert not s.trading(local(SYDNEY, 2026, 12, 25, 12, 0), SYDNEY)  # a Friday, closed
    assert s.trading(local(SYDNEY, 2026, 12, 24, 12, 0), SYDNEY)
    # Saturday 26th: 18:00 to 03:00 instead of 10:00 to 02:00
    assert not s.trading(local(SYDNEY, 2026, 12, 26, 11, 0), SYDNEY)
    assert s.trading(local(SYDNEY, 2026, 12, 26, 19, 0), SYDNEY)
    assert s.trading(local(SYDNEY, 2026, 12, 27, 2, 30), SYDNEY)
    assert not s.trading(local(SYDNEY, 2026, 12, 27, 3, 0), SYDNEY)


def test_a_closed_exception_keeps_the_previous_nights_late_hours():
    s = parse_schedule(WEEK, {"2026-11-22": "closed"})  # Sunday, after Saturday's 10:00-02:00
    assert s.trading(local(SYDNEY, 2026, 11, 22, 1, 0), SYDNEY)


def test_opening_follows_wall_clock_across_dst_start():
    s = parse_schedule(WEEK)
    # Sydney moves to UTC+11 at 02:00 on Sunday 2026-10-04: Monday's 07:00 opening is 20:00 UTC Sunday,
    # the Monday before it was 21:00 UTC
    before, after = dt.datetime(2026, 9, 27, 20, 30, tzinfo=dt.UTC), dt.datetime(2026, 10, 4, 20, 30, tzinfo=dt.UTC)
    assert not s.trading(before, SYDNEY)
    assert s.trading(after, SYDNEY)
    assert s.next_change(before, SYDNEY) == dt.datetime(2026, 9, 27, 21, 0, tzinfo=dt.UTC)
    # Saturday night 10:00-02:00 spans the change: it ends at 02:00 local, which becomes 03:00 (UTC 16:00)
    sat_night = dt.datetime(2026, 10, 3, 15, 30, tzinfo=dt.UTC)  # 01:30 AEST Sunday
    assert s.trading(sat_night, SYDNEY)
    assert s.next_change(sat_night, SYDNEY) == dt.datetime(2026, 10, 3, 16, 0, tzinfo=dt.UTC)


def test_dst_end_in_london_repeats_an_hour_that_stays_trading():
    s = parse_schedule("daily 00:00-02:00")
    # 2026-10-25 01:30 happens twice in London; both are within 00:00-02:00
    first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)  # 01:30 BST
    second = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)  # 01:30 GMT
    assert s.trading(first, LONDON) and s.trading(second, LONDON)
    assert not s.trading(dt.datetime(2026, 10, 25, 2, 0, tzinfo=dt.UTC), LONDON)  # 02:00 GMT


def test_next_change_sees_an_exception():
    s = parse_schedule(WEEK, {"2026-12-25": "closed"})
    at = local(SYDNEY, 2026, 12, 24, 22, 0)
    assert s.next_change(at, SYDNEY) == local(SYDNEY, 2026, 12, 24, 23, 30)
    nxt = s.next_change(local(SYDNEY, 2026, 12, 24, 23, 45), SYDNEY)
    assert nxt == local(SYDNEY, 2026, 12, 26, 10, 0)


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty schedule"),
    ("mon-fri", "DAYS HOURS"),
    ("mon-fri 7-23", "HH:MM"),
    ("mon-fri 07:00-25:00", "not a time of day"),
    ("mon-fri 07:60-23:00", "not a time of day"),
    ("mon-fri 24:00-23:00", "24:00 only ends a period"),
    ("mon-fri 07:00-07:00", "same time"),
    ("funday 07:00-23:00", "unknown day 'funday'"),
    ("mon-fri 07:00-23:00; fri closed", "fri is given more than once"),
    ("mon 10:00-14:00, 13:00-16:00", "overlap"),
    ("sat 10:00-09:00; sun 08:00-12:00", "runs into sun"),
    ("mon 07:00-", "HH:MM-HH:MM"),
])
def test_malformed_schedules_get_one_line_saying_what_is_wrong(text, says):
    with pytest.raises(BadHours) as err:
        parse_week(text)
    message = str(err.value)
    assert says in message
    assert "\n" not in message


def test_malformed_exceptions():
    with pytest.raises(BadHours, match="YYYY-MM-DD"):
        parse_schedule(WEEK, {"25/12/2026": "closed"})
    with pytest.raises(BadHours, match="HH:MM-HH:MM"):
        parse_schedule(WEEK, {"2026-12-25": "shut"})


times = st.integers(0, 23 * 60 + 59)


@settings(max_examples=200, deadline=None)
@given(start=times, length=st.integers(1, 24 * 60 - 1), probe=st.integers(0, 3 * 24 * 60 - 1))
def test_a_single_period_is_open_exactly_within_its_span(start, length, probe):
    end = (start + length) % (24 * 60)
    text = f"wed {start // 60:02d}:{start % 60:02d}-{(end // 60) if end else 24:02d}:{end % 60:02d}"
    if end == 0:
        text = f"wed {start // 60:02d}:{start % 60:02d}-24:00" if start + length == 24 * 60 else text
    s = parse_schedule(text)
    tuesday = dt.datetime(2026, 11, 17)  # Tuesday; Wednesday starts at minute 1440
    at = tuesday + dt.timedelta(minutes=probe)
    opens = 24 * 60 + start
    assert s.is_open(at) == (opens <= probe < opens + length)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_gets_one_line(text):
    try:
        parse_week(text)
    except BadHours as err:
        assert "\n" not in str(err).strip("\n ") or "\n" in text


def test_maintenance_statements_are_recognised():
    for sql in ("REINDEX TABLE products", "  reindex index ix", "CLUSTER products USING ix", "VACUUM FULL t",
                "VACUUM (FULL, VERBOSE) t", "CREATE UNIQUE INDEX CONCURRENTLY ix ON t (a)",
                "ALTER TABLE t ENGINE=InnoDB", "OPTIMIZE TABLE t", "/* dba */ ALTER INDEX ALL ON t REBUILD"):
        assert is_maintenance_statement(sql), sql
    for sql in ("SELECT * FROM products", "VACUUM t", "INSERT INTO reindex_log VALUES (1)", None, ""):
        assert not is_maintenance_statement(sql), sql


@pytest.mark.parametrize("sql", mssql_maintenance.STATEMENTS)
def test_sql_server_statements_parse_as_tsql(sql):
    assert sqlglot.parse_one(sql, read="tsql") is not None
