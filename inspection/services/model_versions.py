"""Writes for the model registry: start, run, cancel, deploy and retire model versions.

The ML package (``workers.ml``) is imported lazily: web processes never load torch.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotation.models import Annotation
from inspection.errors import Conflict, InvalidInput
from inspection.models import Inspection, ModelVersion, Precision, Project
from inspection.notifications import notify_training_progress
from inspection.services.audit import audit_record
from inspection.storage import local_files
from workers.ml.hyperparameters import resolve_hyperparameters

logger = logging.getLogger(__name__)

# Fewest labelled images a kind can learn from; below this a start is refused with a reason.
MIN_IMAGES = {"classifier": 8, "anomaly": 8, "segmenter": 4}


@dataclass(frozen=True)
class LabelledImage:
    annotation_id: int
    image_id: int
    image_key: str
    label: str | None  # None: good
    mask_key: str | None
    polygons: list[list[tuple[float, float]]] | None


def labelled_images(*, project: Project, annotation_ids: list[int] | None = None) -> list[LabelledImage]:
    """The newest label of each image of the project (or exactly ``annotation_ids``)."""
    rows = (
        Annotation.objects.filter(project=project).select_related("image", "defect_class").order_by("image_id", "-id")
    )
    if annotation_ids is not None:
        rows = rows.filter(pk__in=annotation_ids)
    seen: set[int] = set()
    found = []
    for row in rows:
        if row.image_id in seen:
            continue
        seen.add(row.image_id)
        mask_key = None
        polygons: list[list[tuple[float, float]]] = []
        for shape in row.shapes or []:
            if shape.get("type") == "mask" and isinstance(shape.get("file"), str):
                mask_key = shape["file"]
            elif shape.get("type") == "polygon":
                polygons.append([(float(x), float(y)) for x, y in shape.get("points", [])])
        label = row.defect_class.name if row.outcome == "fail" and row.defect_class else None
        found.append(LabelledImage(row.pk, row.image_id, row.image.file, label, mask_key, polygons or None))
    return found


def _for_kind(kind: str, images: list[LabelledImage]) -> list[LabelledImage]:
    if kind == ModelVersion.Kind.ANOMALY:
        # Goods, plus the defects whose region is marked (they fill the defect bank).
        return [image for image in images if image.label is None or image.mask_key or image.polygons]
    if kind == ModelVersion.Kind.SEGMENTER:
        defects = [image for image in images if image.label is not None and (image.mask_key or image.polygons)]
        return defects + [image for image in images if image.label is None] if defects else []
    return images


def image_views(*, project: Project, image_ids: list[int]) -> dict[str, dict[str, Any]]:
    """``{image id: {"region": [x, y, width, height] or None, "ignore_zones": [[...], ...]}}``
    for images taken at a station with an inspection region or ignore zones (the newest
    inspection of an image decides); images seen whole and untouched are absent."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(image_ids), 500):  # SQLite caps the parameters of one query
        rows = (
            Inspection.objects.filter(project=project, image_id__in=image_ids[start : start + 500])
            .order_by("image_id", "-id")
            .values_list("image_id", "station__inspection_region", "station__ignore_zones")
        )
        seen: set[int] = set()
        for image_id, region, zones in rows:
            if image_id in seen:  # an older inspection of the same image
                continue
            seen.add(image_id)
            if region is None and not zones:
                continue
            found[str(image_id)] = {
                "region": [float(region[key]) for key in ("x", "y", "width", "height")] if region else None,
                "ignore_zones": [[float(zone[key]) for key in ("x", "y", "width", "height")] for zone in zones or []],
            }
    return found


def training_start(
    *,
    project: Project,
    kind: str,
    author: Any = None,
    hyperparameters: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> ModelVersion:
    """Snapshot the training data and queue a training job on the ``training`` queue."""
    if kind not in ModelVersion.Kind.values:
        raise InvalidInput(f"Unknown model kind {kind!r}: use classifier, anomaly or segmenter.")
    try:
        resolve_hyperparameters(kind, hyperparameters)
    except ValueError as exc:
        raise InvalidInput(f"Bad hyperparameters: {exc}.", code="bad_hyperparameters") from None
    chosen = _for_kind(kind, labelled_images(project=project))
    if len(chosen) < MIN_IMAGES[kind]:
        raise InvalidInput(
            f"A {kind} needs at least {MIN_IMAGES[kind]} suitable labelled images; this project has {len(chosen)}.",
            code="not_enough_labels",
        )
    if kind == ModelVersion.Kind.CLASSIFIER and len({image.label for image in chosen}) < 2:
        raise InvalidInput("A classifier needs good and defective examples.", code="not_enough_labels")
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project,
            kind=kind,
            author=author if getattr(author, "pk", None) else None,
            hyperparameters=hyperparameters or {},
            # Exactly what it learns from: each label (annotation) and its image. The split into
            # train and validation is drawn by the ML package from ``seed``, stratified by class.
            training_data={
                "annotations": [image.annotation_id for image in chosen],
                "images": [image.image_id for image in chosen],
                "seed": 0,
                # How each image is cut and blanked, as its station's view was now.
                "views": image_views(project=project, image_ids=[image.image_id for image in chosen]),
            },
            station_regions={str(station.pk): station.view() for station in project.stations.all()},
        )
        if enqueue:
            version_id = version.pk
            transaction.on_commit(lambda: _enqueue_training(version_id), robust=True)
    return version


def _enqueue_training(version_id: int) -> None:
    from inspection.tasks import training_run_task

    training_run_task.delay(version_id)


# A running job asks whether it was cancelled at most this often, and writes its heartbeat
# at most this often from those checks (alive even inside a long epoch: trainings_fail_stalled).
STOP_CHECK_EVERY_S = 2.0
HEARTBEAT_EVERY_S = 60.0


def training_stop_check(version_id: int, *, clock: Callable[[], float] = time.monotonic) -> Callable[[], bool]:
    """The ``should_stop`` a training run polls between steps: True once a cancel was asked
    for. One cheap query at most every ``STOP_CHECK_EVERY_S``; a heartbeat write at most every
    ``HEARTBEAT_EVERY_S``."""
    last_check = [-math.inf]
    last_beat = [clock()]

    def should_stop() -> bool:
        now = clock()
        if now - last_check[0] < STOP_CHECK_EVERY_S:
            return False
        last_check[0] = now
        if now - last_beat[0] >= HEARTBEAT_EVERY_S:
            last_beat[0] = now
            ModelVersion.objects.filter(pk=version_id).update(heartbeat_at=timezone.now())
        return ModelVersion.objects.filter(pk=version_id, cancel_requested=True).exists()

    return should_stop


def training_run(
    *, model_version_id: int, on_progress: Callable[[dict[str, Any]], None] | None = None
) -> ModelVersion | None:
    """Train one queued version. Idempotent: only a version still ``training`` and never
    started runs. A redelivered job (its worker died mid-run) is marked failed instead of
    silently restarting; the deployed model is never touched by any outcome here."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=model_version_id).first()
        if version is None or version.status != ModelVersion.Status.TRAINING:
            return version
        if version.attempts >= 1:
            version.status = ModelVersion.Status.FAILED
            version.error = "The worker running this job stopped before it finished (killed or out of memory)."
            version.finished_at = timezone.now()
            version.save(update_fields=["status", "error", "finished_at"])
            return version
        if version.cancel_requested:
            version.status = ModelVersion.Status.CANCELLED
            version.finished_at = timezone.now()
            version.save(update_fields=["status", "finished_at"])
            return version
        version.attempts += 1
        version.started_at = version.heartbeat_at = timezone.now()
        version.save(update_fields=["attempts", "started_at", "heartbeat_at"])

    from workers.ml.errors import TrainingCancelled
    from workers.ml.training import train
    from workers.ml.types import Sample

    project = version.project
    chosen = labelled_images(project=project, annotation_ids=version.training_data["annotations"])
    views = version.training_data.get("views") or {}
    keys = [image.image_key for image in chosen] + [image.mask_key for image in chosen if image.mask_key]
    history: list[dict[str, Any]] = []

    def report(progress: Any) -> None:
        point = {"epoch": progress.epoch, "epochs": progress.epochs, "loss": progress.loss, "metric": progress.metric}
        history.append(point)
        state = {**point, "metric_name": progress.metric_name, "history": history[-200:]}
        ModelVersion.objects.filter(pk=version.pk).update(progress=state, heartbeat_at=timezone.now())
        payload = {"version": version.pk, "kind": version.kind, "status": "training", **state}
        transaction.on_commit(lambda: notify_training_progress(project_id=project.pk, payload=payload), robust=True)
        if on_progress is not None:
            on_progress(state)

    should_stop = training_stop_check(version.pk)

    # A folder left by an earlier life of this id (a rolled-back row on SQLite) is not ours.
    shutil.rmtree(version.artifact_dir, ignore_errors=True)
    try:
        with local_files(keys) as paths:
            samples = [
                Sample(
                    image_path=paths[image.image_key],
                    label=image.label,
                    mask_path=paths[image.mask_key] if image.mask_key else None,
                    polygons=image.polygons,
                    region=_region((views.get(str(image.image_id)) or {}).get("region")),
                    ignore_zones=tuple(
                        zone
                        for stored in (views.get(str(image.image_id)) or {}).get("ignore_zones", [])
                        if (zone := _region(stored)) is not None
                    ),
                )
                for image in chosen
            ]
            result = train(
                kind=version.kind,  # type: ignore[arg-type]  # checked against Kind on start
                samples=samples,
                good_class=project.good_class_name,
                out_dir=version.artifact_dir,
                hyperparameters=version.hyperparameters,
                progress=report,
                should_stop=should_stop,
                seed=int(version.training_data.get("seed", 0)),
            )
    except TrainingCancelled:
        return _finish(version, status=ModelVersion.Status.CANCELLED)
    except Exception as exc:
        logger.exception("training of %s failed", version.label)
        return _finish(version, status=ModelVersion.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
    from workers.ml.artifacts import VerifiedArtifact

    manifest = VerifiedArtifact(version.artifact_dir, result.artifacts).manifest
    metrics: dict[str, Any] = dict(result.metrics)
    errors = metrics.get("example_errors")
    if isinstance(errors, list):
        # Training sample indices become the labels (annotations) they came from: their image
        # is served at /api/v1/annotations/{id}/image.
        metrics["example_errors"] = [_error_with_label(error, chosen) for error in errors if _sample_of(error, chosen)]
    finished = _finish(
        version,
        status=ModelVersion.Status.READY,
        metrics=metrics,
        hyperparameters=dict(result.hyperparameters),
        artifacts=dict(result.artifacts),
        thresholds=dict(manifest.get("thresholds", {})),
    )
    from inspection.services.model_compare import ROUTING_KINDS, model_compare_queue

    if finished.kind in ROUTING_KINDS:
        # Before anyone deploys it: what it would send to people against what serves now.
        with transaction.atomic():
            model_compare_queue(version=finished)
    return finished


def _region(stored: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(stored, list) or len(stored) != 4:
        return None
    x, y, width, height = (float(value) for value in stored)
    return (x, y, width, height)


def _sample_of(error: Any, chosen: list[LabelledImage]) -> bool:
    return isinstance(error, dict) and isinstance(error.get("sample"), int) and 0 <= error["sample"] < len(chosen)


def _error_with_label(error: dict[str, Any], chosen: list[LabelledImage]) -> dict[str, Any]:
    labelled = chosen[error["sample"]]
    return {**{k: v for k, v in error.items() if k != "sample"}, "annotation": labelled.annotation_id}


def _finish(version: ModelVersion, *, status: str, error: str = "", **fields: Any) -> ModelVersion:
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(
            status=status, error=error, finished_at=timezone.now(), **fields
        )
        version.refresh_from_db()
        payload = {"version": version.pk, "kind": version.kind, "status": status, **(version.progress or {})}
        project_id = version.project_id
        transaction.on_commit(lambda: notify_training_progress(project_id=project_id, payload=payload), robust=True)
    return version


# A started job that has not checked in for this long has died with its worker (killed, out
# of memory, its container stopped): the broker would only redeliver it hours later.
TRAINING_STALLED_AFTER = timedelta(minutes=15)


def trainings_fail_stalled(*, stalled_for: timedelta = TRAINING_STALLED_AFTER) -> list[int]:
    """Mark failed the started training jobs whose heartbeat stopped; returns their ids.
    Idempotent. A job still waiting in the queue (never started) is left alone."""
    cutoff = timezone.now() - stalled_for
    stalled = list(
        ModelVersion.objects.filter(
            status=ModelVersion.Status.TRAINING, attempts__gte=1, heartbeat_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    failed = []
    for version_id in stalled:
        changed = ModelVersion.objects.filter(
            pk=version_id, status=ModelVersion.Status.TRAINING, heartbeat_at__lt=cutoff
        ).update(
            status=ModelVersion.Status.FAILED,
            error=f"No sign of life for {int(stalled_for.total_seconds() // 60)} minutes: the worker running "
            "this job stopped (killed, out of memory or its container stopped).",
            finished_at=timezone.now(),
        )
        if changed:
            version = ModelVersion.objects.get(pk=version_id)
            payload = {
                "version": version.pk,
                "kind": version.kind,
                "status": version.status,
                **(version.progress or {}),
            }
            notify_training_progress(project_id=version.project_id, payload=payload)
            failed.append(version_id)
    return failed


def training_cancel(*, version: ModelVersion, actor: Any = None) -> ModelVersion:
    """Ask a running job to stop at its next check; a job not yet started never starts."""
    if version.status != ModelVersion.Status.TRAINING:
        raise Conflict(f"Version {version.label} is {version.status}, not training.", code="not_training")
    ModelVersion.objects.filter(pk=version.pk).update(cancel_requested=True)
    version.refresh_from_db()
    return version


def model_version_compare_request(*, version: ModelVersion, actor: Any = None) -> ModelVersion:
    """Queue a comparison of ``version`` with the set serving now (``model_compare``)."""
    from inspection.services.model_compare import ROUTING_KINDS, model_compare_queue

    if version.status not in {ModelVersion.Status.READY, ModelVersion.Status.RETIRED}:
        raise Conflict(f"Only a ready or retired version is compared; {version.label} is {version.status}.")
    if version.kind not in ROUTING_KINDS:
        raise InvalidInput(
            f"A {version.kind} does not decide parts: there is nothing to compare.", code="not_a_routing_model"
        )
    with transaction.atomic():
        model_compare_queue(version=version)
    return version


def _worse_than_serving(version: ModelVersion) -> str | None:
    """Why ``version`` should not replace what serves: its comparison, made against the set
    serving now, found it sending more parts to people at the project's targets."""
    from inspection.services.routing import deployed_label

    comparison = version.comparison or {}
    if comparison.get("verdict") != "worse" or comparison.get("serving") != deployed_label(project=version.project):
        return None
    mine, theirs = comparison["candidate_figures"], comparison["serving_figures"]
    return (
        f"{version.label} would send {mine['review_rate']:.1%} of parts to people against {theirs['review_rate']:.1%} "
        f"for the models serving now, on the same {comparison['parts']} audited parts at the project's targets. "
        "Deploy with force to replace them anyway."
    )


def model_version_deploy(
    *, version: ModelVersion, actor: Any = None, precision: str = Precision.FP32, force: bool = False
) -> ModelVersion:
    """Make ``version`` the one its project serves for its kind; the previous one retires.

    The artifact files are checked against the registry's hashes first: a version whose
    files changed on disk is never activated. Inference workers pick it up on their next part.
    ``precision="int8"`` serves the version's INT8 model (about half the CPU per part; its
    accuracy cost on the validation split is in the version's metrics); routing recalibrates
    for it like for any deployment. A version whose comparison found it worse than the set
    serving now is refused unless ``force`` (audited).
    """
    if precision not in Precision.values:
        raise InvalidInput(f"precision must be one of {', '.join(Precision.values)}.", code="invalid_precision")
    if precision == Precision.INT8 and not version.has_int8:
        raise InvalidInput(f"{version.label} has no INT8 model to serve.", code="int8_unavailable")
    if version.status not in {ModelVersion.Status.READY, ModelVersion.Status.RETIRED}:
        raise Conflict(f"Only a ready or retired version can be deployed; {version.label} is {version.status}.")
    worse = _worse_than_serving(version)
    if worse and not force:
        raise Conflict(worse, code="worse_than_serving")
    from workers.ml.artifacts import VerifiedArtifact
    from workers.ml.errors import MLError

    try:
        VerifiedArtifact(version.artifact_dir, version.artifacts)
    except (MLError, OSError) as exc:
        raise Conflict(f"Artifact of {version.label} failed verification: {exc}", code="artifact_integrity") from None
    with transaction.atomic():
        # One deployment per project at a time: two concurrent deploys of the kind would each
        # retire what was deployed before and both activate theirs (the second then broke the
        # one-deployed-per-kind constraint, a 500). NO KEY: inserts referencing the project go on.
        Project.objects.select_for_update(no_key=True).filter(pk=version.project_id).first()
        status_now = ModelVersion.objects.values_list("status", flat=True).get(pk=version.pk)
        if status_now not in {ModelVersion.Status.READY, ModelVersion.Status.RETIRED}:
            raise Conflict(f"Only a ready or retired version can be deployed; {version.label} is {status_now}.")
        previous = list(
            ModelVersion.objects.select_for_update()
            .filter(project=version.project, kind=version.kind, status=ModelVersion.Status.DEPLOYED)
            .values_list("pk", flat=True)
        )
        ModelVersion.objects.filter(pk__in=previous).update(status=ModelVersion.Status.RETIRED)
        from inspection.services.routing import routing_recalibrate

        transaction.on_commit(lambda: routing_recalibrate(project_id=version.project_id, actor=actor), robust=True)
        transaction.on_commit(lambda: _enqueue_rescore(version.project_id), robust=True)
        audit_record(
            project_id=version.project_id,
            actor=actor,
            action="model.deployed",
            subject=version,
            before={"deployed": [f"{version.kind}:{pk}" for pk in previous], "status": version.status},
            after={
                "deployed": [version.label],
                "status": ModelVersion.Status.DEPLOYED,
                "precision": precision,
                **({"comparison": version.comparison.get("verdict")} if version.comparison.get("verdict") else {}),
                **({"forced": True, "over": worse} if worse else {}),
            },
        )
        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelVersion.Status.DEPLOYED, deployed_at=timezone.now(), precision=precision
        )
    version.refresh_from_db()
    return version


def model_version_retire(*, version: ModelVersion, actor: Any = None) -> ModelVersion:
    if version.status != ModelVersion.Status.DEPLOYED:
        raise Conflict(f"{version.label} is not deployed.")
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.RETIRED)
        audit_record(
            project_id=version.project_id,
            actor=actor,
            action="model.retired",
            subject=version,
            before={"status": ModelVersion.Status.DEPLOYED},
            after={"status": ModelVersion.Status.RETIRED},
        )
    version.refresh_from_db()
    return version


def _enqueue_rescore(project_id: int) -> None:
    from inspection.tasks import calibration_rescore_task

    calibration_rescore_task.delay(project_id)
