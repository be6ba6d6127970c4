"""Staff for tests: a staff member holding exactly the given permissions, and the env to log in as them.

    make_staff(ctx, "ops", "2468", ["cloud.resync"])
    subprocess.run([...cloudsync, "resync", "full", "v1", "--yes"], env={**env, **staff_env("ops", "2468")})
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cloudsync.access import staff as access
from cloudsync.context import Context
from cloudsync.processes import process_env


def make_staff(ctx: Context, code: str, pin: str, permissions: Iterable[str], name: str | None = None) -> access.Staff:
    """Staff member `code` with PIN `pin`, in a group of their own (`grp-<code>`) holding `permissions`."""
    group = f"grp-{code}"
    access.add_group(ctx.control, group, f"test group of {code}", list(permissions))
    return access.add_staff(ctx.control, code, name or code, pin, [group])


def staff_env(code: str, pin: str) -> dict[str, str]:
    """The environment a CLI subprocess (or CliRunner) needs to authenticate as `code`."""
    return {"CLOUDSYNC_STAFF": code, "CLOUDSYNC_PIN": pin}


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_cli(ctx: Context, redis_url: str, *args: str, who: tuple[str, str] | None = None, stdin: str | None = None,
            real: bool = False) -> Ran:
    """`cloudsync ARGS` as `who`: a real subprocess with `real=True`, else in this process (CliRunner).

    Subprocesses are what a user runs, but each costs an interpreter start; tests use a few of them
    for exit codes and output and the in-process runner for the rest.
    """
    env = process_env(ctx.settings, redis_url, extra=staff_env(*who) if who else None)
    if real:
        proc = subprocess.run([str(Path(sys.executable).with_name("cloudsync")), *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)
        return Ran(proc.returncode, proc.stdout, proc.stderr)
    from click.testing import CliRunner

    from cloudsync.cli import cli

    only_ours = {k: v for k, v in env.items() if k.startswith("CLOUDSYNC_")}
    result = CliRunner().invoke(cli, list(args), env=only_ours, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def one_line_error(ran: Ran, *fragments: str) -> str:
    """Assert a refusal: exit code 1, exactly one `error: …` line on stderr containing `fragments`."""
    assert ran.returncode == 1, (ran.returncode, ran.stdout, ran.stderr)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
