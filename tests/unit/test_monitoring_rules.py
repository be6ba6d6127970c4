"""Monitoring without services: version comparison, status colours in exports, log matching, sizes, bars."""

from __future__ import annotations

import csv
import datetime as dt
import logging

import pytest
from openpyxl import load_workbook

from cloudsync.cli.common import CliError
from cloudsync.cli.follow import bar
from cloudsync.cli.logs import parse_size_bytes
from cloudsync.exporting import FILLS, HEADERS, write_csv, write_xlsx
from cloudsync.logs_archive import venue_token, worker_lines
from cloudsync.status import VenueStatus, version_below
from worker.logging_setup import LOG_FILE_NAME, TaskIds, _formatter


@pytest.mark.parametrize(("version", "minimum", "below"), [
    ("10.4", "10.37", True),      # numerically, not as text
    ("10.37", "10.37", False),
    ("10.37.0", "10.37", False),
    ("10.36.99", "10.37", True),
    ("9.100", "10.1", True),
    ("11", "10.37", False),
    ("v10.52-build7", "10.37", False),
    (None, "10.37", False),       # unknown versions are not flagged
    ("", "10.37", False),
])
def test_version_below_compares_numerically(version, minimum, below):
    assert version_below(version, minimum) is below


def _status(venue: str, colour: str, error: str | None = None) -> VenueStatus:
    now = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
    return VenueStatus(venue, venue.upper(), "10.52", now, "full", now, "full", colour != "red",
                       now if error else None, error, 12.0, None, None, None, None, None, None, "available",
                       False, now, colour, ("why",) if colour != "green" else ())


def test_exports_keep_rows_and_colours(tmp_path):
    rows = [_status("a", "red", "boom, with a comma"), _status("b", "yellow"), _status("c", "green")]
    xlsx, csv_path = tmp_path / "s.xlsx", tmp_path / "s.csv"
    assert write_xlsx(rows, xlsx) == 3 and write_csv(rows, csv_path) == 3
    sheet = load_workbook(xlsx).active
    assert [c.value for c in sheet[1]] == HEADERS
    for i, colour in enumerate(["red", "yellow", "green"], start=2):
        assert sheet.cell(i, 1).value == "abc"[i - 2]
        assert {c.fill.fgColor.rgb for c in sheet[i]} == {FILLS[colour]}
    assert sheet.cell(2, HEADERS.index("Last error") + 1).value == "boom, with a comma"
    with open(csv_path, newline="") as f:
        got = list(csv.reader(f))
    assert got[0] == HEADERS and [r[0] for r in got[1:]] == ["a", "b", "c"]
    assert got[1][HEADERS.index("Last error")] == "boom, with a comma"


def test_venue_token_matches_whole_ids_only():
    token = venue_token("v1")
    assert token.search("INFO venue=v1 job=3 chunk=4 x")
    assert token.search("venue=v1")
    assert not token.search("INFO venue=v10 job=3")
    assert not token.search("INFO venue=v1.b job=3")
    assert not token.search("INFO xvenue=v1 job=3")


def test_worker_lines_keep_the_venue_and_the_period(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    (log_dir / LOG_FILE_NAME).write_text(
        "2026-11-22T08:00:00.000Z INFO venue=v1 job=1 chunk=1 P x: too old\n"
        "2026-11-22T10:00:00.000Z INFO venue=v1 job=2 chunk=5 P x: wanted\n"
        "2026-11-22T10:00:01.000Z ERROR venue=v1 job=2 chunk=6 P x: failed\n"
        "Traceback (most recent call last):\n"
        "  boom\n"
        "2026-11-22T10:00:02.000Z INFO venue=v10 job=9 chunk=9 P x: other venue\n"
        "  continuation of the other venue\n"
        "2026-11-22T10:00:03.000Z INFO venue=- job=- chunk=- P x: venue=v1 mentioned in the message\n"
    )
    since = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
    lines = worker_lines(log_dir, "v1", since)
    assert [line.split(": ", 1)[-1] for line in lines] == [
        "wanted", "failed", "Traceback (most recent call last):", "  boom", "venue=v1 mentioned in the message"]


def test_log_records_outside_a_task_carry_placeholders():
    record = logging.LogRecord("cloudsync.x", logging.INFO, __file__, 1, "hello %s", ("w",), None)
    assert TaskIds().filter(record)
    text = _formatter().format(record)
    assert "venue=- job=- chunk=-" in text and text.endswith("cloudsync.x: hello w")
    assert text[:19].count("T") == 1 and text.split(" ")[0].endswith("Z")


@pytest.mark.parametrize(("text", "expected"), [("10MB", 10 * 1024 ** 2), ("500kb", 500 * 1024), ("2048", 2048),
                                                ("1.5 g", int(1.5 * 1024 ** 3))])
def test_parse_size(text, expected):
    assert parse_size_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "-1MB", "0", "5TB"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(CliError, match="bad size"):
        parse_size_bytes(text)


def test_progress_bar():
    assert bar(0.0, 10) == "[----------]"
    assert bar(0.5, 10) == "[#####-----]"
    assert bar(1.7, 10) == "[##########]"
