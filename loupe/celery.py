"""The Celery app. Queues: ``inference`` (per-part model runs, latency-bound),
``training`` (long jobs, separate workers so they never starve inference) and ``default``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")

app = Celery("loupe")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
