"""Thin Celery tasks: take ids, call one engine function, map its errors to retry or failure."""
