"""The Celery app. Its broker is the configured Redis, or the embedded one in the default set-up."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

import worker.logging_setup  # noqa: F401  (connects the worker file-logging signals)
from cloudsync.db import dispose_all
from cloudsync.embedded import ensure_embedded_redis
from cloudsync.processes import settle_heap
from cloudsync.settings import Settings, load_settings
from worker import broker_fixes
from worker.config import celery_config

log = logging.getLogger(__name__)
broker_fixes.apply()


def redis_url_for(settings: Settings) -> str:
    return settings.redis_url or ensure_embedded_redis(settings.home_path)


app = Celery("cloudsync")


@app.on_configure.connect
def _configure(sender: Celery, **_: object) -> None:
    """Configured on first use, from the environment: importing this module starts nothing."""
    settings = load_settings()
    sender.conf.update(celery_config(settings, redis_url_for(settings)))


_clients: dict[str, Celery] = {}


def client_app(settings: Settings) -> Celery:
    """An app that only sends messages, bound to `settings`' Redis (one per URL per process).

    Senders address tasks by name, so they need neither the task modules nor the worker's app.
    """
    url = redis_url_for(settings)
    client = _clients.get(url)
    if client is None:
        client = Celery("cloudsync-client", set_as_current=False)
        client.conf.update(celery_config(settings, url))
        client.conf.imports = ()
        _clients[url] = client
    return client


@worker_init.connect
def _started(**_: object) -> None:
    """The worker's main process, before it forks its pool: its start-up objects out of full collections."""
    settle_heap()


@worker_ready.connect
def _ready(**_: object) -> None:
    """Again once its consumer is built (broker connection, queues, event dispatcher: after `worker_init`)."""
    settle_heap()


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    """A forked pool process must not share the parent's database sockets."""
    dispose_all()
    settle_heap()
