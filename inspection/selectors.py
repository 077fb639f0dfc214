"""Reads, already scoped to what the caller may see.

Callers are people (project roles through Membership) or stations (their own station only).
An object outside the caller's scope is reported as ``NotFound``: its existence is not revealed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Prefetch, QuerySet

from inspection.auth import StationPrincipal
from inspection.errors import Forbidden, NotFound
from inspection.models import (
    AuditEvent,
    Calibration,
    DefectClass,
    DriftAlert,
    DriftReview,
    Inspection,
    Membership,
    ModelVersion,
    Part,
    Project,
    Role,
    Station,
    StationToken,
    Upload,
    Verdict,
    Webhook,
    WebhookDelivery,
)
from inspection.permissions import CAN_ADMINISTER, CAN_MANAGE, CAN_VIEW


def project_ids_for(*, user: Any, roles: Iterable[str] = CAN_VIEW) -> QuerySet[Membership, int]:
    """Ids of the projects where ``user`` holds one of ``roles``, as a subquery."""
    if isinstance(user, StationPrincipal) or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Membership.objects.none().values_list("project_id", flat=True)
    return Membership.objects.filter(user=user, role__in=list(roles)).values_list("project_id", flat=True)


def role_in_project(*, user: Any, project_id: int) -> str | None:
    if isinstance(user, StationPrincipal) or not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, project_id=project_id).values_list("role", flat=True).first()


def access_project(*, user: Any, project_id: int, roles: Iterable[str] = CAN_VIEW) -> Project:
    """The project if ``user`` is a member; NotFound if not a member, Forbidden if the role is too low."""
    role = role_in_project(user=user, project_id=project_id)
    if role is None:
        raise NotFound("Project not found.")
    if role not in set(roles):
        raise Forbidden(f"Your role in this project ({role}) does not allow this.")
    return Project.objects.get(pk=project_id)


def projects_for(*, user: Any) -> QuerySet[Project]:
    return Project.objects.filter(id__in=project_ids_for(user=user)).prefetch_related("defect_classes")


def defect_classes_for(*, user: Any) -> QuerySet[DefectClass]:
    return DefectClass.objects.filter(project_id__in=project_ids_for(user=user))


def _final_verdicts() -> Prefetch[Any]:
    return Prefetch(
        "part__verdicts",
        queryset=Verdict.objects.filter(is_final=True).select_related("defect_class"),
        to_attr="final_verdicts",
    )


def inspections_for(*, user: Any) -> QuerySet[Inspection]:
    """People see their projects' inspections; a station sees only its own posts."""
    base = Inspection.objects.select_related("part", "station", "station__line", "image").prefetch_related(
        _final_verdicts()
    )
    if isinstance(user, StationPrincipal):
        return base.filter(station_id=user.station.pk)
    return base.filter(project_id__in=project_ids_for(user=user))


def parts_for(*, user: Any) -> QuerySet[Part]:
    return Part.objects.filter(project_id__in=project_ids_for(user=user)).prefetch_related(
        Prefetch("verdicts", queryset=Verdict.objects.filter(is_final=True), to_attr="final_verdicts")
    )


def verdicts_for(*, user: Any) -> QuerySet[Verdict]:
    return Verdict.objects.filter(project_id__in=project_ids_for(user=user)).select_related(
        "part", "defect_class", "decided_by"
    )


def memberships_for(*, user: Any) -> QuerySet[Membership]:
    """Members are listed to the admins of a project, and each user sees their own rows."""
    from django.db.models import Q

    if isinstance(user, StationPrincipal) or not getattr(user, "is_authenticated", False):
        return Membership.objects.none()
    admin_projects = project_ids_for(user=user, roles=[Role.ADMIN])
    return Membership.objects.filter(Q(project_id__in=admin_projects) | Q(user=user)).select_related("user")


def final_verdict_of(*, part: Part) -> Verdict | None:
    prefetched = getattr(part, "final_verdicts", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return Verdict.objects.filter(part=part, is_final=True).select_related("defect_class").first()


def health() -> tuple[dict[str, str], int]:
    """``({component: "ok" | error}, http_status)`` for the database and Redis."""
    from django.core.cache import cache
    from django.db import connection

    report: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = "ok"
    except Exception as exc:  # noqa: BLE001  (a health check reports any failure)
        report["database"] = type(exc).__name__
    try:
        cache.set("loupe:health", "1", timeout=5)
        report["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        report["redis"] = type(exc).__name__
    return report, 200 if all(value == "ok" for value in report.values()) else 503


def access_upload(*, station: Any, upload_id: Any) -> Upload:
    """A station's own resumable upload; anyone else's answers NotFound."""
    upload = Upload.objects.select_related("station").filter(pk=upload_id, station=station).first()
    if upload is None:
        raise NotFound("Upload not found.")
    return upload


def stations_for(*, user: Any) -> QuerySet[Station]:
    return Station.objects.filter(project_id__in=project_ids_for(user=user)).select_related("line")


def station_tokens_for(*, user: Any) -> QuerySet[StationToken]:
    """Token rows (never secrets) of the projects where ``user`` is an admin."""
    return StationToken.objects.filter(
        station__project_id__in=project_ids_for(user=user, roles=CAN_ADMINISTER)
    ).select_related("station")


def managed_project_ids(*, user: Any) -> list[int]:
    return list(project_ids_for(user=user, roles=CAN_MANAGE))


def model_versions_for(*, user: Any) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project_id__in=project_ids_for(user=user)).select_related("author")


def access_model_version(*, user: Any, version_id: int, roles: Iterable[str] = CAN_VIEW) -> ModelVersion:
    version = model_versions_for(user=user).filter(pk=version_id).first()
    if version is None:
        raise NotFound("Model version not found.")
    access_project(user=user, project_id=version.project_id, roles=roles)
    return version


def audit_events_for(*, user: Any) -> QuerySet[AuditEvent]:
    """The audit trail of the projects the caller manages."""
    return AuditEvent.objects.filter(project_id__in=project_ids_for(user=user, roles=CAN_MANAGE))


def webhooks_for(*, user: Any) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project_id__in=project_ids_for(user=user, roles=CAN_ADMINISTER))


def webhook_deliveries_for(*, user: Any) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(
        webhook__project_id__in=project_ids_for(user=user, roles=CAN_ADMINISTER)
    ).select_related("webhook")


def human_labels_since_deployment(*, project: Project) -> int:
    """Human labels (review decisions and annotations) that arrived after the newest
    deployed model was trained: what the next retraining would add."""
    from annotation.models import Annotation

    deployed = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.DEPLOYED)
    started = [version.started_at or version.created_at for version in deployed]
    labels = Annotation.objects.filter(project=project).exclude(source=Annotation.Source.IMPORT)
    if started:
        labels = labels.filter(created_at__gt=max(started))
    return labels.count()


def station_view_untrained(station: Station, versions: Iterable[Any]) -> bool:
    """Whether any of the model ``versions`` learnt this station's images through another view
    (inspection region and ignore zones) than the station has now; a version from before
    regions saw the whole frame."""
    current = station.view()
    return any((version.station_regions or {}).get(str(station.pk)) != current for version in versions)


def station_models_view(*, station: Station, deployed: list[ModelVersion] | None = None) -> dict[str, Any]:
    """How the deployed models see the station now: ``learnt`` (None: nothing deployed) whether
    they were trained on its current view; if not, ``calibration``: the thresholds fitted on the
    station's decided parts through that view (None: none yet, its parts go to people), and
    ``parts_needed``: how many decided parts that fit needs before it can pass any (None while
    the view is learnt or nothing is deployed)."""
    from workers.ml.regions import view_key
    from workers.routing.calibration import parts_needed

    if deployed is None:
        deployed = list(ModelVersion.objects.filter(project_id=station.project_id, status=ModelVersion.Status.DEPLOYED))
    if not deployed:
        return {"learnt": None, "calibration": None, "parts_needed": None}
    if not station_view_untrained(station, deployed):
        return {"learnt": True, "calibration": None, "parts_needed": None}
    project = Project.objects.only("target_escape_rate", "calibration_confidence").get(pk=station.project_id)
    needed = parts_needed(project.target_escape_rate, 1.0 - project.calibration_confidence)
    label = ",".join(sorted(version.serving_label for version in deployed))
    calibration = (
        Calibration.objects.filter(project_id=station.project_id, model_version=label, station=station)
        .filter(view_key=view_key(station.view()), drift_since__isnull=True)
        .order_by("-id")
        .first()
    )
    if calibration is None:
        return {"learnt": False, "calibration": None, "parts_needed": needed}
    fields = ("id", "parts", "t_pass", "t_fail", "expected_review_rate", "escape_rate", "created_at")
    return {
        "learnt": False,
        "calibration": {name: getattr(calibration, name) for name in fields},
        "parts_needed": needed,
    }


def stations_on_unlearnt_views(*, project: Project) -> list[tuple[Station, dict[str, Any]]]:
    """The project's stations whose current view the deployed models were not trained on, with
    ``station_models_view`` of each."""
    deployed = list(ModelVersion.objects.filter(project=project, status=ModelVersion.Status.DEPLOYED))
    if not deployed:
        return []
    out = []
    for station in project.stations.select_related("line").order_by("id"):
        state = station_models_view(station=station, deployed=deployed)
        if state["learnt"] is False:
            out.append((station, state))
    return out


# --- drift ---------------------------------------------------------------------------------


def deployed_set_label(*, project_id: int) -> str:
    """The serving label of the project's deployed model set ("" when none is deployed)."""
    rows = ModelVersion.objects.filter(project_id=project_id, status=ModelVersion.Status.DEPLOYED)
    return ",".join(sorted(row.serving_label for row in rows))


def station_drift(*, station: Station, label: str, window: int, min_parts: int) -> dict[str, Any]:
    """The station's parts as the deployed set ``label`` saw them: its first ``window`` parts
    through the station's current view, since its drift baseline if a manager set one (the
    reference), against its latest ``window`` after those (the current window), per watched
    signal (``workers.routing.drift``). ``level`` is the worst signal's, or "too_few_parts"
    while either window holds fewer than ``min_parts``."""
    from workers.ml.regions import scored_view, view_key
    from workers.routing.drift import MODEL_SIGNALS, compare_windows, worst

    key = view_key(station.view())
    rows = Inspection.objects.filter(station=station, model_version=label, status=Inspection.Status.DONE)
    changed = (
        AuditEvent.objects.filter(
            project_id=station.project_id, action="station.region_changed", object_id=str(station.pk)
        )
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    if changed is not None:  # parts from before the view changed are not this view's
        rows = rows.filter(received_at__gte=changed)
    if station.drift_baseline_at is not None:  # a manager accepted the parts since as normal
        rows = rows.filter(received_at__gte=station.drift_baseline_at)

    def this_view(batch: Iterable[tuple[int, Any, Any]]) -> list[tuple[int, Any, dict[str, Any]]]:
        return [row for row in batch if isinstance(row[2], dict) and view_key(scored_view(row[2])) == key]

    fields = ("id", "received_at", "scores")
    reference = this_view(rows.order_by("id").values_list(*fields)[:window])
    after = rows.filter(id__gt=reference[-1][0]) if reference else rows.none()
    current = this_view(after.order_by("-id").values_list(*fields)[:window])[::-1]

    def span(batch: list[tuple[int, Any, dict[str, Any]]]) -> dict[str, Any]:
        return {"parts": len(batch), "from": batch[0][1] if batch else None, "to": batch[-1][1] if batch else None}

    out: dict[str, Any] = {
        "station": station.pk,
        "line": station.line.name,
        "name": station.name,
        "baseline_at": station.drift_baseline_at,
        "reference": span(reference),
        "current": span(current),
        "signals": [],
        "level": "too_few_parts",
        "models_level": "too_few_parts",
    }
    if len(reference) >= min_parts and len(current) >= min_parts:
        signals = compare_windows([row[2] for row in reference], [row[2] for row in current])
        out["signals"] = [signal.as_dict() for signal in signals]
        out["level"] = worst([signal.level for signal in signals])
        # Whether the models' outputs moved, or only the camera's image (which the models,
        # standardising intensity, may not mind: benchmarks/drift_models_mtd.py).
        out["models_level"] = worst([s.level for s in signals if s.signal in MODEL_SIGNALS])
    return out


def drift_review_signals(project: Project) -> Sequence[str] | None:
    """The signals whose open alerts send a station's parts to people under the project's
    ``drift_review`` (None: every signal's; an empty tuple: none)."""
    from workers.routing.drift import MODEL_SIGNALS

    if project.drift_review == DriftReview.OFF:
        return ()
    return MODEL_SIGNALS if project.drift_review == DriftReview.MODELS else None


def drifting_stations(*, project_id: int, label: str, signals: Sequence[str] | None = None) -> dict[int, Any]:
    """Stations of the project with an open drift alert for the deployed set ``label`` (on one of
    ``signals`` when given), each with when the earliest of those alerts opened: the start of
    its drift episode."""
    from django.db.models import Min

    alerts = DriftAlert.objects.filter(project_id=project_id, model_version=label, closed_at__isnull=True)
    if signals is not None:
        alerts = alerts.filter(signal__in=list(signals))
    per_station = alerts.order_by().values("station_id").annotate(since=Min("opened_at"))
    return dict(per_station.values_list("station_id", "since"))


def project_drift(*, project: Project) -> dict[str, Any]:
    """``station_drift`` of each active station for the deployed set, and the open alerts."""
    from django.conf import settings

    from workers.routing.calibration import parts_needed

    label = deployed_set_label(project_id=project.pk)
    window, min_parts = settings.LOUPE_DRIFT_WINDOW, settings.LOUPE_DRIFT_MIN_PARTS
    # Stations whose open alerts make drift_review send their parts to people, since when.
    held = drifting_stations(project_id=project.pk, label=label, signals=drift_review_signals(project)) if label else {}
    needed = parts_needed(project.target_escape_rate, 1.0 - project.calibration_confidence)
    stations = []
    if label:
        for station in project.stations.filter(is_active=True).select_related("line").order_by("id"):
            state = station_drift(station=station, label=label, window=window, min_parts=min_parts)
            state["held_since"] = held.get(station.pk)
            # Decided parts since the drift began before its own thresholds can pass any.
            state["drift_parts_needed"] = needed if station.pk in held else None
            state["drift_calibration"] = (
                drift_calibration_dict(station=station, label=label, since=held[station.pk])
                if station.pk in held
                else None
            )
            stations.append(state)
    alerts = DriftAlert.objects.filter(project=project, closed_at__isnull=True).select_related("station__line")
    return {
        "deployed": label or None,
        "drift_review": project.drift_review,
        "window": window,
        "min_parts": min_parts,
        "stations": stations,
        "open_alerts": [drift_alert_dict(alert) for alert in alerts],
        "held_stations": sorted(held),
    }


def stations_drift_state(*, project_id: int | None = None) -> dict[int, tuple[bool, bool]]:
    """Per station with an open drift alert for its project's deployed set: (alerted, held), held
    when drift_review sends its parts to people because of it."""
    projects = Project.objects.all() if project_id is None else Project.objects.filter(pk=project_id)
    out: dict[int, tuple[bool, bool]] = {}
    for project in projects.filter(drift_alerts__closed_at__isnull=True).distinct():
        label = deployed_set_label(project_id=project.pk)
        if not label:
            continue
        held = drifting_stations(project_id=project.pk, label=label, signals=drift_review_signals(project))
        for station_id in drifting_stations(project_id=project.pk, label=label):
            out[station_id] = (True, station_id in held)
    return out


def drift_calibration_dict(*, station: Station, label: str, since: Any) -> dict[str, Any] | None:
    """The thresholds fitted on a drifting station's parts since its drift began (None: none
    yet); until their t_pass is at least 0 they decide nothing and every part still goes to
    people."""
    calibration = (
        Calibration.objects.filter(project_id=station.project_id, model_version=label, station=station)
        .filter(drift_since=since)
        .order_by("-id")
        .first()
    )
    if calibration is None:
        return None
    fields = ("id", "parts", "t_pass", "t_fail", "expected_review_rate", "escape_rate", "created_at")
    return {name: getattr(calibration, name) for name in fields}


def drift_alert_dict(alert: DriftAlert) -> dict[str, Any]:
    from workers.routing.drift import SIGNALS, signal_source

    return {
        "id": alert.pk,
        "station": alert.station_id,
        "line": alert.station.line.name,
        "name": alert.station.name,
        "signal": alert.signal,
        "label": SIGNALS.get(alert.signal, alert.signal),
        "source": signal_source(alert.signal),
        "model_version": alert.model_version,
        "psi": alert.psi,
        "latest_psi": alert.latest_psi,
        "p_value": alert.p_value,
        "reference_mean": alert.reference_mean,
        "current_mean": alert.current_mean,
        "opened_at": alert.opened_at,
        "closed_at": alert.closed_at,
    }


# --- line integration feeds ----------------------------------------------------------------


def final_verdict_ids_after(*, after_id: int, limit: int = 20_000) -> list[tuple[int, Any]]:
    """(id, created_at) of final verdicts with a higher id, in id order."""
    rows = Verdict.objects.filter(is_final=True, id__gt=after_id).order_by("id").values_list("id", "created_at")
    return list(rows[:limit])


def final_verdicts_by_ids(ids: list[int]) -> list[Verdict]:
    """Those final verdicts with what a line message needs loaded, in id order."""
    if not ids:
        return []
    return list(
        Verdict.objects.filter(pk__in=ids, is_final=True)
        .select_related("part", "defect_class", "inspection__station__line")
        .order_by("id")
    )


def latest_final_verdicts_by_station(*, project_id: int | None = None) -> list[Verdict]:
    """Each active station's latest final verdict (one query per station); only the stations of
    ``project_id`` when given."""
    out = []
    stations = Station.objects.filter(is_active=True)
    if project_id is not None:
        stations = stations.filter(project_id=project_id)
    for station in stations.order_by("id"):
        verdict = (
            Verdict.objects.filter(is_final=True, inspection__station=station)
            .select_related("part", "defect_class", "inspection__station__line")
            .order_by("-id")
            .first()
        )
        if verdict is not None:
            out.append(verdict)
    return out
