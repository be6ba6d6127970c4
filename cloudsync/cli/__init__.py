"""The `cloudsync` command line.

Each module in this package adds its commands to the root group through a `register(root)`
function, so a feature's commands live beside nothing else's.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from cloudsync.cli.common import SafeGroup, State
from cloudsync.processes import settle_heap


@click.group(cls=SafeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="cloudsync")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """cloudsync: keeps each venue's cloud copy of its point-of-sale database current.

    Configuration comes from CLOUDSYNC_* environment variables (see `cloudsync config`); with none,
    everything runs embedded under ./.cloudsync (Redis and SQLite files).
    """
    ctx.ensure_object(State)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _load_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in {"common"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(cli)


_load_commands()


def main() -> None:
    settle_heap()
    try:
        cli.main(prog_name="cloudsync")
    except KeyboardInterrupt:
        click.secho("interrupted", err=True, fg="yellow")
        sys.exit(130)


if __name__ == "__main__":
    main()
