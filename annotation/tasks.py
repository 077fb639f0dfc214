from __future__ import annotations

from annotation.services.annotations import annotation_masks_sweep
from workers.tasks import Queue, loupe_task


@loupe_task(name="annotation.sweep_masks", queue=Queue.DEFAULT, soft_time_limit=600, time_limit=660)
def annotation_masks_sweep_task() -> None:
    """Delete label mask files no annotation refers to any more (idempotent)."""
    annotation_masks_sweep()
