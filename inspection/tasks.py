from __future__ import annotations

from inspection.services import inspection_run, uploads_purge_expired
from workers.tasks import Queue, loupe_task


@loupe_task(name="inspection.run", queue=Queue.INFERENCE, soft_time_limit=60, time_limit=90)
def inspection_run_task(inspection_id: int) -> None:
    """Run the deployed models on one inspection and route its part. Idempotent."""
    inspection_run(inspection_id=inspection_id)


@loupe_task(name="inspection.purge_expired_uploads", queue=Queue.DEFAULT, soft_time_limit=120, time_limit=180)
def uploads_purge_expired_task() -> None:
    """Delete resumable uploads abandoned for longer than their time to live."""
    uploads_purge_expired()
