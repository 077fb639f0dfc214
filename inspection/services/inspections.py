"""Writes for inspections: submitting part images, running models on them, final verdicts."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from inspection.errors import Conflict, InvalidInput
from inspection.imaging import NormalisedImage, normalise_image
from inspection.models import (
    AuditEvent,
    DefectClass,
    Image,
    Inspection,
    ModelVersion,
    Part,
    Station,
    Verdict,
)
from inspection.services import routing
from inspection.services.audit import audit_event, audit_record
from inspection.services.rollups import rollup_record_verdict, rollup_record_verdicts
from inspection.sql import insert_many_unless_exists, insert_unless_exists

logger = logging.getLogger(__name__)


# --- inspections -----------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    inspection: Inspection
    created: bool
    # The inspection, its part, station and image are loaded, and the part is new (so it has
    # no verdict): the answer can be written without reading anything back.
    complete: bool = False


def inspection_submit(
    *,
    station: Station,
    image_file: IO[bytes],
    part_serial: str,
    sku: str = "",
    lot: str = "",
    captured_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> SubmitResult:
    """Store a part image posted by ``station`` and queue its inference.

    Idempotent: the same ``idempotency_key`` from the same station, or the same image of the
    same part from the same station, returns the first inspection (``created=False``) and
    queues nothing. Nothing is stored unless the image passes every check; a failure after
    the file was written removes the file again.

    Cost on the line's hot path: one transaction of three single-statement inserts (image,
    part, inspection); a race with a concurrent or repeated post rolls it back whole and
    answers with the post that won.
    """
    normalised = normalise_image(
        image_file, max_bytes=settings.LOUPE_MAX_UPLOAD_BYTES, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS
    )
    if idempotency_key:
        existing = (
            Inspection.objects.filter(station=station, idempotency_key=idempotency_key).select_related("image").first()
        )
        if existing is not None:
            return _same_or_conflict(existing, normalised)

    key, wrote_file = store_image_bytes(normalised)
    try:
        with transaction.atomic():
            image = image_record(normalised, key)
            part, part_created = part_record(project_id=station.project_id, serial=part_serial, sku=sku, lot=lot)
            inspection = Inspection.objects.create(
                project_id=station.project_id,
                part=part,
                station=station,
                image=image,
                captured_at=captured_at or timezone.now(),
                idempotency_key=idempotency_key or None,
            )
            if part_created:
                part.final_verdicts = []  # type: ignore[attr-defined]  # the selectors' prefetch: a new part has none
            inspection_id = inspection.pk
            # robust: if the broker is down the row stays pending and the reconciler queues it.
            transaction.on_commit(lambda: _enqueue_inference(inspection_id), robust=True)
    except IntegrityError:
        # A concurrent or repeated post won the race (same key, or same image of the same part):
        # this transaction rolled back whole; answer with the inspection that won.
        _remove_unreferenced(key, wrote_file)
        existing = _find_duplicate(
            station=station, part_serial=part_serial, sha256=normalised.sha256, idempotency_key=idempotency_key
        )
        if existing is None:
            raise
        return _same_or_conflict(existing, normalised)
    except BaseException:
        _remove_unreferenced(key, wrote_file)
        raise
    return SubmitResult(inspection=inspection, created=True, complete=part_created)


def _remove_unreferenced(key: str, wrote_file: bool) -> None:
    # A purged row does not count: its bytes were written again for a post that rolled back,
    # and retention never looks at a purged image again, so the file would stay for ever.
    if wrote_file and not Image.objects.filter(file=key, purged_at__isnull=True).exists():
        default_storage.delete(key)


def _find_duplicate(
    *, station: Station, part_serial: str, sha256: str, idempotency_key: str | None
) -> Inspection | None:
    found = Inspection.objects.select_related("image")
    if idempotency_key:
        by_key = found.filter(station=station, idempotency_key=idempotency_key).first()
        if by_key is not None:
            return by_key
    return found.filter(station=station, part__serial=part_serial, image__sha256=sha256).first()


def _same_or_conflict(existing: Inspection, normalised: NormalisedImage) -> SubmitResult:
    if existing.image.sha256 != normalised.sha256:
        raise Conflict("This Idempotency-Key was already used for a different image.", code="idempotency_key_reused")
    return SubmitResult(inspection=existing, created=False)


def image_record(normalised: NormalisedImage, key: str) -> Image:
    """The Image row of stored content (one per SHA-256), created on first sight.

    The caller has stored the bytes under ``key`` (``store_image_bytes``) and calls this inside
    the transaction that references the image. A row whose bytes the retention policy purged
    is restored in that transaction: it serves again, and retention may purge it again.
    """
    values = {
        "sha256": normalised.sha256,
        "file": key,
        "format": normalised.format,
        "width": normalised.width,
        "height": normalised.height,
        "bytes": len(normalised.content),
        "created_at": timezone.now(),
    }
    image_id = insert_unless_exists(Image, values=values, unique=["sha256"])
    if image_id is not None:
        return Image(pk=image_id, **values)
    image = Image.objects.get(sha256=normalised.sha256)
    if image.purged_at is not None:
        # Retention removed the bytes and store_image_bytes has just written them again.
        # Conditional: a concurrent post of the same content restores the row once. The
        # inspections that lost their overlays to the purge keep none; tiles are made again
        # on demand.
        Image.objects.filter(pk=image.pk, purged_at__isnull=False).update(purged_at=None, file=key)
        image.purged_at, image.file = None, key
    return image


def part_record(*, project_id: int, serial: str, sku: str = "", lot: str = "") -> tuple[Part, bool]:
    """``(part, created)``: the project's part with this serial, created on first sight with
    ``sku`` and ``lot`` (a later post does not change them)."""
    values = {"project_id": project_id, "serial": serial, "sku": sku, "lot": lot, "created_at": timezone.now()}
    part_id = insert_unless_exists(Part, values=values, unique=["project", "serial"])
    if part_id is None:
        return Part.objects.get(project_id=project_id, serial=serial), False
    return Part(pk=part_id, **values), True


def store_image_bytes(normalised: NormalisedImage) -> tuple[str, bool]:
    """Write under a key derived from the content hash only (never from a client file name)."""
    key = f"images/{normalised.sha256[:2]}/{normalised.sha256}.{normalised.extension}"
    if default_storage.exists(key):
        return key, False
    saved = default_storage.save(key, ContentFile(normalised.content))
    if saved != key:
        # Another request stored the same content between exists() and save().
        default_storage.delete(saved)
        return key, False
    return key, True


def _enqueue_publish(verdict_id: int) -> None:
    from inspection.tasks import verdict_publish_task

    if settings.MQTT_URL:
        verdict_publish_task.delay(verdict_id)


def _publish_now(verdicts: Sequence[Verdict]) -> None:
    """Publish from this process right after the commit (an inference worker: its MQTT
    connection is open and everything the messages need is loaded), a batch's verdicts in one
    go. Those the broker does not acknowledge in time go to the publish task, which retries
    with backoff."""
    from inspection.services.line_integration import verdicts_publish_loaded

    if not settings.MQTT_URL:
        return
    for verdict in verdicts_publish_loaded(verdicts):
        logger.warning("verdict %s: MQTT publish not acknowledged; queued for retry", verdict.pk)
        _enqueue_publish(verdict.pk)


def _enqueue_inference(inspection_id: int) -> None:
    from inspection.tasks import inspection_run_task

    inspection_run_task.delay(inspection_id)


@dataclass
class ModelRun:
    """What the deployed models said about one image (plain data, no ORM)."""

    model_version: str = ""
    scores: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    heatmap_file: str = ""
    mask_file: str = ""
    defect_score: float | None = None  # 0 = surely good, 1 = surely defective
    defect_class: str | None = None
    error: str = ""


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def run_models(*, inspection: Inspection, deployed: dict[str, ModelVersion], save_overlays: bool = True) -> ModelRun:
    """``run_models_many`` for one inspection."""
    return run_models_many(inspections=[inspection], deployed=deployed, save_overlays=save_overlays)[0]


def run_models_many(
    *, inspections: Sequence[Inspection], deployed: dict[str, ModelVersion], save_overlays: bool = True
) -> list[ModelRun]:
    """The article's cascade for a batch of images: classifier and anomaly detector screen
    every one; the segmenter draws pixel detail only for those the screen flagged. On a GPU
    each model runs once over the batch (the segmenter once over the flagged images), on the
    CPU image by image. An image that cannot be decoded, or a batch a model fails on, is run
    again alone, so one bad image sends only its own part to a person. Latency per stage is the
    batch's time divided among its images. ``save_overlays`` off: scores only, the stored
    heatmap and mask are left as they are."""
    from inspection.storage import read_pixels

    label = ",".join(sorted(version.serving_label for version in deployed.values()))
    runs = [ModelRun(model_version=label) for _ in inspections]
    pixels: list[np.ndarray | None] = []
    for inspection, run in zip(inspections, runs, strict=True):
        started = time.perf_counter()
        try:
            pixels.append(read_pixels(inspection.image.file))
        except Exception as exc:  # noqa: BLE001 - an unreadable image goes to a person, the batch goes on
            _model_error(run, inspection, exc)
            pixels.append(None)
            continue
        run.latency_ms["decode"] = _elapsed_ms(started)
    ready = [index for index, image in enumerate(pixels) if image is not None]
    if not ready:
        return runs
    # One forward pass per model for the batch where that is cheaper (a GPU: 1.6 ms per image
    # alone, 0.35 in sixteens, measured on an H200); on the CPU one image at a time, which
    # measured faster here in back-to-back loop runs (README).
    groups = [ready] if len(ready) > 1 and _forward_together(deployed) else [[index] for index in ready]
    for group in groups:
        try:
            _screen_and_detail(
                [inspections[i] for i in group],
                [runs[i] for i in group],
                [pixels[i] for i in group],
                deployed,
                save_overlays,
            )
        except Exception as exc:  # noqa: BLE001 - a model that cannot run sends the part to a person
            if len(group) == 1:
                _model_error(runs[group[0]], inspections[group[0]], exc)
            else:  # find the image it failed on: each alone
                for index in group:
                    runs[index] = run_models(
                        inspection=inspections[index], deployed=deployed, save_overlays=save_overlays
                    )
    return runs


def _forward_together(deployed: dict[str, ModelVersion]) -> bool:
    """Whether the deployed models serve on a GPU (ONNX Runtime's CUDA provider)."""
    from inspection import serving

    return any(
        (getattr(serving.inferencer_for(version), "providers", None) or [""])[0] == "CUDAExecutionProvider"
        for version in deployed.values()
    )


def _model_error(run: ModelRun, inspection: Inspection, exc: Exception) -> None:
    """A model that cannot run sends the part to a person."""
    logger.error("models failed on inspection %s", inspection.pk, exc_info=exc)
    run.error = f"{type(exc).__name__}: {exc}"[:500]
    run.defect_score = None
    run.scores.pop("defect_score", None)


def _screen_and_detail(
    inspections: list[Inspection],
    runs: list[ModelRun],
    pixels: list[Any],
    deployed: dict[str, ModelVersion],
    save_overlays: bool,
) -> None:
    from inspection import serving
    from inspection.storage import save_png
    from workers.routing.scores import defect_score

    count = len(inspections)
    flagged = [False] * count
    classifier = deployed.get(ModelVersion.Kind.CLASSIFIER)
    if classifier is not None:
        started = time.perf_counter()
        predictions = serving.inferencer_for(classifier).predict(pixels)
        share = _elapsed_ms(started) / count
        threshold = float(classifier.thresholds.get("defect_probability", 0.5))
        for index, (inspection, run, prediction) in enumerate(zip(inspections, runs, predictions, strict=True)):
            run.latency_ms["classifier"] = round(share, 3)
            probabilities = prediction.probabilities or {}
            good = inspection.project.good_class_name
            defect_probability = 1.0 - float(probabilities.get(good, 0.0))
            run.scores["probabilities"] = {name: round(float(p), 6) for name, p in probabilities.items()}
            run.scores["defect_probability"] = round(defect_probability, 6)
            run.defect_score = defect_probability
            if prediction.label and prediction.label != good:
                run.defect_class = prediction.label
            classifier_flag = defect_probability >= threshold
            run.scores["classifier_flag"] = bool(classifier_flag)
            if run.defect_class is None and probabilities:
                candidates = [name for name in probabilities if name != good]
                run.defect_class = max(candidates, key=lambda name: probabilities[name]) if candidates else None
            flagged[index] |= classifier_flag
            # A patch-head classifier says where it saw the defect; the anomaly detector's
            # heatmap, where one is deployed, is the one kept.
            anomaly_deployed = ModelVersion.Kind.ANOMALY in deployed
            if prediction.heatmap is not None and save_overlays and not anomaly_deployed:
                heat = (np.clip(prediction.heatmap, 0.0, 1.0) * 255).astype(np.uint8)
                run.heatmap_file = save_png(f"heatmaps/{inspection.pk}.png", heat)
    anomaly = deployed.get(ModelVersion.Kind.ANOMALY)
    if anomaly is not None:
        started = time.perf_counter()
        predictions = serving.inferencer_for(anomaly).predict(pixels)
        share = _elapsed_ms(started) / count
        threshold = float(anomaly.thresholds.get("image_score", 1.0)) or 1.0
        for index, (inspection, run, prediction) in enumerate(zip(inspections, runs, predictions, strict=True)):
            run.latency_ms["anomaly"] = round(share, 3)
            ratio = float(prediction.anomaly_score or 0.0) / threshold
            run.scores["anomaly_score"] = round(float(prediction.anomaly_score or 0.0), 6)
            run.scores["anomaly_ratio"] = round(ratio, 6)  # >= 1: beyond the good parts' threshold
            run.scores["anomaly_flag"] = bool(ratio >= 1.0)
            flagged[index] |= ratio >= 1.0
            # Both models deployed: their mean (workers/routing/scores.py says why).
            run.defect_score = defect_score(run.defect_score, ratio)
            if prediction.heatmap is not None and save_overlays:
                heat = (np.clip(prediction.heatmap, 0.0, 1.0) * 255).astype(np.uint8)
                run.heatmap_file = save_png(f"heatmaps/{inspection.pk}.png", heat)
    segmenter = deployed.get(ModelVersion.Kind.SEGMENTER)
    detail = [index for index in range(count) if flagged[index] or len(deployed) == 1]
    if segmenter is not None and detail:
        started = time.perf_counter()
        predictions = serving.inferencer_for(segmenter).predict([pixels[index] for index in detail])
        share = _elapsed_ms(started) / len(detail)
        for index, prediction in zip(detail, predictions, strict=True):
            run = runs[index]
            run.latency_ms["segmenter"] = round(share, 3)
            if prediction.mask is not None:
                run.scores["defect_pixels"] = int((prediction.mask > 0).sum())
                if save_overlays:
                    run.mask_file = save_png(f"masks/{inspections[index].pk}.png", prediction.mask)
                if run.defect_score is None:
                    run.defect_score = 1.0 if run.scores["defect_pixels"] > 0 else 0.0
    for run in runs:
        if run.defect_score is not None:
            run.scores["defect_score"] = round(float(run.defect_score), 6)
            run.scores["predicted_class"] = run.defect_class


def inspection_run(*, inspection_id: int, companions: int = 0, answer: bool = True) -> Inspection | None:
    """Run the deployed models on an inspection and route its part (``routing``); with
    ``companions``, also on up to that many other inspections of its project that are waiting
    (``run_claims``), routed together in one transaction. Returns the inspection, or None
    if the row is gone.

    Idempotent and safe to redeliver: the claim is committed before any model runs, the models
    run outside any transaction, then one short transaction writes the outcomes under a status
    guard; the review item and the final verdict are unique per part. An inspection done,
    failed or claimed by another run is returned as it is (``answer`` False: None, unread).
    """
    from inspection.services.run_claims import run_claim

    claim = run_claim(inspection_id=inspection_id, companions=companions)
    if claim is None:
        return Inspection.objects.filter(pk=inspection_id).first() if answer else None
    claimed = list(
        Inspection.objects.select_related("part", "project", "image", "station")
        .filter(pk__in=claim.inspection_ids)
        .order_by("id")
    )
    by_id = {inspection.pk: inspection for inspection in claimed}
    runnable = []
    for inspection in claimed:
        if inspection.deliveries > MAX_DELIVERIES:
            by_id[inspection.pk] = _dead_letter(inspection)
        else:
            runnable.append(inspection)
    if runnable:
        _run_and_route(runnable)
    return by_id.get(inspection_id)


def inspection_run_queued(*, inspection_id: int) -> None:
    """The inference task's entry: ``inspection_run`` with the configured batch, answering
    nothing (a part another run claimed costs one statement)."""
    inspection_run(inspection_id=inspection_id, companions=settings.LOUPE_INFERENCE_BATCH - 1, answer=False)


def _run_and_route(inspections: list[Inspection]) -> None:
    """Models on each claimed inspection (all of one project), then one transaction: each
    outcome under its status guard, the parts routed, their label tasks. Single-camera parts
    the models decide get their verdicts in bulk (``verdicts_record_final_from_models``)."""
    from annotation.services import label_tasks_ensure
    from inspection import serving

    project = inspections[0].project
    deployed = serving.deployed_versions(project_id=project.pk)
    thresholds: dict[str, tuple[float, float, Any]] = {}
    outcomes = []
    runs = (
        run_models_many(inspections=inspections, deployed=deployed) if deployed else [ModelRun() for _ in inspections]
    )
    for inspection, run in zip(inspections, runs, strict=True):
        started = time.perf_counter()
        if deployed:
            if run.model_version not in thresholds:
                thresholds[run.model_version] = routing.thresholds_for(project=project, model_version=run.model_version)
            t_pass, t_fail, calibration = thresholds[run.model_version]
            view = routing.decide_view(
                project=project, scores=run.scores, t_pass=t_pass, t_fail=t_fail, error=run.error
            )
            run.scores["decision"] = view.as_dict()
            run.scores["thresholds"] = {
                "t_pass": t_pass,
                "t_fail": t_fail,
                "calibration": getattr(calibration, "pk", None),
            }
        # Per stage, in ms; "route" is the routing decision (the writes below are not in it).
        latency_ms = {**run.latency_ms, "route": _elapsed_ms(started)}
        if len(inspections) > 1:
            latency_ms["batch"] = len(inspections)
        outcomes.append((inspection, run, latency_ms))
    with transaction.atomic():
        written = []
        for inspection, run, latency_ms in outcomes:
            # The status guard and the write in one statement: a redelivery that ran the models
            # too waits here for this row's lock and then finds it done (rowcount 0).
            finished_at = timezone.now()
            if not Inspection.objects.filter(
                pk=inspection.pk, status__in=[Inspection.Status.PENDING, Inspection.Status.RUNNING]
            ).update(
                attempts=F("attempts") + 1,
                model_version=run.model_version,
                heatmap_file=run.heatmap_file,
                mask_file=run.mask_file,
                error=run.error,
                scores=run.scores,
                latency_ms=latency_ms,
                status=Inspection.Status.DONE,
                finished_at=finished_at,
                lease_expires_at=None,
            ):
                continue
            inspection.attempts += 1
            inspection.model_version = run.model_version
            inspection.heatmap_file, inspection.mask_file, inspection.error = run.heatmap_file, run.mask_file, run.error
            inspection.scores, inspection.status, inspection.finished_at = (
                run.scores,
                Inspection.Status.DONE,
                finished_at,
            )
            inspection.latency_ms, inspection.lease_expires_at = latency_ms, None
            inspection.part.project = project  # loaded already: the verdict's rollups read its shifts
            written.append(inspection)
        model_verdicts: list[ModelVerdict] = []
        for inspection in written:
            _route_part(
                inspection,
                deployed=bool(deployed),
                model_version=inspection.model_version,
                model_verdicts=model_verdicts if project.views_per_part <= 1 else None,
            )
        verdicts_record_final_from_models(model_verdicts)
        # Every done image becomes a label task in the annotation studio, in this transaction.
        label_tasks_ensure(inspections=written)


@dataclass(frozen=True)
class ModelVerdict:
    """A final verdict the models reached for a single-camera part, to be recorded in bulk."""

    inspection: Inspection
    outcome: str
    defect_class: DefectClass | None


def verdicts_record_final_from_models(model_verdicts: list[ModelVerdict]) -> list[Verdict]:
    """``verdict_record_final_unless_decided`` for a batch of model verdicts (one project, one
    per part), inside the caller's transaction: one multi-row ``INSERT ... ON CONFLICT DO
    NOTHING``, one audit ``bulk_create``, one rollup upsert per table and one webhook statement
    for the whole batch. Parts decided already keep their verdict. Each verdict is published
    to MQTT from this process after the commit."""
    if not model_verdicts:
        return []
    now = timezone.now()
    rows = [
        {
            "project_id": item.inspection.project_id,
            "part_id": item.inspection.part_id,
            "outcome": item.outcome,
            "defect_class_id": item.defect_class.pk if item.defect_class else None,
            "source": Verdict.Source.MODEL.value,
            "decided_by_id": None,
            "inspection_id": item.inspection.pk,
            "model_version": item.inspection.model_version,
            "is_final": True,
            "created_at": now,
        }
        for item in model_verdicts
    ]
    created = insert_many_unless_exists(Verdict, rows=rows, unique=["part"], unique_where="is_final")
    verdicts = []
    for item, values, verdict_id in zip(model_verdicts, rows, created, strict=True):
        if verdict_id is None:
            continue  # a repeat post, or a person faster than the models: the part keeps its verdict
        verdict = Verdict(pk=verdict_id, **values)
        verdict.part, verdict.defect_class, verdict.inspection = (
            item.inspection.part,
            item.defect_class,
            item.inspection,
        )
        verdicts.append(verdict)
    if not verdicts:
        return []
    AuditEvent.objects.bulk_create(
        [
            audit_event(
                project_id=verdict.project_id,
                actor=f"model:{verdict.model_version}",
                action="verdict.recorded",
                subject=verdict,
                after={
                    "part": verdict.part.serial,
                    "outcome": verdict.outcome,
                    "defect_class": verdict.defect_class.name if verdict.defect_class else None,
                    "source": verdict.source,
                    "model_version": verdict.model_version,
                    "inspection": verdict.inspection_id,
                },
            )
            for verdict in verdicts
        ]
    )
    rollup_record_verdicts(verdicts=[(verdict, "") for verdict in verdicts])
    from inspection.services.webhooks import webhook_deliveries_queue_many

    webhook_deliveries_queue_many(verdicts=verdicts)

    transaction.on_commit(lambda: _publish_now(verdicts), robust=True)
    return verdicts


MAX_DELIVERIES = 3


def _dead_letter(inspection: Inspection) -> Inspection:
    """Stop retrying an image that killed its worker every time: mark it failed, raise the
    alarm, and hand the part to a person so that nothing is lost or decided blind."""
    from review.models import ReviewItem
    from review.services import review_item_open

    logger.error(
        "ALERT inspection %s dead-lettered after %s deliveries (worker died each time)",
        inspection.pk,
        inspection.deliveries - 1,
    )
    with transaction.atomic():
        locked = (
            Inspection.objects.select_for_update(of=("self",)).select_related("part", "project").get(pk=inspection.pk)
        )
        if locked.status in {Inspection.Status.DONE, Inspection.Status.FAILED}:
            return locked
        locked.status = Inspection.Status.FAILED
        locked.error = f"dead-lettered: the worker died on each of {locked.deliveries - 1} deliveries"
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "error", "finished_at"])
        if not Verdict.objects.filter(part=locked.part, is_final=True).exists():
            review_item_open(part=locked.part, inspection=locked, reason=ReviewItem.Reason.MODEL_ERROR)
        audit_record(
            project_id=locked.project_id,
            actor="system",
            action="inspection.dead_lettered",
            subject=locked,
            after={"deliveries": locked.deliveries - 1, "part": locked.part.serial},
        )
    return locked


def _route_part(
    inspection: Inspection, *, deployed: bool, model_version: str, model_verdicts: list[ModelVerdict] | None = None
) -> None:
    """Decide the part once all its views are in. Runs inside inspection_run's transaction.
    With ``model_verdicts`` (single-camera parts), a verdict the models reach is appended
    there for the caller to record in bulk instead of being recorded here."""
    from review.models import ReviewItem
    from review.services import review_item_open

    part, project = inspection.part, inspection.project

    def decided() -> bool:
        return Verdict.objects.filter(part=part, is_final=True).exists()

    if not deployed:
        # Cold start: no deployed model yet, so every part goes to a person.
        if not decided():
            review_item_open(part=part, inspection=inspection, reason=ReviewItem.Reason.COLD_START)
        return
    if project.views_per_part <= 1:
        views = [inspection.scores]  # one camera: nothing to wait for, nothing to read
    else:
        views = list(
            Inspection.objects.filter(part=part, status=Inspection.Status.DONE, model_version=model_version)
            .order_by("id")
            .values_list("scores", flat=True)
        )
    if len(views) < project.views_per_part or (project.views_per_part > 1 and decided()):
        return  # wait for the other cameras; or a late view of a part decided already
    decisions = [routing.Decision(**scores["decision"]) for scores in views if "decision" in scores]
    decision = routing.audit_draw(project=project, decision=routing.decide_part(decisions))
    if decision.action == "review":
        if decided():
            return
        item, created = review_item_open(
            part=part, inspection=inspection, reason=decision.reason, model_version=model_version
        )
        if created and decision.reason == ReviewItem.Reason.AUDIT_SAMPLE:
            would = "fail" if decision.defect_class is not None or _would_fail(decisions) else "pass"
            ReviewItem.objects.filter(pk=item.pk).update(model_decision=would)
        return
    defect_class = None
    if decision.action == "fail" and decision.defect_class:
        defect_class = DefectClass.objects.filter(project=project, name=decision.defect_class).first()
    outcome = Verdict.Outcome.FAIL if decision.action == "fail" else Verdict.Outcome.PASS
    if model_verdicts is not None:
        model_verdicts.append(ModelVerdict(inspection=inspection, outcome=outcome, defect_class=defect_class))
        return
    # A part decided already (a repeat post, a person faster than the models) keeps its verdict.
    verdict_record_final_unless_decided(
        part=part,
        outcome=outcome,
        source=Verdict.Source.MODEL,
        defect_class=defect_class,
        inspection=inspection,
        model_version=model_version,
        publish_now=True,
    )


def _would_fail(decisions: list[Any]) -> bool:
    return any(decision.action == "fail" for decision in decisions)


def verdict_record_final(
    *,
    part: Part,
    outcome: str,
    source: str,
    defect_class: DefectClass | None = None,
    decided_by: Any = None,
    inspection: Inspection | None = None,
    model_version: str = "",
    audited_model_decision: str = "",
    publish_now: bool = False,
) -> Verdict:
    """The part's one final verdict. A second final verdict for the same part is a Conflict.

    Counted in the dashboards' rollups in the same transaction. ``audited_model_decision``
    is what the models would have decided ("pass"/"fail") when a person decides an audit
    sample: it makes the verdict an escape or a false reject, or confirms the models.
    ``publish_now``: publish to MQTT from this process after the commit (inference workers,
    with ``inspection`` and its station loaded) instead of queueing the publish task.
    """
    verdict = verdict_record_final_unless_decided(
        part=part,
        outcome=outcome,
        source=source,
        defect_class=defect_class,
        decided_by=decided_by,
        inspection=inspection,
        model_version=model_version,
        audited_model_decision=audited_model_decision,
        publish_now=publish_now,
    )
    if verdict is None:
        raise Conflict("This part already has a final verdict.", code="already_decided")
    return verdict


def verdict_record_final_unless_decided(
    *,
    part: Part,
    outcome: str,
    source: str,
    defect_class: DefectClass | None = None,
    decided_by: Any = None,
    inspection: Inspection | None = None,
    model_version: str = "",
    audited_model_decision: str = "",
    publish_now: bool = False,
) -> Verdict | None:
    """``verdict_record_final``, answering None (and writing nothing) when the part already
    has a final verdict. Cost on the inference hot path: one ``INSERT ... ON CONFLICT DO
    NOTHING`` against the one-final-verdict index (no read first, no savepoint), the audit
    row, the rollup upserts and a read of the project's webhooks."""
    if outcome == Verdict.Outcome.FAIL and source == Verdict.Source.HUMAN and defect_class is None:
        raise InvalidInput("A failed part needs a defect class.", code="defect_class_required")
    if outcome == Verdict.Outcome.PASS and defect_class is not None:
        raise InvalidInput("A passed part has no defect class.", code="defect_class_not_allowed")
    if defect_class is not None and defect_class.project_id != part.project_id:
        raise InvalidInput("Unknown defect class for this project.", code="unknown_defect_class")
    values = {
        "project_id": part.project_id,
        "part_id": part.pk,
        "outcome": outcome,
        "defect_class_id": defect_class.pk if defect_class else None,
        "source": source,
        "decided_by_id": getattr(decided_by, "pk", None),
        "inspection_id": inspection.pk if inspection else None,
        "model_version": model_version,
        "is_final": True,
        "created_at": timezone.now(),
    }
    # No savepoint: nothing in here is expected to fail, and a conflict is not an error.
    with transaction.atomic(savepoint=False):
        verdict_id = insert_unless_exists(Verdict, values=values, unique=["part"], unique_where="is_final")
        if verdict_id is None:
            return None
        verdict = Verdict(pk=verdict_id, **values)
        verdict.part, verdict.defect_class, verdict.inspection = part, defect_class, inspection
        if decided_by is not None:
            verdict.decided_by = decided_by
        audit_record(
            project_id=part.project_id,
            actor=decided_by or f"model:{model_version}",
            action="verdict.recorded",
            subject=verdict,
            after={
                "part": part.serial,
                "outcome": outcome,
                "defect_class": defect_class.name if defect_class else None,
                "source": source,
                "model_version": model_version,
                "inspection": inspection.pk if inspection else None,
            },
        )
        rollup_record_verdict(verdict=verdict, audited_model_decision=audited_model_decision)
        if publish_now:
            transaction.on_commit(lambda: _publish_now([verdict]), robust=True)
        else:
            transaction.on_commit(lambda: _enqueue_publish(verdict_id), robust=True)
        from inspection.services.webhooks import webhook_deliveries_queue

        webhook_deliveries_queue(verdict=verdict)
        return verdict


def inspections_stale_pending(*, cutoff: datetime, limit: int) -> QuerySet[Inspection, int]:
    """Ids of inspections still pending since before ``cutoff``, oldest first (served by the
    partial index of pending rows, so the every-minute search does not scan all parts)."""
    return (
        Inspection.objects.filter(status=Inspection.Status.PENDING, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


def inspections_requeue_stale(*, older_than: timedelta = timedelta(minutes=2), limit: int = 1000) -> int:
    """Queue again inspections still pending after ``older_than``: their message was lost
    (broker restart or flush, enqueue failure). The task is idempotent, so a duplicate is harmless."""
    from inspection.services.run_claims import leases_expired

    stale = list(inspections_stale_pending(cutoff=timezone.now() - older_than, limit=limit))
    # ... and those whose run died holding their claim (a companion's own task found it taken).
    stale += leases_expired(limit=limit)
    for inspection_id in stale:
        _enqueue_inference(inspection_id)
    return len(stale)
