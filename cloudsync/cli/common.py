"""What every command shares: one-line errors, the engine context, colours, durations."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click
import sqlalchemy as sa

from cloudsync.context import Context
from cloudsync.dsn import mask_dsn
from cloudsync.errors import CloudSyncError
from cloudsync.settings import Settings, load_settings


class CliError(click.ClickException):
    """A user-facing failure: one line on stderr, exit code 1, never a traceback, never a password."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(mask_dsn(message.strip().splitlines()[0] if message.strip() else message))

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", err=True, fg="red")


class SafeGroup(click.Group):
    """Turns engine and driver errors raised by any subcommand into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CloudSyncError as err:
            raise CliError(str(err)) from None
        except sa.exc.SQLAlchemyError as err:
            raise CliError(f"database error: {getattr(err, 'orig', err)}") from None
        except ConnectionError as err:
            raise CliError(f"connection failed: {err}") from None
        except OSError as err:
            if isinstance(err, (BrokenPipeError,)):
                raise
            raise CliError(f"{type(err).__name__}: {err}") from None


class State:
    """Lazily built per invocation, so `--help` and bad arguments never touch a database."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._ctx: Context | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = Context.from_settings(self.settings)
        return self._ctx


pass_state = click.make_pass_decorator(State, ensure=True)


def engine_ctx() -> Context:
    return click.get_current_context().ensure_object(State).ctx


def settings() -> Settings:
    return click.get_current_context().ensure_object(State).settings


STATE_COLOURS = {
    "done": "green", "running": "cyan", "planning": "cyan", "queued": "blue", "finishing": "cyan",
    "paused": "yellow", "failed": "red", "cancelled": "magenta", "pending": "blue",
}


def state_text(state: str) -> str:
    return click.style(state, fg=STATE_COLOURS.get(state, "white"), bold=state in {"failed", "paused"})


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: the longest duration taken: a hundred years (a period reaching back before year 1 cannot be a date)
MAX_DURATION_S = 100 * 365 * 86400


def parse_duration_s(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `7d`, `1w` → seconds; anything else is a one-line error."""
    m = _DURATION.match(text or "")
    if not m:
        raise CliError(f"bad duration {text!r}: use a number with s, m, h, d or w (e.g. 2h)")
    seconds = float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()]
    if seconds > MAX_DURATION_S:
        raise CliError(f"bad duration {text!r}: at most 100 years")
    return seconds


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        try:
            return dt.timedelta(seconds=parse_duration_s(str(value)))
        except CliError as err:
            self.fail(err.format_message(), param, ctx)


def human_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def confirm_or_abort(question: str, yes: bool) -> None:
    if yes:
        return
    if not click.confirm(question, default=False):
        raise CliError("aborted; nothing was changed")

