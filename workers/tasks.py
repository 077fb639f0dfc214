"""The one task decorator every Loupe task goes through."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task

logger = logging.getLogger("loupe.tasks")

F = TypeVar("F", bound=Callable[..., Any])


class Queue:
    INFERENCE = "inference"  # per-part model runs; latency-bound; many small messages
    TRAINING = "training"  # long jobs on their own workers, so they never starve inference
    DEFAULT = "default"  # housekeeping: reconcilers, exports, webhooks


def loupe_task(
    *, name: str, queue: str, soft_time_limit: int, time_limit: int, max_retries: int = 3
) -> Callable[[F], Any]:
    """Register a Celery task with Loupe's delivery guarantees.

    Tasks take ids, are idempotent (status guards in the services) and may therefore be run
    more than once; these options make sure they are run at least once.
    """

    def decorate(func: F) -> Any:
        @functools.wraps(func)
        def with_log_context(*args: Any, **kwargs: Any) -> Any:
            logger.info("task %s start args=%s", name, args)
            result = func(*args, **kwargs)
            logger.info("task %s done args=%s", name, args)
            return result

        return shared_task(
            name=name,
            queue=queue,
            # Ack after the body ran, so a worker that dies mid-task leaves the message to be
            # redelivered instead of lost (bad-inputs case 27).
            acks_late=True,
            # ...including when the pool process is killed (OOM, kill -9): requeue, don't ack.
            reject_on_worker_lost=True,
            # A hung model or a stuck I/O call must not hold a worker slot forever.
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            max_retries=max_retries,
            # Results are rows in PostgreSQL; the broker keeps none.
            ignore_result=True,
        )(with_log_context)

    return decorate
