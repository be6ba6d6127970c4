"""`cloudsync logs VENUE`: collect a venue's job, chunk and worker log lines into one archive."""

from __future__ import annotations

import datetime as dt
import re

import click

from cloudsync.cli.common import CliError, Duration, engine_ctx
from cloudsync.logs_archive import collect_logs

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3}


def parse_size_bytes(text: str) -> int:
    """`500KB`, `10MB`, `1g`, `2048` → bytes; anything else is a one-line error."""
    m = _SIZE.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise CliError(f"bad size {text!r}: use a number with KB, MB or GB (e.g. 10MB)")
    return int(float(m.group(1)) * _UNIT_BYTES[(m.group(2) or "b").lower()])


@click.command("logs")
@click.argument("venue_id")
@click.option("--since", type=Duration(), default="24h", show_default=True, help="Period to collect, e.g. 24h.")
@click.option("--max-size", default="10MB", show_default=True, help="Largest archive content; oldest lines go first.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Archive to write: NAME.zip or NAME.tar.gz.")
def logs(venue_id: str, since: dt.timedelta, max_size: str, output: str) -> None:
    """Write VENUE_ID's job events, chunk records and worker log lines of the period to one archive."""
    result = collect_logs(engine_ctx(), venue_id, since.total_seconds(), output, parse_size_bytes(max_size))
    counts = ", ".join(f"{n} {name}" for name, n in result.members.items())
    click.secho(f"wrote {result.path} ({counts})", fg="green")
    if result.lines_dropped:
        click.secho(f"warning: {result.lines_dropped} oldest lines left out to stay within {max_size}",
                    fg="yellow", err=True)


def register(root: click.Group) -> None:
    root.add_command(logs)
