"""`cloudsync init`, `cloudsync staff add|list|disable|enable|unlock|pin`,
`cloudsync group add|list|grant|revoke|members`.

Staff members hold permissions through their security groups, as with a back office's clerk security
groups. `init` creates the first administrator; everything else here needs `cloud.admin`.
"""

from __future__ import annotations

import os

import click

from cloudsync.access import audit
from cloudsync.access import staff as engine
from cloudsync.cli.auth import PIN_ENV, current_staff, require
from cloudsync.cli.common import CliError, engine_ctx, when
from cloudsync.control.store import utcnow


def _new_pin(code: str, from_env: bool = False) -> str:
    if from_env and os.environ.get(PIN_ENV):
        return os.environ[PIN_ENV]
    pin: str = click.prompt(f"New PIN for {code}", hide_input=True, confirmation_prompt=True, err=True)
    return pin


@click.command("init")
@click.option("--staff", "code", required=True, metavar="CODE", help="Staff code of the first administrator.")
@click.option("--name", required=True, help="Their name.")
def init(code: str, name: str) -> None:
    """Create the first administrator (only while no staff exist). The PIN is asked for (or CLOUDSYNC_PIN)."""
    ctx = engine_ctx()
    if engine.staff_count(ctx.control):
        audit.record(ctx.control, "init", "refused", staff=code, reason="already initialised")
        raise CliError("already initialised: an administrator adds staff with `cloudsync staff add`")
    member = engine.init_admin(ctx.control, code, name, _new_pin(code, from_env=True))
    audit.record(ctx.control, "init", "allowed", staff=member.code, reason="first administrator created")
    click.secho(f"administrator {member.code} created in group {engine.ADMIN_GROUP} "
                f"({', '.join(sorted(member.permissions))})", fg="green")


@click.group("staff")
def staff_group() -> None:
    """Staff members who may run privileged commands."""


@staff_group.command("add")
@click.argument("code")
@click.option("--name", required=True, help="The staff member's name.")
@click.option("--group", "groups", multiple=True, help="Security group to join (repeatable).")
@require("cloud.admin")
def add(code: str, name: str, groups: tuple[str, ...]) -> None:
    """Add staff member CODE; their PIN is asked for twice."""
    member = engine.add_staff(engine_ctx().control, code, name, _new_pin(code), list(groups))
    click.secho(f"staff {member.code} added" + (f" to {', '.join(member.groups)}" if member.groups else ""),
                fg="green")


@staff_group.command("list")
@require("cloud.admin")
def list_() -> None:
    """One line per staff member: state, groups, permissions."""
    now = utcnow()
    for s in engine.list_staff(engine_ctx().control):
        state = ("disabled" if not s.active else f"locked until {when(s.locked_until)}"
                 if s.locked_until and s.locked_until > now else "active")
        colour = "green" if state == "active" else "yellow"
        click.echo(f"{s.code:<16} {s.name:<24} {click.style(state, fg=colour):<20} "
                   f"groups: {','.join(s.groups) or '-'}  permissions: {','.join(sorted(s.permissions)) or '-'}")


@staff_group.command("disable")
@click.argument("code")
@require("cloud.admin")
def disable(code: str) -> None:
    """Stop CODE from logging in (kept for the audit trail)."""
    engine.set_active(engine_ctx().control, code, False)
    click.secho(f"staff {code} disabled", fg="magenta")


@staff_group.command("enable")
@click.argument("code")
@require("cloud.admin")
def enable(code: str) -> None:
    """Let a disabled staff member log in again."""
    engine.set_active(engine_ctx().control, code, True)
    click.secho(f"staff {code} enabled", fg="green")


@staff_group.command("unlock")
@click.argument("code")
@require("cloud.admin")
def unlock(code: str) -> None:
    """Lift the lock after too many wrong PINs."""
    engine.unlock(engine_ctx().control, code)
    click.secho(f"staff {code} unlocked", fg="green")


@staff_group.command("pin")
@click.argument("code")
@require("cloud.admin")
def pin(code: str) -> None:
    """Set a new PIN for CODE (asked for twice)."""
    engine.set_pin(engine_ctx().control, code, _new_pin(code))
    click.secho(f"staff {code}: PIN changed by {current_staff().code}", fg="green")


@click.group("group")
def group_group() -> None:
    """Security groups and the cloud permissions they hold."""


@group_group.command("add")
@click.argument("name")
@click.option("--description", help="What the group is for.")
@click.option("--grant", "permissions", multiple=True, type=click.Choice(engine.PERMISSIONS),
              help="Permission to hold (repeatable).")
@require("cloud.admin")
def group_add(name: str, description: str | None, permissions: tuple[str, ...]) -> None:
    """Create security group NAME."""
    engine.add_group(engine_ctx().control, name, description, list(permissions))
    click.secho(f"group {name} created" + (f" holding {', '.join(permissions)}" if permissions else ""), fg="green")


@group_group.command("list")
@require("cloud.admin")
def group_list() -> None:
    """One line per group: permissions and members."""
    for g in engine.list_groups(engine_ctx().control):
        click.echo(f"{g.name:<20} permissions: {','.join(g.permissions) or '-'}  members: {','.join(g.members) or '-'}")


@group_group.command("grant")
@click.argument("name")
@click.argument("permissions", nargs=-1, required=True, type=click.Choice(engine.PERMISSIONS))
@require("cloud.admin")
def group_grant(name: str, permissions: tuple[str, ...]) -> None:
    """Give group NAME one or more permissions."""
    engine.grant(engine_ctx().control, name, list(permissions))
    click.secho(f"group {name} now holds {', '.join(engine.get_group(engine_ctx().control, name).permissions)}",
                fg="green")


@group_group.command("revoke")
@click.argument("name")
@click.argument("permissions", nargs=-1, required=True, type=click.Choice(engine.PERMISSIONS))
@require("cloud.admin")
def group_revoke(name: str, permissions: tuple[str, ...]) -> None:
    """Take one or more permissions away from group NAME."""
    engine.revoke(engine_ctx().control, name, list(permissions))
    held = engine.get_group(engine_ctx().control, name).permissions
    click.secho(f"group {name} now holds {', '.join(held) or 'no permission'}", fg="magenta")


@group_group.command("members")
@click.argument("name")
@click.option("--add", "add_codes", multiple=True, metavar="CODE", help="Staff member to add (repeatable).")
@click.option("--remove", "remove_codes", multiple=True, metavar="CODE", help="Staff member to remove (repeatable).")
@require("cloud.admin")
def group_members(name: str, add_codes: tuple[str, ...], remove_codes: tuple[str, ...]) -> None:
    """List (and with --add/--remove change) the members of group NAME."""
    ctx = engine_ctx()
    if add_codes or remove_codes:
        engine.set_membership(ctx.control, name, list(add_codes), list(remove_codes))
    group = engine.get_group(ctx.control, name)
    click.echo(f"group {group.name} ({', '.join(group.permissions) or 'no permission'}): "
               f"{', '.join(group.members) or 'no members'}")


def register(root: click.Group) -> None:
    root.add_command(init)
    root.add_command(staff_group)
    root.add_command(group_group)
