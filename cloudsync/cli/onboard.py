"""`cloudsync venue register` (cloud side) and `cloudsync onboard` (venue side): cloud onboarding.

Registration issues a one-time code, shown once and written to the outbox file that stands in for
the onboarding e-mail. Onboarding shows the customer number and company name for confirmation, asks
for the code, checks the venue database, connects the venue, enqueues its initial full resync and
enables its incremental sync.
"""

from __future__ import annotations

import click

from cloudsync import onboarding
from cloudsync.cli.auth import current_staff, require
from cloudsync.cli.common import confirm_or_abort, engine_ctx, settings
from cloudsync.cli.venue import venue_group
from cloudsync.dsn import mask_dsn


@venue_group.command("register")
@click.option("--customer-number", required=True, help="The site's customer number (becomes the venue id).")
@click.option("--company-name", required=True, help="The site's company name.")
@click.option("--email", required=True, help="Where the onboarding code is sent.")
@click.option("--expires-days", type=click.IntRange(min=1, max=90), default=7, show_default=True,
              help="Days the code stays valid.")
@require("cloud.admin")
def register_cmd(customer_number: str, company_name: str, email: str, expires_days: int) -> None:
    """Register a venue for cloud onboarding and issue its one-time code."""
    reg, code, outbox = onboarding.register_venue(
        settings(), engine_ctx().control, customer_number, company_name, email,
        registered_by=current_staff().code, ttl_s=expires_days * 86400)
    click.secho(f"customer {reg.customer_number} ({reg.company_name}) registered; code valid until "
                f"{reg.expires_at.strftime('%Y-%m-%d %H:%M UTC')}", fg="green")
    click.echo(f"one-time code (shown once): {code}")
    click.echo(f"e-mail to {reg.email} written to {outbox}")


@click.command("onboard")
@click.option("--customer-number", required=True, help="The customer number given at registration.")
@click.option("--dsn", required=True, help="The venue database URL (e.g. mssql+pyodbc://…).")
@click.option("--code", help="The one-time code from the onboarding e-mail (asked for if not given).")
@click.option("--schema", help="Source schema (default: the connection's default).")
@click.option("--tables", help="Comma-separated tables to sync (default: every table with a primary key).")
@click.option("--timezone", default="UTC", show_default=True, help="The venue's IANA time zone.")
@click.option("--pos-version", help="The venue's POS version (checked against the minimum supported).")
@click.option("--yes", is_flag=True, help="Do not ask to confirm the customer number and company name.")
@require("cloud.onboard")
def onboard_cmd(customer_number: str, dsn: str, code: str | None, schema: str | None, tables: str | None,
                timezone: str, pos_version: str | None, yes: bool) -> None:
    """Connect a registered venue to the cloud: initial full resync, then incremental sync."""
    from worker.dispatch import CeleryDispatcher

    ctx = engine_ctx()
    reg = onboarding.get_registration(ctx.control, customer_number)
    click.echo(f"Customer number: {reg.customer_number}")
    click.echo(f"Company name:    {reg.company_name}")
    click.echo(f"Venue database:  {mask_dsn(dsn)}")
    confirm_or_abort("Is this the venue to onboard?", yes)
    if not code:
        code = click.prompt("Authentication code from the onboarding e-mail", hide_input=True, err=True)
    wanted = [t.strip() for t in tables.split(",") if t.strip()] if tables else None
    done = onboarding.onboard(ctx, customer_number, str(code), dsn, staff=current_staff().code,
                              dispatcher=CeleryDispatcher(ctx), schema=schema, timezone=timezone,
                              pos_version=pos_version, tables=wanted)
    click.secho(f"venue {done.venue.id} ({done.venue.name}) onboarded; database {done.server_version}", fg="green")
    if done.job_id is None:
        click.echo("a full resync of this venue is already running")
    else:
        click.echo(f"initial full resync queued: job {done.job_id} (follow it: cloudsync resync show "
                   f"{done.job_id} --follow)")
    click.echo(f"incremental sync enabled every {done.venue.sync_interval_s}s")
    for name in done.skipped_tables:
        click.secho(f"warning: table {name} has no primary key and will not be synced", fg="yellow", err=True)


def register(root: click.Group) -> None:
    root.add_command(onboard_cmd)  # `venue register` joined venue_group when this module was imported
