from __future__ import annotations

from inspection.services import uploads_purge_expired
from inspection.services.inspections import inspections_requeue_stale
from inspection.services.line_integration import verdict_publish_mqtt
from inspection.services.model_runs import inspection_run_queued
from inspection.services.model_versions import training_run
from workers.tasks import Queue, loupe_task


@loupe_task(name="inspection.run", queue=Queue.INFERENCE, soft_time_limit=60, time_limit=90)
def inspection_run_task(inspection_id: int) -> None:
    """Run the deployed models on one inspection, with others of its project that are waiting,
    and route their parts. Idempotent: a part done or claimed by another run is left alone."""
    inspection_run_queued(inspection_id=inspection_id)


@loupe_task(name="inspection.purge_expired_images", queue=Queue.DEFAULT, soft_time_limit=600, time_limit=660)
def images_purge_expired_task() -> None:
    """Apply each project's image retention (batches until done or the time budget is spent; idempotent)."""
    from inspection.services.retention import images_purge_expired

    images_purge_expired()


@loupe_task(name="inspection.purge_expired_uploads", queue=Queue.DEFAULT, soft_time_limit=120, time_limit=180)
def uploads_purge_expired_task() -> None:
    """Delete resumable uploads abandoned for longer than their time to live."""
    uploads_purge_expired()


# Training: hours, not seconds; the soft limit lets the job record its failure cleanly.
@loupe_task(name="inspection.train", queue=Queue.TRAINING, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def training_run_task(model_version_id: int) -> None:
    """Train one queued model version. Idempotent; a redelivered job is marked failed."""
    training_run(model_version_id=model_version_id)


@loupe_task(name="inspection.compare_model", queue=Queue.TRAINING, soft_time_limit=1800, time_limit=1900)
def model_compare_task(model_version_id: int) -> None:
    """Score a trained version beside the serving set on the latest audited parts, to say
    before it is deployed whether it would send more parts to people. Idempotent."""
    from inspection.services.model_compare import model_compare_run

    model_compare_run(version_id=model_version_id)


@loupe_task(name="inspection.retrain_due", queue=Queue.DEFAULT, soft_time_limit=120, time_limit=180)
def retraining_start_due_task() -> None:
    """Start the retraining that projects asked for once enough new human labels arrived."""
    from inspection.services.model_compare import retraining_start_due

    retraining_start_due()


@loupe_task(name="inspection.requeue_stale", queue=Queue.DEFAULT, soft_time_limit=60, time_limit=90)
def inspections_requeue_stale_task() -> None:
    """Reconciler: no inspection stays pending because a broker message was lost."""
    inspections_requeue_stale()


@loupe_task(name="inspection.publish_verdict", queue=Queue.DEFAULT, soft_time_limit=30, time_limit=60, max_retries=8)
def verdict_publish_task(verdict_id: int) -> None:
    """Tell the line about a final verdict. A broker outage is retried with backoff; QoS 1 and
    a retry may deliver twice, so subscribers deduplicate on ``verdict_id``."""
    from celery import current_task

    from inspection.mqtt import MqttUnavailable

    try:
        verdict_publish_mqtt(verdict_id=verdict_id)
    except MqttUnavailable as error:
        retries = current_task.request.retries
        raise current_task.retry(exc=error, countdown=min(300, 5 * 2**retries)) from None


@loupe_task(name="inspection.publish_overdue_verdicts", queue=Queue.DEFAULT, soft_time_limit=300, time_limit=360)
def verdicts_publish_overdue_task() -> None:
    """Outbox reconciler: a final verdict the broker never acknowledged is published later."""
    from inspection.services.line_integration import verdicts_publish_overdue

    verdicts_publish_overdue()


@loupe_task(name="inspection.deliver_webhook", queue=Queue.DEFAULT, soft_time_limit=30, time_limit=60, max_retries=6)
def webhook_deliver_task(delivery_id: int) -> None:
    """POST one signed verdict to a webhook; failed attempts come back with backoff."""
    from celery import current_task

    from inspection.services.webhooks import WebhookRetry, webhook_deliver

    try:
        webhook_deliver(delivery_id=delivery_id)
    except WebhookRetry as retry:
        raise current_task.retry(exc=retry, countdown=retry.countdown) from None


@loupe_task(name="inspection.requeue_webhook_deliveries", queue=Queue.DEFAULT, soft_time_limit=60, time_limit=90)
def webhook_deliveries_requeue_overdue_task() -> None:
    """Reconciler: no webhook delivery stays pending because its broker message was lost."""
    from inspection.services.webhooks import webhook_deliveries_requeue_overdue

    webhook_deliveries_requeue_overdue()


@loupe_task(name="inspection.fail_stalled_training", queue=Queue.DEFAULT, soft_time_limit=60, time_limit=90)
def trainings_fail_stalled_task() -> None:
    """Reconciler: a training job whose worker died does not stay "training" for hours."""
    from inspection.services.model_versions import trainings_fail_stalled

    trainings_fail_stalled()


@loupe_task(name="inspection.recalibrate_routing", queue=Queue.DEFAULT, soft_time_limit=300, time_limit=360)
def routing_recalibrate_stale_task() -> None:
    """Refit routing thresholds where new human labels arrived."""
    from inspection.services.routing import routing_recalibrate_stale

    routing_recalibrate_stale()


@loupe_task(name="inspection.recalibrate_held_routing", queue=Queue.DEFAULT, soft_time_limit=120, time_limit=180)
def routing_recalibrate_held_task() -> None:
    """Refit at once projects whose thresholds decide no part, once enough parts are decided."""
    from inspection.services.routing import routing_recalibrate_held

    routing_recalibrate_held()


@loupe_task(name="inspection.rescore_calibration", queue=Queue.DEFAULT, soft_time_limit=1800, time_limit=1900)
def calibration_rescore_task(project_id: int) -> None:
    """After a deployment: score the decided parts' images with the new set and recalibrate."""
    from inspection.services.routing import calibration_rescore

    calibration_rescore(project_id=project_id)


@loupe_task(name="inspection.rescore_view_calibration", queue=Queue.DEFAULT, soft_time_limit=1800, time_limit=1900)
def calibration_rescore_view_task(station_id: int) -> None:
    """After a station's view changed: score its decided parts through the new view with the
    deployed models and fit the station's own thresholds."""
    from inspection.services.routing import calibration_rescore_view

    calibration_rescore_view(station_id=station_id)


@loupe_task(name="inspection.check_drift", queue=Queue.DEFAULT, soft_time_limit=300, time_limit=360)
def drift_check_task() -> None:
    """Open and close drift alerts for every project with deployed models."""
    from inspection.services.drift import drift_check_all

    drift_check_all()
