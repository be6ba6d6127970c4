"""`cloudsync worker` and `cloudsync flower`: the processes that do and show the work."""

from __future__ import annotations

import os
import sys

import click

from cloudsync.cli.common import CliError, settings
from cloudsync.processes import ALL_QUEUES, worker_args


@click.command("worker")
@click.option("-Q", "--queues", default=ALL_QUEUES, show_default=True, help="Queues to consume.")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Worker processes (default: setting).")
@click.option("-n", "--name", help="Node name (default: cloudsync-<pid>@<host>).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queues: str, concurrency: int | None, name: str | None, loglevel: str) -> None:
    """Run a Celery worker for cloudsync's queues (run as many as you need, on any machine)."""
    from worker.app import app

    unknown = set(queues.split(",")) - set(ALL_QUEUES.split(","))
    if unknown:
        raise CliError(f"unknown queue(s): {', '.join(sorted(unknown))}; use {ALL_QUEUES}")
    app.worker_main(worker_args(name or f"cloudsync-{os.getpid()}", queues,
                                concurrency or settings().worker_concurrency, loglevel))


@click.command("flower")
@click.option("--port", type=int, help="HTTP port (default: CLOUDSYNC_FLOWER_PORT).")
@click.option("--address", help="Address to listen on (default: every interface; 127.0.0.1 with --insecure-local).")
@click.option("--insecure-local", is_flag=True, help="Without credentials: run without auth, bound to 127.0.0.1 only.")
def flower(port: int | None, address: str | None, insecure_local: bool) -> None:
    """Start Flower on the configured broker, with basic auth from configuration.

    Task events are switched on in the workers, so Flower shows every task by name (cloudsync.resync.chunk…)
    with its venue, table and key range in kwargs, and a running chunk's progress (state PROGRESS).
    """
    s = settings()
    from worker.app import app, redis_url_for

    args = ["celery", f"--broker={redis_url_for(s)}", "flower", f"--port={port or s.flower_port}",
            "--persistent=False", "--purge_offline_workers=300", "--enable_events=True"]
    if s.flower_user and s.flower_password:
        if "," in s.flower_user + s.flower_password:
            raise CliError("CLOUDSYNC_FLOWER_USER and CLOUDSYNC_FLOWER_PASSWORD may not contain ','")
        # the credentials go through the environment, never the command line (visible in ps)
        os.environ["FLOWER_BASIC_AUTH"] = f"{s.flower_user}:{s.flower_password}"
        if insecure_local:
            address = "127.0.0.1"
    elif insecure_local:
        if address and address not in ("127.0.0.1", "localhost"):
            raise CliError("--insecure-local binds 127.0.0.1 only; configure credentials to listen elsewhere")
        address = "127.0.0.1"
    else:
        raise CliError("Flower needs CLOUDSYNC_FLOWER_USER and CLOUDSYNC_FLOWER_PASSWORD "
                       "(or --insecure-local to bind 127.0.0.1 without auth)")
    if address:
        args.append(f"--address={address}")
    sys.argv = args
    app.start(argv=args[1:])


def register(root: click.Group) -> None:
    root.add_command(worker)
    root.add_command(flower)
