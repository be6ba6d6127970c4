"""`cloudsync audit [--venue V] [--since 2h]`: the append-only log of privileged attempts."""

from __future__ import annotations

import json

import click

from cloudsync.access import audit as engine
from cloudsync.cli.auth import require
from cloudsync.cli.common import Duration, engine_ctx, when
from cloudsync.control.store import utcnow

OUTCOME_COLOURS = {"allowed": "green", "refused": "red", "error": "yellow"}


@click.command("audit")
@click.option("--venue", "venue", help="Only entries about this venue.")
@click.option("--since", type=Duration(), help="Only entries this recent, e.g. 2h, 7d.")
@click.option("--who", "who", metavar="CODE", help="Only entries of this staff member.")
@click.option("--outcome", type=click.Choice(engine.OUTCOMES), help="Only allowed, refused or error entries.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True, help="Newest entries shown.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@require("cloud.admin")
def audit_cmd(venue: str | None, since: object, who: str | None, outcome: str | None, limit: int,
              as_json: bool) -> None:
    """Who did what, when, to which venue, and whether it was allowed (oldest first)."""
    start = utcnow() - since if since is not None else None  # type: ignore[operator]
    entries = engine.read(engine_ctx().control, venue_id=venue, since=start, staff=who, outcome=outcome,
                          limit=limit)
    for e in entries:
        if as_json:
            click.echo(json.dumps({"id": e.id, "at": e.at.isoformat(), "staff": e.staff, "action": e.action,
                                   "venue": e.venue_id, "job": e.job_id, "outcome": e.outcome, "reason": e.reason}))
            continue
        outcome_text = click.style(f"{e.outcome:<8}", fg=OUTCOME_COLOURS.get(e.outcome, "white"))
        click.echo(f"{when(e.at)}  {e.staff or '-':<12} {e.action:<22} {e.venue_id or '-':<12} {outcome_text} "
                   f"{'job ' + str(e.job_id) + ' ' if e.job_id else ''}{e.reason or ''}")
    if not entries and not as_json:
        click.echo("no audit entries match")


def register(root: click.Group) -> None:
    root.add_command(audit_cmd)
