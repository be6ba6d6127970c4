"""The Celery application, its configuration, and how the engine's work is dispatched to it."""
