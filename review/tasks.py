from __future__ import annotations

from review.services import review_leases_expire
from workers.tasks import Queue, loupe_task


@loupe_task(name="review.expire_leases", queue=Queue.DEFAULT, soft_time_limit=30, time_limit=60)
def review_leases_expire_task() -> None:
    """Abandoned claims go back to the queue (run every few seconds by beat)."""
    review_leases_expire()
