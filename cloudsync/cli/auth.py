"""`require(permission)`: staff login and permission check for privileged commands, audited.

    @resync_group.command("full")
    @click.argument("venue_id")
    @require("cloud.resync")
    def full(venue_id: str) -> None:
        staff = current_staff()   # the authenticated Staff

The decorator adds `--staff CODE`; the PIN is asked for with a hidden prompt. For automation both come
from CLOUDSYNC_STAFF and CLOUDSYNC_PIN. Every attempt is written to the audit log: refused (with the
reason) when login or permission fails, allowed when it passes, and refused again with the reason if
the command itself then refuses (a resync already running, a guard, a bad argument). A refusal is one
line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cloudsync.access import audit
from cloudsync.access.errors import AccessError, AuthFailed
from cloudsync.access.staff import Staff, authenticate, require_permission
from cloudsync.cli.common import CliError, engine_ctx
from cloudsync.control.jobs import get_job
from cloudsync.errors import CloudSyncError

F = TypeVar("F", bound=Callable[..., Any])
STAFF_ENV = "CLOUDSYNC_STAFF"
PIN_ENV = "CLOUDSYNC_PIN"
_META_KEY = "cloudsync.staff"
_VENUE_ARGS = ("venue_id", "venue", "customer_number")


def current_staff() -> Staff:
    """The staff member `require` authenticated for this command."""
    member = click.get_current_context().find_root().meta.get(_META_KEY)
    if member is None:
        raise CliError("no staff member is logged in for this command")
    return member  # type: ignore[no-any-return]


def action_name(ctx: click.Context | None = None) -> str:
    """`cloudsync resync full` → `resync.full`: what the audit log calls the command."""
    ctx = ctx or click.get_current_context()
    parts = ctx.command_path.split()[1:]
    return ".".join(parts) or ctx.info_name or "?"


def venue_of(kwargs: dict[str, Any]) -> str | None:
    """The venue a command is about, for the audit log: a venue argument, or the job's venue."""
    for name in _VENUE_ARGS:
        if kwargs.get(name):
            return str(kwargs[name])
    job_id = kwargs.get("job_id")
    if job_id is not None:
        try:
            return get_job(engine_ctx().control, int(job_id)).venue_id
        except (CloudSyncError, ValueError):
            return None
    return None


def _credentials(staff_code: str | None) -> tuple[str, str]:
    try:
        code = staff_code or os.environ.get(STAFF_ENV) or click.prompt("Staff code", err=True)
        pin = os.environ.get(PIN_ENV) or click.prompt(f"PIN for {code}", hide_input=True, err=True)
    except click.Abort:
        raise AuthFailed(staff_code or "?", f"staff code and PIN required (--staff CODE or {STAFF_ENV}, then the "
                         f"PIN prompt or {PIN_ENV})", reason="no credentials given") from None
    return str(code).strip(), str(pin)


def login(permission: str, action: str, venue_id: str | None, staff_code: str | None = None) -> Staff:
    """Authenticate and check `permission`; audited either way. Raises CliError when refused."""
    ctx = engine_ctx()
    code = staff_code or os.environ.get(STAFF_ENV)
    try:
        code, pin = _credentials(staff_code)
        member = authenticate(ctx.control, code, pin)
        require_permission(member, permission)
    except AccessError as err:
        audit.record(ctx.control, action, "refused", staff=code, venue_id=venue_id,
                     reason=str(getattr(err, "reason", err)), details={"permission": permission})
        raise CliError(str(err)) from None
    audit.record(ctx.control, action, "allowed", staff=member.code, venue_id=venue_id,
                 details={"permission": permission})
    click.get_current_context().find_root().meta[_META_KEY] = member
    return member


def require(permission: str, when: Callable[[dict[str, Any]], bool] | None = None) -> Callable[[F], F]:
    """Decorator for a click command callback: log in, check `permission`, audit, then run the command.

    `when` makes the check conditional on the command's arguments: `cloudsync verify` only reads, so
    `require("cloud.resync", when=lambda kw: kw["repair"])` asks for a login only with --repair.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, staff_code: str | None = None, **kwargs: Any) -> Any:
            if when is not None and not when(kwargs):
                return func(*args, **kwargs)
            action = action_name()
            venue_id = venue_of(kwargs)
            member = login(permission, action, venue_id, staff_code)
            try:
                return func(*args, **kwargs)
            except click.exceptions.Exit:
                raise
            except (CloudSyncError, click.ClickException, click.Abort) as err:
                message = err.format_message() if isinstance(err, click.ClickException) else str(err) or "aborted"
                audit.record(engine_ctx().control, action, "refused", staff=member.code, venue_id=venue_id,
                             reason=message, details={"permission": permission, "stage": "command"})
                raise
            except Exception as err:
                audit.record(engine_ctx().control, action, "error", staff=member.code, venue_id=venue_id,
                             reason=f"{type(err).__name__}: {err}"[:500], details={"permission": permission})
                raise

        needs = f"Needs {permission}" + (" for some options." if when is not None else ".")
        option = click.option("--staff", "staff_code", metavar="CODE",
                              help=f"Your staff code (or {STAFF_ENV}); the PIN is asked for (or {PIN_ENV}). {needs}")
        return option(wrapper)  # type: ignore[return-value]

    return decorate
