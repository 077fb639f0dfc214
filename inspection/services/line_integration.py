"""Final verdicts go back to the line: MQTT (and webhooks, see ``webhooks``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from inspection.models import Verdict


def verdict_topic(verdict: Verdict) -> str:
    """``loupe/projects/<id>/lines/<id>/stations/<id>/verdicts``: ids, because names may hold
    MQTT wildcards (+, #) or slashes."""
    station = verdict.inspection.station if verdict.inspection else None
    line_part = f"lines/{station.line_id}/stations/{station.pk}" if station else "lines/none/stations/none"
    return f"{settings.MQTT_TOPIC_PREFIX}/projects/{verdict.project_id}/{line_part}/verdicts"


def verdict_message(verdict: Verdict) -> dict[str, Any]:
    inspection = verdict.inspection
    return {
        "verdict_id": verdict.pk,
        "part_serial": verdict.part.serial,
        "sku": verdict.part.sku,
        "verdict": verdict.outcome,
        "defect_class": verdict.defect_class.name if verdict.defect_class else None,
        "source": verdict.source,
        "model_version": verdict.model_version or None,
        "decided_at": verdict.created_at.isoformat(),
        "captured_at": inspection.captured_at.isoformat() if inspection else None,
        "received_at": inspection.received_at.isoformat() if inspection else None,
        "station": inspection.station_id if inspection else None,
    }


def verdict_publish_mqtt(*, verdict_id: int) -> bool:
    """Publish one final verdict (QoS 1). Returns False when MQTT is not configured or the
    verdict is gone; raises ``MqttUnavailable`` on a transient broker failure (retried)."""
    if not settings.MQTT_URL:
        return False
    verdict = (
        Verdict.objects.select_related("part", "defect_class", "inspection", "inspection__station")
        .filter(pk=verdict_id, is_final=True)
        .first()
    )
    if verdict is None:
        return False
    verdict_publish_loaded(verdict)
    return True


def verdict_publish_loaded(verdict: Verdict) -> None:
    """Publish a committed final verdict whose part, defect class, inspection and station are
    loaded (no query); raises ``MqttUnavailable`` when the broker does not acknowledge."""
    from inspection import mqtt

    mqtt.publish(settings.MQTT_URL, verdict_topic(verdict), json.dumps(verdict_message(verdict)).encode())
    Verdict.objects.filter(pk=verdict.pk).update(published_at=timezone.now())


def verdicts_publish_loaded(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Publish committed final verdicts (loaded as for ``verdict_publish_loaded``) in one go,
    waiting for the broker's acknowledgements together; returns those it did not acknowledge."""
    from inspection import mqtt

    messages = [(verdict_topic(verdict), json.dumps(verdict_message(verdict)).encode()) for verdict in verdicts]
    unacknowledged = set(mqtt.publish_many(settings.MQTT_URL, messages))
    acknowledged = [verdict.pk for index, verdict in enumerate(verdicts) if index not in unacknowledged]
    if acknowledged:  # one statement for the batch: the outbox's record of what the line has
        Verdict.objects.filter(pk__in=acknowledged).update(published_at=timezone.now())
    return [verdicts[index] for index in sorted(unacknowledged)]


# The publishers (the deciding worker at once, then the publish task's retries for ~15 minutes)
# go first; after this long an unpublished final verdict is the outbox reconciler's.
PUBLISH_OVERDUE_AFTER = timedelta(minutes=20)
# How far back it looks (the rows it scans; older verdicts are not sent to a line any more).
PUBLISH_WINDOW = timedelta(hours=2)


def overdue_verdicts(*, older_than: timedelta, window: timedelta) -> QuerySet[Verdict]:
    """Final verdicts created between ``window`` and ``older_than`` ago that the broker never
    acknowledged, oldest first (served by the partial index ``verdict_unpublished_final``)."""
    now = timezone.now()
    return (
        Verdict.objects.filter(
            is_final=True, published_at__isnull=True, created_at__gte=now - window, created_at__lt=now - older_than
        )
        .select_related("part", "defect_class", "inspection", "inspection__station")
        .order_by("created_at")
    )


def verdicts_publish_overdue(
    *, older_than: timedelta = PUBLISH_OVERDUE_AFTER, window: timedelta = PUBLISH_WINDOW, limit: int = 5000
) -> int:
    """Publish, in batches, the final verdicts of the last ``window`` the broker never
    acknowledged (the publish task ran out of retries, or the message queueing it was lost);
    returns how many it published. Idempotent; nothing to do when MQTT is not configured.
    Subscribers deduplicate on ``verdict_id`` (QoS 1 may deliver twice anyway)."""
    if not settings.MQTT_URL:
        return 0
    overdue = overdue_verdicts(older_than=older_than, window=window)[:limit]
    published = 0
    batch: list[Verdict] = []
    for verdict in overdue:
        batch.append(verdict)
        if len(batch) == 500:
            published += len(batch) - len(verdicts_publish_loaded(batch))
            batch = []
    if batch:
        published += len(batch) - len(verdicts_publish_loaded(batch))
    return published
