"""`cloudsync config`: the settings in force, with secrets masked."""

from __future__ import annotations

import dataclasses

import click

from cloudsync.cli.common import settings
from cloudsync.settings import Settings, env_name


@click.command("config")
def config() -> None:
    """Show every setting, its environment variable and its value (secrets masked)."""
    values = settings().describe()
    for f in dataclasses.fields(Settings):
        click.echo(f"{env_name(f.name):<34} {str(values[f.name]):<40} {f.metadata['doc']}")


def register(root: click.Group) -> None:
    root.add_command(config)
