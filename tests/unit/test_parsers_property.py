"""Property-based tests (hypothesis) of what staff type and what travels between processes: durations,
primary-key bounds, database URLs and trading-hours schedules.

Properties: a parser either returns a value or raises its own one-line error (never anything else);
what is encoded decodes to an equal value; a password given in a URL never appears in a masked URL
or in an error message.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sqlite3
import string
import uuid
from urllib.parse import quote, quote_plus

import click
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from cloudsync.cli.common import MAX_DURATION_S, CliError, Duration, parse_duration_s
from cloudsync.dsn import mask_dsn, parse_dsn
from cloudsync.errors import BadDSN
from cloudsync.keys import decode_key, encode_key, format_key, in_range

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# -- durations ---------------------------------------------------------------------------------------

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@FAST
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999),
       st.sampled_from(sorted(UNITS)), st.booleans(), st.text(" \t", max_size=2))
def test_durations_read_as_number_times_unit(whole, frac, unit, upper, pad):
    number = f"{whole}.{frac}" if frac else str(whole)
    text = f"{pad}{number}{pad}{unit.upper() if upper else unit}{pad}"
    expected = float(number) * UNITS[unit]
    if expected > MAX_DURATION_S:  # a period no date can reach back through: one clear line
        with pytest.raises(CliError, match="at most 100 years"):
            parse_duration_s(text)
        with pytest.raises(click.BadParameter, match="at most 100 years"):
            Duration().convert(text, None, None)
        return
    assert parse_duration_s(text) == pytest.approx(expected)
    assert Duration().convert(text, None, None) == dt.timedelta(seconds=expected)


@FAST
@given(st.text(max_size=30))
@example("")
@example("-5m")
@example("1.5.2h")
@example("2 hours")
@example("1e3s")
@example("86400000000000")  # beyond what a timedelta holds: one clear line, not an OverflowError
@example("9" * 30 + "w")
def test_any_duration_text_is_a_value_or_one_clear_error(text):
    try:
        seconds = parse_duration_s(text)
    except CliError as err:
        assert "bad duration" in err.format_message() and "\n" not in err.format_message()
        with pytest.raises(click.BadParameter):
            Duration().convert(text, None, None)
        return
    assert seconds >= 0
    assert Duration().convert(text, None, None).total_seconds() == pytest.approx(seconds)


# -- key bounds --------------------------------------------------------------------------------------

timezones = st.none() | st.just(dt.UTC) | st.timedeltas(min_value=dt.timedelta(hours=-14),
                                                        max_value=dt.timedelta(hours=14)).map(
    lambda d: dt.timezone(dt.timedelta(minutes=d // dt.timedelta(minutes=1)))) | st.timezones()
key_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=40),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.floats(allow_nan=False),
    st.datetimes(timezones=timezones),
    st.dates(), st.times(), st.binary(max_size=40), st.uuids(),
)


@FAST
@given(st.lists(key_values, min_size=1, max_size=4))
def test_key_bounds_survive_json_between_processes(key):
    wire = json.loads(json.dumps(encode_key(key)))  # what a chunk row and a task argument hold
    back = decode_key(wire)
    assert back is not None and len(back) == len(key)
    for original, decoded in zip(key, back, strict=True):
        assert type(decoded) is type(original) or isinstance(original, (bytearray, memoryview))
        assert decoded == original
        if isinstance(original, dt.datetime):
            assert decoded.utcoffset() == original.utcoffset()
        if isinstance(original, decimal.Decimal):
            assert str(decoded) == str(original)  # exponent and trailing zeros kept
    assert isinstance(format_key(key), str)
    assert decode_key(None) is None and encode_key(None) is None


@FEWER
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5), st.text("ab", max_size=2)),
                min_size=1, max_size=40, unique=True),
       st.none() | st.tuples(st.integers(-6, 6), st.integers(-6, 6), st.text("ab", max_size=2)),
       st.none() | st.tuples(st.integers(-6, 6), st.integers(-6, 6), st.text("ab", max_size=2)))
def test_keyset_range_selects_exactly_lo_exclusive_hi_inclusive(rows, lo, hi):
    """The expanded keyset predicate (no row values, as SQL Server needs) equals tuple comparison."""
    md = sa.MetaData()
    t = sa.Table("t", md, sa.Column("a", sa.Integer, primary_key=True), sa.Column("b", sa.Integer, primary_key=True),
                 sa.Column("c", sa.String, primary_key=True))
    engine = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(":memory:"))
    try:
        with engine.begin() as conn:
            md.create_all(conn)
            conn.execute(t.insert(), [dict(a=a, b=b, c=c) for a, b, c in rows])
            got = set(conn.execute(sa.select(t.c.a, t.c.b, t.c.c).where(
                in_range([t.c.a, t.c.b, t.c.c], lo, hi))).all())
    finally:
        engine.dispose()
    expected = {r for r in rows if (lo is None or r > lo) and (hi is None or r <= hi)}
    assert {tuple(r) for r in got} == expected


# -- database URLs -----------------------------------------------------------------------------------

names = st.text(string.ascii_lowercase, min_size=1, max_size=12)
# a password always carries "S3cr", which no generated user, host or database name can contain
url_passwords = st.text(string.ascii_letters + string.digits + "!#$%^&*()-_=+[]{};:,.<>?/|~@ '\"",
                        min_size=0, max_size=20).map(lambda s: "S3cr" + s)
odbc_passwords = st.text(string.ascii_letters + string.digits + "!#$%^*()-_+[],.<>?/|~@:'\"",
                         max_size=20).map(lambda s: "S3cr" + s)
drivers = st.sampled_from(["postgresql", "postgresql+psycopg", "mysql+pymysql", "mariadb+pymysql", "mysql+pyodbc",
                           "mssql+pyodbc", "sqlite", "oracle", "postgresql+asyncpg", "bogus"])


def _leaks(password: str, text: str) -> bool:
    return any(form in text for form in {password, quote(password, safe=""), quote_plus(password)})


@FAST
@given(drivers, names, url_passwords, names, st.none() | st.integers(1, 65535), names, st.sampled_from(["s", "t"]))
def test_url_passwords_never_shown(driver, user, password, host, port, database, role):
    url = f"{driver}://{user}:{quote(password, safe='')}@{host}{f':{port}' if port else ''}/{database}"
    assert not _leaks(password, mask_dsn(url))
    assert not _leaks(password, mask_dsn(f"connecting to {url} failed"))
    try:
        parsed = parse_dsn(url, role)
    except BadDSN as err:
        assert not _leaks(password, str(err)), str(err)
        assert not _leaks(password, repr(err.__dict__))
    else:
        assert parsed.password == password  # parsed, not mangled
        assert not _leaks(password, mask_dsn(parsed.render_as_string(hide_password=False)))


@FAST
@given(odbc_passwords, st.booleans(), st.sampled_from(["PWD", "pwd", "Password"]), names)
def test_odbc_passwords_never_shown(password, braced, keyword, host):
    value = "{" + password.replace("}", "}}") + "}" if braced else password
    conn_str = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER={host};UID=sa;{keyword}={value};Encrypt=no"
    for text in (conn_str, f"mssql+pyodbc:///?odbc_connect={quote_plus(conn_str)}",
                 f"mssql+pyodbc:///?odbc_connect={quote(conn_str, safe='')}"):
        assert not _leaks(password, mask_dsn(text)), mask_dsn(text)
        try:
            parse_dsn(text)
        except BadDSN as err:
            assert not _leaks(password, str(err)), str(err)


@FAST
@given(st.text(st.characters(blacklist_characters="\r\n"), max_size=60))  # the CLI shows one line anyway
@example("postgresql://")
@example("://x")
@example("sqlite://")
@example("mssql+pyodbc:///?odbc_connect=")
@example("postgresql://u:p@[::1/db")
@example("postgresql://u@h:99999999/db")
def test_any_text_is_a_url_or_bad_dsn(text):
    for role in ("s", "t"):
        try:
            parse_dsn(text, role)
        except BadDSN as err:
            assert str(err).startswith("bad database URL")
            assert "\n" not in str(err)


# -- trading hours -------------------------------------------------------------------------------------

trading = pytest.importorskip("cloudsync.guards.trading_hours")
BadHours = pytest.importorskip("cloudsync.guards.errors").BadHours


@st.composite
def weeks(draw: st.DrawFn) -> str:
    clauses = []
    for day in trading.DAYS:
        if draw(st.booleans()):
            clauses.append(f"{day} closed")
            continue
        start = draw(st.integers(0, 24 * 60 - 1))
        end = draw(st.integers(1, 24 * 60).filter(lambda e, s=start: e != s))
        clauses.append(f"{day} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")
    return "; ".join(draw(st.permutations(clauses)))


@FAST
@given(weeks())
def test_a_schedule_reads_back_from_its_description(text):
    try:
        week = trading.parse_week(text)
    except BadHours as err:
        assume("runs into" not in str(err))  # an overnight period overlapping the next day: refused, fine
        raise
    schedule = trading.Schedule(week)
    assert trading.parse_week(schedule.describe_week()) == week


@FEWER
@given(weeks(), st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 1, 1)))
def test_open_means_inside_a_period_of_today_or_yesterdays_overnight(text, at):
    try:
        week = trading.parse_week(text)
    except BadHours:
        assume(False)
    schedule = trading.Schedule(week)
    minute = at.hour * 60 + at.minute + at.second / 60 + at.microsecond / 60e6
    today = any(p.start_min <= minute < p.end_min for p in week[at.weekday()])
    spill = any(p.start_min <= minute + 1440 < p.end_min for p in week[(at.weekday() - 1) % 7])
    assert schedule.is_open(at) == (today or spill)


@FAST
@given(st.text(max_size=40))
@example("mon-fri 07:00-23:30; sat 10:00-02:00; sun closed")
@example("mon 25:00-26:00")
@example("fri 22:00-03:00; sat 01:00-05:00")
@example("mon-")
@example("xyz 10:00-11:00")
def test_any_schedule_text_is_a_week_or_bad_hours(text):
    try:
        week = trading.parse_week(text)
    except BadHours as err:
        assert str(err).startswith("bad hours") and "\n" not in str(err).strip()
        return
    assert len(week) == 7
    for periods in week:
        for p in periods:
            assert 0 <= p.start_min < p.end_min <= 2 * 1440


def test_uuid_and_bytes_keys_are_tagged_not_stringified():
    k = (uuid.UUID(int=5), b"\x00\xff")
    assert decode_key(encode_key(k)) == k
