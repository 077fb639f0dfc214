"""Events for the managers' screens (training progress, drift alerts, routing), sent after commit."""

from __future__ import annotations

from typing import Any

from inspection.channel_layer import group_send


def training_group(project_id: int) -> str:
    return f"project-{project_id}-training"


def notify_training_progress(*, project_id: int, payload: dict[str, Any]) -> None:
    group_send(
        training_group(project_id),
        {
            "type": "review.event",
            "kind": "training",
            "project": project_id,
            "event": "training.progress",
            "payload": payload,
        },
    )


def notify_drift(*, project_id: int, event: str, payload: dict[str, Any]) -> None:
    """``drift.detected``, ``drift.cleared`` or ``drift.calibrated`` (a held station is decided by
    the models again, on thresholds fitted since its drift) to the project's managers."""
    group_send(
        training_group(project_id),
        {"type": "review.event", "kind": "drift", "project": project_id, "event": event, "payload": payload},
    )


def notify_routing(*, project_id: int, event: str, payload: dict[str, Any]) -> None:
    """``routing.shifted``: the audited parts showed the models breaking a target, and the
    project's thresholds were fitted again on the latest of them alone."""
    group_send(
        training_group(project_id),
        {"type": "review.event", "kind": "routing", "project": project_id, "event": event, "payload": payload},
    )
