"""The Celery app. Queues: ``inference`` (per-part model runs, latency-bound),
``training`` (long jobs, separate workers so they never starve inference) and ``default``."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")


class LoupeCelery(Celery):  # type: ignore[misc]  # celery is untyped
    @cached_property
    def backend(self) -> Any:
        # Celery keeps the result backend per thread; the web's sync code runs in a new thread
        # per request under ASGI, so every enqueue built a backend from its URL again (13 % of
        # the web's CPU in the loop benchmark). Results are ignored (no backend configured), so
        # one per process is safe.
        return self._get_backend()


app = LoupeCelery("loupe")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
