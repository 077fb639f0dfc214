"""Drift alerts: opened when a station's parts, as the deployed models see them, have moved
away from the first parts those models scored there; closed when they come back (see
``selectors.project_drift`` and ``workers.routing.drift``). Run periodically by beat."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from inspection.models import DriftAlert, ModelVersion, Project, Station
from inspection.notifications import notify_drift
from inspection.selectors import drift_alert_dict, project_drift
from inspection.services.audit import audit_record
from workers.routing.drift import DRIFT


def drift_check(*, project_id: int) -> dict[str, int]:
    """Open an alert for each (station, signal) now at the "drift" level that has none open
    for the deployed set; refresh the open ones' latest PSI; close those no longer drifting
    (or opened for a set no longer deployed). Opening and closing are audited and pushed to the
    project's managers. Idempotent: a second run with no new parts changes nothing."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"opened": 0, "closed": 0}
    state = project_drift(project=project)
    label = state["deployed"] or ""
    drifting: dict[tuple[int, str], dict[str, Any]] = {
        (station["station"], signal["signal"]): signal
        for station in state["stations"]
        for signal in station["signals"]
        if signal["level"] == DRIFT
    }
    opened = closed = 0
    for alert in DriftAlert.objects.filter(project=project, closed_at__isnull=True):
        signal = drifting.get((alert.station_id, alert.signal))
        if alert.model_version == label and signal is not None:
            DriftAlert.objects.filter(pk=alert.pk).update(latest_psi=signal["psi"])
            continue
        closed += _close(alert)
    for (station_id, name), signal in drifting.items():
        opened += _open(project, label, station_id, name, signal)
    return {"opened": opened, "closed": closed}


def _open(project: Project, label: str, station_id: int, name: str, signal: dict[str, Any]) -> int:
    try:
        with transaction.atomic():
            alert = DriftAlert.objects.create(
                project=project,
                station_id=station_id,
                model_version=label,
                signal=name,
                psi=signal["psi"],
                latest_psi=signal["psi"],
                p_value=signal["p_value"],
                reference_mean=signal["reference_mean"],
                current_mean=signal["current_mean"],
            )
            after = {k: signal[k] for k in ("psi", "p_value", "reference_mean", "current_mean")}
            audit_record(
                project_id=project.pk,
                actor=None,
                action="drift.detected",
                subject=alert,
                after={"station": station_id, "signal": name, "model_version": label, **after},
            )
    except IntegrityError:
        return 0  # open already (the one-open constraint): refreshed above, or by a concurrent run
    _push(project.pk, "drift.detected", alert)
    return 1


def _close(alert: DriftAlert) -> int:
    with transaction.atomic():
        if not DriftAlert.objects.filter(pk=alert.pk, closed_at__isnull=True).update(closed_at=timezone.now()):
            return 0  # closed by a concurrent run
        alert.refresh_from_db()
        audit_record(
            project_id=alert.project_id,
            actor=None,
            action="drift.cleared",
            subject=alert,
            before={"open": True},
            after={"open": False, "station": alert.station_id, "signal": alert.signal, "latest_psi": alert.latest_psi},
        )
    _push(alert.project_id, "drift.cleared", alert)
    return 1


def _push(project_id: int, event: str, alert: DriftAlert) -> None:
    alert = DriftAlert.objects.select_related("station__line").get(pk=alert.pk)
    payload = drift_alert_dict(alert)
    for key in ("opened_at", "closed_at"):
        payload[key] = payload[key].isoformat() if payload[key] else None
    transaction.on_commit(lambda: notify_drift(project_id=project_id, event=event, payload=payload))


def drift_check_all() -> dict[str, int]:
    """``drift_check`` for every project with deployed models or open alerts."""
    totals = {"opened": 0, "closed": 0}
    with_models = ModelVersion.objects.filter(status=ModelVersion.Status.DEPLOYED).values("project_id")
    with_alerts = DriftAlert.objects.filter(closed_at__isnull=True).values("project_id")
    projects = Project.objects.filter(Q(pk__in=with_models) | Q(pk__in=with_alerts)).order_by("pk")
    for project_id in projects.values_list("pk", flat=True):
        for key, count in drift_check(project_id=project_id).items():
            totals[key] += count
    return totals


def station_drift_rebaseline(*, station: Station, actor: Any = None) -> Station:
    """A manager accepts the station's parts from now on as its new normal (a new lamp that is
    brighter for good, a new supplier's material): drift is measured against the first parts
    after this, and the station's open alerts close. The calibrated thresholds are not changed
    here: the parts people decide go on refitting them. Audited (``drift.rebaselined``)."""
    with transaction.atomic():
        locked = Station.objects.select_for_update().get(pk=station.pk)
        before = locked.drift_baseline_at
        locked.drift_baseline_at = timezone.now()
        locked.save(update_fields=["drift_baseline_at"])
        audit_record(
            project_id=locked.project_id,
            actor=actor,
            action="drift.rebaselined",
            subject=locked,
            before={"drift_baseline_at": before.isoformat() if before else None},
            after={"drift_baseline_at": locked.drift_baseline_at.isoformat()},
        )
        for alert in DriftAlert.objects.filter(station=locked, closed_at__isnull=True):
            _close(alert)
    return locked
