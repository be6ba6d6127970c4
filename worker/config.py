"""Celery configuration for long, idempotent chunk work on Redis."""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from cloudsync.settings import Settings

QUEUES = ("resync", "incremental", "control")

TASK_MODULES = ("tasks.resync", "tasks.incremental", "tasks.scheduler", "tasks.verify",)

ROUTES = {
    "cloudsync.resync.chunk": {"queue": "resync"},
    "cloudsync.resync.plan": {"queue": "control"},
    "cloudsync.resync.finish": {"queue": "control"},
    "cloudsync.incremental.*": {"queue": "incremental"},
    "cloudsync.control.*": {"queue": "control"},
    "cloudsync.verify.*": {"queue": "control"},
}


def celery_config(settings: Settings, redis_url: str) -> dict[str, Any]:
    return {
        "broker_url": redis_url,
        "result_backend": redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # a chunk is acknowledged only once it is written; a worker lost mid-chunk gives it back
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # longer than any retry countdown, so a message waiting for its countdown is not redelivered
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "task_track_started": True,
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        "task_default_exchange": "control",
        "task_default_routing_key": "control",
        "imports": TASK_MODULES,
        "task_default_queue": "control",
        "task_routes": ROUTES,
        "result_expires": 7 * 86400,
        "worker_hijack_root_logger": False,
        # a pool process is replaced only if it grows (a leak: reads stream, a worker stays under 300 MB).
        # Not after a count of tasks: every throttled chunk's retry is a task, and under a trading-hours
        # rate limit a pool process reached 500 within seconds; its replacement stalled the worker 2-3 s
        "worker_max_memory_per_child": 1024 * 1024,  # KiB
        "enable_utc": True,
    }
