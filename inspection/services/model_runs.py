"""Writes for model runs: the deployed models on claimed inspections, the outcomes written and
the parts routed in one transaction, and dead-lettering of images that kill their worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from inspection.models import DriftReview, Inspection, ModelVersion, Verdict
from inspection.selectors import drift_review_signals, drifting_stations, station_view_untrained
from inspection.services import routing
from inspection.services.audit import audit_record
from inspection.services.verdicts import ModelVerdict, _route_part, verdicts_record_final_from_models
from workers.ml.regions import (
    Box,
    Region,
    blank_zones,
    crop,
    parse_region,
    parse_zones,
    paste,
    region_box,
    region_dict,
    scored_view,
    view_key,
    zero_zones,
)
from workers.routing.drift import image_stats

logger = logging.getLogger(__name__)


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
    frames: list[Frame | None] = []
    for inspection, run in zip(inspections, runs, strict=True):
        started = time.perf_counter()
        try:
            whole = read_pixels(inspection.image.file)
            frame = Frame.of(whole, inspection.station.inspection_region, inspection.station.ignore_zones)
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: not this image's fault
        except Exception as exc:  # noqa: BLE001 - an unreadable image goes to a person, the batch goes on
            _model_error(run, inspection, exc)
            pixels.append(None)
            frames.append(None)
            continue
        # The models see the station's inspection region only, its ignore zones blanked
        # (workers.ml.regions).
        seen = crop(blank_zones(whole, frame.zones), frame.region)
        pixels.append(seen)
        frames.append(frame)
        # Brightness and contrast of what the models see: watched for drift (workers.routing.drift).
        run.scores.update(image_stats(seen))
        if frame.region is not None:  # what the models looked at: the region, and its pixels
            run.scores["region"] = region_dict(frame.region)
            run.scores["region_box"] = list(frame.box)
        if frame.zones:
            run.scores["ignore_zones"] = [region_dict(zone) for zone in frame.zones]
        if _region_untrained(inspection, deployed):
            run.scores["region_untrained"] = True
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
                [frames[i] for i in group],
                deployed,
                save_overlays,
            )
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: not the model's fault
        except Exception as exc:  # noqa: BLE001 - a model that cannot run sends the part to a person
            if len(group) == 1:
                _model_error(runs[group[0]], inspections[group[0]], exc)
            else:  # find the image it failed on: each alone
                for index in group:
                    runs[index] = run_models(
                        inspection=inspections[index], deployed=deployed, save_overlays=save_overlays
                    )
    return runs


def _region_untrained(inspection: Inspection, deployed: dict[str, ModelVersion]) -> bool:
    """Whether a deployed model learnt this station's images under another view (inspection
    region and ignore zones) than the station has now; a version from before regions saw the
    whole frame. Its scores for this view were never validated, so routing sends the part to
    people."""
    return station_view_untrained(inspection.station, deployed.values())


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


@dataclass(frozen=True)
class Frame:
    """Where the models' view sits in the whole image: its shape, the station's region, the
    region's pixel box and the ignore zones. Heatmaps and masks go back into the whole image,
    zero in the zones (``whole``)."""

    shape: tuple[int, int]
    region: Region | None
    box: Box
    zones: tuple[Region, ...] = ()

    @classmethod
    def of(cls, image: np.ndarray, stored_region: Any, stored_zones: Any = ()) -> Frame:
        shape = (int(image.shape[0]), int(image.shape[1]))
        region = parse_region(stored_region) if stored_region is not None else None
        zones = parse_zones(stored_zones) if stored_zones else ()
        return cls(shape=shape, region=region, box=region_box(shape, region), zones=zones)

    def whole(self, part: np.ndarray) -> np.ndarray:
        return zero_zones(paste(part, self.box, self.shape), self.zones)


def _screen_and_detail(
    inspections: list[Inspection],
    runs: list[ModelRun],
    pixels: list[Any],
    frames: list[Any],
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
                run.heatmap_file = save_png(f"heatmaps/{inspection.pk}.png", frames[index].whole(heat))
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
                run.heatmap_file = save_png(f"heatmaps/{inspection.pk}.png", frames[index].whole(heat))
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
                    whole_mask = frames[index].whole(prediction.mask)
                    run.mask_file = save_png(f"masks/{inspections[index].pk}.png", whole_mask)
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
    view_thresholds: dict[tuple[str, int, str], Any] = {}
    # Per deployed set: stations drift_review holds, with when their drift began, and the
    # thresholds fitted on each one's parts since (None: not yet, its parts go to people).
    drifting: dict[str, dict[int, Any]] = {}
    drift_thresholds: dict[tuple[str, int, Any], Any] = {}
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
            view_calibration = None
            if run.scores.get("region_untrained"):  # a view the models never learnt: its own thresholds
                key = (run.model_version, inspection.station_id, view_key(scored_view(run.scores)))
                if key not in view_thresholds:
                    view_thresholds[key] = routing.view_thresholds_for(
                        project=project, model_version=key[0], station_id=key[1], view_key=key[2]
                    )
                view_calibration = view_thresholds[key]
                if view_calibration is not None:
                    t_pass, t_fail, calibration = view_calibration.t_pass, view_calibration.t_fail, view_calibration
            drift_since, drift_calibration = None, None
            if project.drift_review != DriftReview.OFF:
                if run.model_version not in drifting:
                    drifting[run.model_version] = drifting_stations(
                        project_id=project.pk, label=run.model_version, signals=drift_review_signals(project)
                    )
                drift_since = drifting[run.model_version].get(inspection.station_id)
                if drift_since is not None:  # a drifting station: only its own drift-time thresholds
                    drift_key = (run.model_version, inspection.station_id, drift_since)
                    if drift_key not in drift_thresholds:
                        drift_thresholds[drift_key] = routing.drift_thresholds_for(
                            project=project, model_version=drift_key[0], station_id=drift_key[1], since=drift_since
                        )
                    drift_calibration = drift_thresholds[drift_key]
                    if drift_calibration is not None and drift_calibration.t_pass < 0:
                        drift_calibration = None  # passes nothing yet: all its parts stay with people
                    if drift_calibration is not None:
                        t_pass, t_fail = drift_calibration.t_pass, drift_calibration.t_fail
                        calibration = drift_calibration
            view = routing.decide_view(
                project=project,
                scores=run.scores,
                t_pass=t_pass,
                t_fail=t_fail,
                error=run.error,
                view_calibrated=view_calibration is not None or drift_calibration is not None,
            )
            if drift_since is not None and (
                (drift_calibration is None and view.action in {"pass", "fail"})
                or view.reason in {"uncertain", "region_changed"}
            ):
                # Held (every part to people) until its drift-time thresholds can pass parts.
                held = view.held or ("station" if drift_calibration is None else "")
                view = routing.Decision("review", "drift", view.defect_class, held)
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
