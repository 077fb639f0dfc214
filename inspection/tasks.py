from __future__ import annotations

from inspection.services import inspection_run
from workers.tasks import Queue, loupe_task


@loupe_task(name="inspection.run", queue=Queue.INFERENCE, soft_time_limit=60, time_limit=90)
def inspection_run_task(inspection_id: int) -> None:
    """Run the deployed models on one inspection and route its part. Idempotent."""
    inspection_run(inspection_id=inspection_id)
