"""Routing: each part is passed or failed by the models when they are sure, and sent to a
person when they are not, when the models disagree, when the part is unlike anything they
were trained on, or when it is drawn for the random audit that measures real error rates.

Thresholds come from the latest calibration of the deployed model set on human-labelled
parts (``workers.routing.calibration``); before there is one, the project's fixed
``auto_pass_threshold`` / ``auto_fail_threshold`` apply.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from inspection.models import Calibration, CalibrationScore, DriftReview, Inspection, Project, Verdict
from inspection.notifications import notify_drift, notify_routing
from inspection.selectors import station_view_untrained
from inspection.services.audit import audit_record


@dataclass(frozen=True)
class Decision:
    action: str  # "pass", "fail" or "review"
    reason: str = ""  # for "review": a ReviewItem.Reason value
    defect_class: str | None = None
    # "project" / "station": the image went to people whatever its scores, because the
    # thresholds in force (the project's, or its station's own for a drift or a view the models
    # never learnt) decide no part yet. Such parts are a fair sample for fitting those
    # thresholds; parts sent to people for their scores are not (``fair_parts``).
    held: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "defect_class": self.defect_class, "held": self.held}


def decides_nothing(t_pass: float, t_fail: float) -> bool:
    """Thresholds under which no score is auto-passed or auto-failed (scores lie in [0, 1])."""
    return t_pass < 0 and t_fail > 1


# Calibration scores are written in batches of this many while a new deployment rescores.
RESCORE_SAVE_EVERY = 100


def thresholds_for(*, project: Project, model_version: str) -> tuple[float, float, Calibration | None]:
    calibration = (
        Calibration.objects.filter(project=project, model_version=model_version, station__isnull=True)
        .only("id", "t_pass", "t_fail")  # per part: not the workload curve
        .order_by("-id")
        .first()
    )
    if calibration is not None:
        return calibration.t_pass, calibration.t_fail, calibration
    return project.auto_pass_threshold, project.auto_fail_threshold, None


def view_thresholds_for(*, project: Project, model_version: str, station_id: int, view_key: str) -> Calibration | None:
    """The latest calibration of ``model_version`` on one station's parts seen through the
    view ``view_key`` (one the models never learnt); None: not calibrated on it yet."""
    return (
        Calibration.objects.filter(project=project, model_version=model_version, station_id=station_id)
        .filter(view_key=view_key, drift_since__isnull=True)
        .only("id", "t_pass", "t_fail")
        .order_by("-id")
        .first()
    )


def drift_thresholds_for(*, project: Project, model_version: str, station_id: int, since: Any) -> Calibration | None:
    """The latest calibration of ``model_version`` on the parts a drifting station sent to
    people since its drift began at ``since``; None: none yet."""
    return (
        Calibration.objects.filter(project=project, model_version=model_version, station_id=station_id)
        .filter(drift_since=since)
        .only("id", "t_pass", "t_fail")
        .order_by("-id")
        .first()
    )


def decide_view(
    *,
    project: Project,
    scores: dict[str, Any],
    t_pass: float,
    t_fail: float,
    error: str,
    view_calibrated: bool = False,
) -> Decision:
    """The decision for one image from its model scores (see ``run_models``).

    An image seen through a view the models never learnt (``region_untrained``) is decided by
    them only with thresholds calibrated on that station's parts through that view
    (``view_calibrated``); anything they are unsure of goes to people as ``region_changed``.
    ``view_calibrated`` also says the thresholds are the station's own, not the project's
    (a drifting station's): what a hold, when they decide nothing, is recorded against."""
    if error or scores.get("defect_score") is None:
        return Decision("review", "model_error")
    untrained = bool(scores.get("region_untrained"))  # see model_runs._region_untrained
    if untrained and not view_calibrated:
        return Decision("review", "region_changed", held="station")
    held = ("station" if view_calibrated else "project") if decides_nothing(t_pass, t_fail) else ""
    decision = _decide_view(project=project, scores=scores, t_pass=t_pass, t_fail=t_fail, untrained=untrained)
    return Decision(decision.action, decision.reason, decision.defect_class, held) if held else decision


def _decide_view(
    *, project: Project, scores: dict[str, Any], t_pass: float, t_fail: float, untrained: bool
) -> Decision:
    ratio = scores.get("anomaly_ratio")
    if ratio is not None and ratio >= project.out_of_distribution_ratio:
        return Decision("review", "out_of_distribution")
    flags = [scores[name] for name in ("classifier_flag", "anomaly_flag") if name in scores]
    if len(flags) == 2 and flags[0] != flags[1]:
        return Decision("review", "disagreement")
    score = float(scores["defect_score"])
    if score <= t_pass:
        return Decision("pass")
    if score >= t_fail:
        return Decision("fail", defect_class=scores.get("predicted_class"))
    return Decision("review", "region_changed" if untrained else "uncertain")


def decide_part(views: list[Decision]) -> Decision:
    """One verdict per part: any failing view fails it; any doubtful view sends it to people."""
    for decision in views:
        if decision.action == "fail":
            return decision
    for decision in views:
        if decision.action == "review":
            return decision
    return Decision("pass")


def sample_draw(*, project: Project, rng: random.Random | None = None) -> bool:
    """Whether a part is drawn for the random sample (``audit_rate`` of all parts, whatever the
    models decide): drawn parts the models would decide go to people anyway (``audit_draw``),
    and every drawn part a person decides is one the thresholds can be fitted on."""
    return (rng or random).random() < project.audit_rate


def audit_draw(*, decision: Decision, sampled: bool) -> Decision:
    """An automatic decision of a part drawn for the sample goes to people anyway: the audit
    that measures the real escape and false-reject rates."""
    if sampled and decision.action in {"pass", "fail"}:
        return Decision("review", "audit_sample", decision.defect_class)
    return decision


# --- calibration ---------------------------------------------------------------------------


def trained_on_images(*, project: Project, model_version: str) -> set[int]:
    """Ids of the images any model of the set ``model_version`` (a deployed label such as
    ``anomaly:3,classifier:7/int8``) learned from, its validation split included."""
    from inspection.models import ModelVersion

    pks = set()
    for member in filter(None, model_version.split(",")):
        _, _, rest = member.partition(":")
        if rest.split("/")[0].isdigit():
            pks.add(int(rest.split("/")[0]))
    images: set[int] = set()
    for training_data in ModelVersion.objects.filter(project=project, pk__in=pks).values_list(
        "training_data", flat=True
    ):
        images.update(int(i) for i in (training_data or {}).get("images", []))
    return images


def fair_verdicts(*, project: Project) -> Any:
    """The human final verdicts of parts that came to people whatever their scores: drawn at
    random for the sample, sent while no models were deployed or while the project's
    thresholds decided no part (``ReviewItem.sampled``), or decided by a person with no
    routing at all. A fair sample of the line, on which the escape bound holds.

    Parts the models sent to people for their scores (unsure, disagreeing, unlike the training
    data) are left out: they crowd the doubtful band, while the parts the thresholds pass are
    there only at the audit rate, so a fit on every decided part sees too few of the defects
    that slip under the auto-pass threshold and does not tighten it when the models get worse
    (benchmarks/recalibration.py measures it)."""
    from review.models import ReviewItem

    # NOT EXISTS, an anti-join on the review items' part index: NOT IN over every item a
    # project ever had would be a hashed subplan only while it fits in memory.
    by_scores = ReviewItem.objects.filter(part_id=OuterRef("part_id"), golden__isnull=True, sampled=False)
    return Verdict.objects.filter(project=project, is_final=True, source=Verdict.Source.HUMAN).filter(
        ~Exists(by_scores)
    )


def held_at_station(scores: Any) -> bool:
    """Whether an image went to people whatever its scores because its station's (or the
    project's) thresholds decided no part then: a fair sample for that station's own fits."""
    decision = scores.get("decision") if isinstance(scores, dict) else None
    if not isinstance(decision, dict):
        return False
    if "held" in decision:
        return decision["held"] in {"station", "project"}
    return decision.get("reason") in {"drift", "region_changed"}  # routed before holds were recorded


def _station_fair(project: Project, parts: Any) -> set[int]:
    """Of the part ids ``parts`` (a subquery), those in the project's fair sample."""
    return set(fair_verdicts(project=project).filter(part_id__in=parts).values_list("part_id", flat=True))


def calibration_parts(*, project: Project, model_version: str, since: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(defect scores, human says defective) of the project's calibration sample, oldest
    decision first (``calibration_sample``)."""
    scores, defective, _ = calibration_sample(project=project, model_version=model_version, since=since)
    return scores, defective


def calibration_sample(
    *, project: Project, model_version: str, since: Any = None
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(defect scores, human says defective, when decided) of the latest
    ``LOUPE_CALIBRATION_WINDOW`` parts of the fair sample (``fair_verdicts``) that the deployed
    set scored, decided at or after ``since`` when given; oldest decision first.

    Images the set trained on are left out: decided parts feed the training pool, and a model
    scores its own training images more confidently than new parts, which would loosen the
    auto-pass threshold past the escape target (the bound holds for parts it has not seen).
    """
    fair = fair_verdicts(project=project)
    if since is not None:
        fair = fair.filter(created_at__gte=since)
    decided = fair.order_by("-id")[: settings.LOUPE_CALIBRATION_WINDOW]
    human = {part_id: (pk, outcome, at) for pk, part_id, outcome, at in decided.values_list(
        "pk", "part_id", "outcome", "created_at"
    )}  # fmt: skip
    trained_on = trained_on_images(project=project, model_version=model_version)
    rows: list[tuple[int, int, float]] = []  # (verdict id, image id, score)
    # Decided parts as a subquery and training images filtered here: either can hold more ids
    # than SQLite takes as query parameters.
    live = Inspection.objects.filter(
        project=project, model_version=model_version, part_id__in=decided.values("part_id")
    )
    for part_id, image_id, view_scores in live.values_list("part_id", "image_id", "scores"):
        if image_id in trained_on or part_id not in human:  # decided after ``human`` was read
            continue
        if not isinstance(view_scores, dict) or view_scores.get("region_untrained"):
            continue  # seen through a view the set never learnt: that station's own calibration
        if view_scores.get("defect_score") is not None:
            rows.append((human[part_id][0], image_id, float(view_scores["defect_score"])))
    # Images of decided parts that this set scored after it was deployed (``calibration_rescore``).
    rescored = CalibrationScore.objects.filter(
        project=project, model_version=model_version, view_key="", inspection__part_id__in=decided.values("part_id")
    ).values_list("inspection__part_id", "inspection__image_id", "defect_score")
    for part_id, image_id, score in rescored:
        if image_id in trained_on or part_id not in human:
            continue
        rows.append((human[part_id][0], image_id, float(score)))
    rows.sort()
    by_verdict = {pk: (outcome, at) for pk, outcome, at in human.values()}
    scores = np.asarray([score for _, _, score in rows], dtype=np.float64)
    defective = np.asarray([by_verdict[pk][0] == Verdict.Outcome.FAIL for pk, _, _ in rows], dtype=bool)
    return scores, defective, [by_verdict[pk][1] for pk, _, _ in rows]


def calibration_rescore(*, project_id: int, limit: int = 2000) -> int:
    """Calibrate a newly deployed model set at once: score the images of the latest ``limit``
    human-decided parts that it has not scored itself, then refit the thresholds. Without this a
    new deployment (or a switch to INT8) sends every part to review until it has served enough
    parts that people then decide. Images the set trained on are skipped (``calibration_parts``).
    Runs the models outside any transaction; idempotent (a rescored image is stored once per
    set). Returns how many images were scored."""
    from inspection import serving
    from inspection.services.model_runs import run_models

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return 0
    label = deployed_label(project=project)
    if not label:
        return 0
    deployed = serving.deployed_versions(project_id=project.pk)
    # The fair sample only (``fair_verdicts``): what ``calibration_parts`` fits on.
    decided = list(fair_verdicts(project=project).order_by("-id").values_list("part_id", flat=True)[:limit])
    done_already = CalibrationScore.objects.filter(model_version=label).values("inspection_id")
    todo = (
        Inspection.objects.filter(project=project, part_id__in=decided, status=Inspection.Status.DONE)
        .exclude(model_version=label)
        .exclude(pk__in=done_already)
        .select_related("image", "project", "part", "station")
    )
    trained_on = trained_on_images(project=project, model_version=label)
    scored: list[CalibrationScore] = []
    saved = 0
    for inspection in todo.iterator(chunk_size=200):
        if inspection.image_id in trained_on:
            continue
        run = run_models(inspection=inspection, deployed=deployed, save_overlays=False)
        if run.defect_score is not None and not run.error:
            scored.append(_calibration_score(project, run, inspection))
        if len(scored) >= RESCORE_SAVE_EVERY:
            # Kept as it goes: a run stopped by its time limit leaves its scores, and the next
            # run starts where it stopped (scored parts are skipped above).
            saved += len(CalibrationScore.objects.bulk_create(scored, ignore_conflicts=True))
            scored = []
    saved += len(CalibrationScore.objects.bulk_create(scored, ignore_conflicts=True))
    calibration_run(project=project, model_version=label)
    # Stations whose view the new set did not learn: their own calibration on that view.
    for station in project.stations.all():
        if station_view_untrained(station, deployed.values()):
            saved += calibration_rescore_view(station_id=station.pk, limit=limit)
    return saved


def _calibration_score(project: Project, run: Any, inspection: Inspection) -> CalibrationScore:
    """A rescored image's score, filed under the view it was seen through when that is one the
    set never learnt (for its station's own calibration), else under the set alone."""
    from workers.ml.regions import scored_view, view_key

    key = view_key(scored_view(run.scores)) if run.scores.get("region_untrained") else ""
    return CalibrationScore(
        project=project,
        model_version=run.model_version,
        inspection=inspection,
        view_key=key,
        defect_score=float(run.defect_score),
    )


def calibration_rescore_view(*, station_id: int, limit: int = 2000) -> int:
    """Let the deployed models decide a station's parts again soon after its view (inspection
    region, ignore zones) changed, without waiting for models retrained on it: score the images
    of the station's latest ``limit`` human-decided parts through the new view, then fit that
    station's own thresholds on them (``calibration_run`` with ``station``). A person's verdict
    is about the part, so a defect the new view hides or blurs counts as an escape here and
    keeps the auto-pass threshold below it: the escape bound holds for the new view. Parts the
    station sends to people meanwhile add to it (``routing_recalibrate_stale``). Idempotent;
    returns how many images were scored."""
    from inspection import serving
    from inspection.models import Station
    from inspection.services.model_runs import run_models
    from workers.ml.regions import view_key

    station = Station.objects.select_related("project").filter(pk=station_id).first()
    if station is None:
        return 0
    project = station.project
    label = deployed_label(project=project)
    deployed = serving.deployed_versions(project_id=project.pk)
    if not label or not station_view_untrained(station, deployed.values()):
        return 0  # nothing serves, or the deployed models learnt this view
    key = view_key(station.view())
    decided = list(
        Verdict.objects.filter(
            project=project, is_final=True, source=Verdict.Source.HUMAN, part_id__in=_station_parts(station)
        )
        .order_by("-id")
        .values_list("part_id", flat=True)[:limit]
    )
    fair = _station_fair(project, decided)
    done_already = CalibrationScore.objects.filter(model_version=label, view_key=key).values("inspection_id")
    todo = (
        Inspection.objects.filter(project=project, station=station, part_id__in=decided, status=Inspection.Status.DONE)
        .exclude(pk__in=done_already)
        .select_related("image", "project", "part", "station")
    )
    trained_on = trained_on_images(project=project, model_version=label)
    scored: list[CalibrationScore] = []
    saved = 0
    for inspection in todo.iterator(chunk_size=200):
        if inspection.image_id in trained_on or _scored_live_through(inspection, label, key):
            continue
        if inspection.part_id not in fair and not held_at_station(inspection.scores):
            continue  # sent to people for its scores: not a fair sample of the station
        run = run_models(inspection=inspection, deployed=deployed, save_overlays=False)
        if run.defect_score is not None and not run.error:
            scored.append(_calibration_score(project, run, inspection))
        if len(scored) >= RESCORE_SAVE_EVERY:
            saved += len(CalibrationScore.objects.bulk_create(scored, ignore_conflicts=True))
            scored = []
    saved += len(CalibrationScore.objects.bulk_create(scored, ignore_conflicts=True))
    calibration_run(project=project, model_version=label, station=station)
    return saved


def _station_parts(station: Any) -> Any:
    """The ids of the parts a station photographed (a subquery)."""
    return Inspection.objects.filter(station=station).values("part_id")


def _scored_live_through(inspection: Inspection, label: str, key: str) -> bool:
    """Whether the set ``label`` scored this image when it arrived, through the view ``key``."""
    from workers.ml.regions import scored_view, view_key

    scores = inspection.scores if isinstance(inspection.scores, dict) else {}
    return (
        inspection.model_version == label
        and bool(scores.get("region_untrained"))
        and view_key(scored_view(scores)) == key
    )


def calibration_parts_view(
    *, project: Project, model_version: str, station: Any, view_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """(defect scores, human says defective) of one station's decided parts as the set
    ``model_version`` scored them through the view ``view_key``: live, when the station sent
    them to people under it, and rescored (``calibration_rescore_view``). Only parts that came
    to people whatever their scores: the project's fair sample (``fair_verdicts``) and those
    the station sent while its thresholds decided none (``held_at_station``). Images the set
    trained on are left out, as in ``calibration_parts``."""
    decided = Verdict.objects.filter(project=project, is_final=True, source=Verdict.Source.HUMAN)
    # The station's latest decided parts only, as the project fit's window.
    latest = decided.filter(part_id__in=_station_parts(station)).order_by("-id")[: settings.LOUPE_CALIBRATION_WINDOW]
    human = dict(latest.values_list("part_id", "outcome"))
    fair = _station_fair(project, list(human))
    trained_on = trained_on_images(project=project, model_version=model_version)
    by_image: dict[int, tuple[float, bool]] = {}
    live = Inspection.objects.filter(
        project=project, station=station, model_version=model_version, part_id__in=latest.values("part_id")
    )
    for inspection in live.only("id", "part_id", "image_id", "model_version", "scores"):
        if inspection.image_id in trained_on or inspection.part_id not in human:
            continue
        if inspection.part_id not in fair and not held_at_station(inspection.scores):
            continue  # sent to people for its scores under the view's own thresholds
        if (
            _scored_live_through(inspection, model_version, view_key)
            and inspection.scores.get("defect_score") is not None
        ):
            outcome = human[inspection.part_id] == Verdict.Outcome.FAIL
            by_image[inspection.pk] = (float(inspection.scores["defect_score"]), outcome)
    rescored = CalibrationScore.objects.filter(
        project=project,
        model_version=model_version,
        view_key=view_key,
        inspection__station=station,
        inspection__part_id__in=latest.values("part_id"),
    ).values_list("inspection_id", "inspection__part_id", "inspection__image_id", "inspection__scores", "defect_score")
    for inspection_id, part_id, image_id, live_scores, score in rescored:
        if image_id in trained_on or part_id not in human:
            continue
        if part_id not in fair and not held_at_station(live_scores):
            continue
        by_image.setdefault(inspection_id, (float(score), human[part_id] == Verdict.Outcome.FAIL))
    scores = [score for score, _ in by_image.values()]
    defective = [outcome for _, outcome in by_image.values()]
    return np.asarray(scores, dtype=np.float64), np.asarray(defective, dtype=bool)


def calibration_parts_drift(
    *, project: Project, model_version: str, station: Any, since: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(defect scores, human says defective) of the parts a drifting station photographed since
    ``since`` (its drift's start) that people decided, as the set ``model_version`` scored them
    when they arrived through the station's current view. Under ``drift_review`` each of them
    went to a person whatever its score, so they are a fair sample of the drifted parts, not
    only the doubtful ones. Once its drift-time thresholds decide parts, only the doubtful ones
    come to people, so from then on only the project's fair sample (``fair_verdicts``) adds to
    it. Images the set trained on are left out."""
    from workers.ml.regions import scored_view, view_key

    key = view_key(station.view())
    decided = Verdict.objects.filter(project=project, is_final=True, source=Verdict.Source.HUMAN)
    at_station = Inspection.objects.filter(
        project=project, station=station, model_version=model_version, received_at__gte=since
    )
    # Its latest decided parts since the drift began, as the project fit's window.
    latest = decided.filter(part_id__in=at_station.values("part_id")).order_by("-id")[
        : settings.LOUPE_CALIBRATION_WINDOW
    ]
    human = dict(latest.values_list("part_id", "outcome"))
    rows = at_station.filter(part_id__in=latest.values("part_id"))
    fair = _station_fair(project, list(human))
    trained_on = trained_on_images(project=project, model_version=model_version)
    scores, defective = [], []
    for part_id, image_id, view_scores in rows.values_list("part_id", "image_id", "scores"):
        if image_id in trained_on or part_id not in human or not isinstance(view_scores, dict):
            continue
        if part_id not in fair and not held_at_station(view_scores):
            continue  # a doubtful part sent to people after the drift-time thresholds took over
        if view_scores.get("defect_score") is None or view_key(scored_view(view_scores)) != key:
            continue
        scores.append(float(view_scores["defect_score"]))
        defective.append(human[part_id] == Verdict.Outcome.FAIL)
    return np.asarray(scores, dtype=np.float64), np.asarray(defective, dtype=bool)


def calibration_run(
    *, project: Project, model_version: str, actor: Any = None, station: Any = None, drift_since: Any = None
) -> Calibration:
    """Fit thresholds for ``model_version`` (the deployed set's label) to the project's targets;
    with ``station``, on that station's parts seen through its current view only; with
    ``drift_since`` too, on its parts since its drift began (``calibration_parts_drift``)."""
    from workers.ml.regions import view_key
    from workers.routing.calibration import calibrate, calibrate_recent, workload_curve

    key = view_key(station.view()) if station is not None else ""
    if station is not None and drift_since is not None:
        scores, defective = calibration_parts_drift(
            project=project, model_version=model_version, station=station, since=drift_since
        )
    elif station is not None:
        scores, defective = calibration_parts_view(
            project=project, model_version=model_version, station=station, view_key=key
        )
    delta = 1.0 - project.calibration_confidence
    targets = {
        "target_escape": project.target_escape_rate,
        "target_false_reject": project.target_false_reject_rate,
        "delta": delta,
    }
    sample_since = None
    if station is None:
        # The project's fit: its fair sample, from where an earlier fit found the line changed.
        sample_since = (
            Calibration.objects.filter(project=project, model_version=model_version, station__isnull=True)
            .order_by("-id")
            .values_list("sample_since", flat=True)
            .first()
        )
        scores, defective, decided_at = calibration_sample(
            project=project, model_version=model_version, since=sample_since
        )
        chosen = calibrate_recent(scores, defective, recent=settings.LOUPE_CALIBRATION_RECENT, **targets)
        if chosen.shifted:  # the latest parts say the models got worse: start again from them
            sample_since = decided_at[-settings.LOUPE_CALIBRATION_RECENT]
            shifted = {"model_version": model_version, "sample_since": sample_since.isoformat()}
            transaction.on_commit(
                partial(notify_routing, project_id=project.pk, event="routing.shifted", payload=shifted), robust=True
            )
            scores, defective = (
                scores[-settings.LOUPE_CALIBRATION_RECENT :],
                defective[-settings.LOUPE_CALIBRATION_RECENT :],
            )
    else:
        chosen = calibrate(scores, defective, **targets)
    curve = workload_curve(scores, defective, target_false_reject=project.target_false_reject_rate, delta=delta)
    with transaction.atomic():
        calibration = Calibration.objects.create(
            project=project,
            model_version=model_version,
            station=station,
            view_key=key,
            drift_since=drift_since if station is not None else None,
            sample_since=sample_since,
            parts=chosen.n,
            target_escape_rate=project.target_escape_rate,
            target_false_reject_rate=project.target_false_reject_rate,
            confidence=project.calibration_confidence,
            t_pass=chosen.t_pass,
            t_fail=chosen.t_fail,
            expected_review_rate=chosen.review_rate,
            escape_rate=chosen.escape_rate,
            false_reject_rate=chosen.false_reject_rate,
            curve=[point.__dict__ for point in curve],
        )
        audit_record(
            project_id=project.pk,
            actor=actor,
            action="routing.calibrated",
            subject=calibration,
            after={
                "model_version": model_version,
                **({"station": station.pk, "view": station.view()} if station is not None else {}),
                **({"drift_since": drift_since.isoformat()} if station is not None and drift_since else {}),
                "parts": chosen.n,
                **({"sample_since": sample_since.isoformat(), "shifted": chosen.shifted} if sample_since else {}),
                "t_pass": chosen.t_pass,
                "t_fail": chosen.t_fail,
                "target_escape_rate": project.target_escape_rate,
            },
        )
    return calibration


def deployed_label(*, project: Project) -> str:
    from inspection.models import ModelVersion

    rows = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.DEPLOYED)
    return ",".join(sorted(row.serving_label for row in rows))


def routing_recalibrate(*, project_id: int, actor: Any = None) -> Calibration | None:
    """Recalibrate for whatever is deployed now (after a deployment, a change of targets, or
    new human labels). Returns None when nothing is deployed."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    label = deployed_label(project=project)
    if not label:
        return None
    return calibration_run(project=project, model_version=label, actor=actor)


def routing_recalibrate_stale() -> int:
    """Refit projects whose deployed models gained human-labelled parts since their last
    calibration (run periodically). Returns how many were refitted."""
    from inspection.models import ModelVersion
    from workers.ml.regions import view_key

    refitted = 0
    for project in Project.objects.filter(model_versions__status="deployed").distinct():
        label = deployed_label(project=project)
        latest = (
            Calibration.objects.filter(project=project, model_version=label, station__isnull=True)
            .order_by("-id")
            .first()
        )
        newer = Verdict.objects.filter(project=project, source=Verdict.Source.HUMAN, is_final=True)
        if latest is not None:
            newer = newer.filter(created_at__gt=latest.created_at)
        if latest is None or newer.exists():
            calibration_run(project=project, model_version=label)
            refitted += 1
        # Stations seen through a view the set never learnt: their own calibration, refitted
        # as people decide the parts they send.
        versions = list(ModelVersion.objects.filter(project=project, status=ModelVersion.Status.DEPLOYED))
        for station in project.stations.all():
            if not station_view_untrained(station, versions):
                continue
            latest_view = (
                Calibration.objects.filter(
                    project=project,
                    model_version=label,
                    station=station,
                    view_key=view_key(station.view()),
                    drift_since__isnull=True,
                )
                .order_by("-id")
                .first()
            )
            at_station = Verdict.objects.filter(
                project=project, source=Verdict.Source.HUMAN, is_final=True, part_id__in=_station_parts(station)
            )
            if latest_view is not None:
                at_station = at_station.filter(created_at__gt=latest_view.created_at)
            if at_station.exists():
                calibration_run(project=project, model_version=label, station=station)
                refitted += 1
        refitted += _recalibrate_drifting(project, label)
    return refitted


def routing_recalibrate_held() -> int:
    """Refit, without waiting for the ten-minute refit, every project whose thresholds decide no
    part yet (every part goes to people, as after a deployment with too few decided parts) once
    enough parts of its fair sample have been decided since for a fit to decide some
    (``parts_needed``). Cheap to run every minute: one count per such project. Returns how many
    were refitted."""
    from inspection.models import ModelVersion
    from workers.routing.calibration import parts_needed

    refitted = 0
    for project in Project.objects.filter(model_versions__status=ModelVersion.Status.DEPLOYED).distinct():
        label = deployed_label(project=project)
        latest = (
            Calibration.objects.filter(project=project, model_version=label, station__isnull=True)
            .order_by("-id")
            .only("id", "parts", "t_pass", "t_fail", "created_at")
            .first()
        )
        if latest is None or not decides_nothing(latest.t_pass, latest.t_fail):
            continue
        needed = parts_needed(project.target_escape_rate, 1.0 - project.calibration_confidence)
        since = fair_verdicts(project=project).filter(created_at__gt=latest.created_at).count()
        if latest.parts + since >= needed:
            calibration_run(project=project, model_version=label)
            refitted += 1
    return refitted


def _recalibrate_drifting(project: Project, label: str) -> int:
    """Refit the drift-time thresholds of each station ``drift_review`` holds whenever people
    have decided more of its parts since its drift began. Until a fit can auto-pass parts
    (t_pass >= 0) every part of the station goes to people; after that the fit goes on growing
    from the project's random sample only (``calibration_parts_drift``), so the thresholds
    keep tightening towards what the drifted line allows, and a fit that finds the models
    worse than thought holds the station again. Managers are told when the models take over.
    Returns how many were refitted."""
    from inspection.selectors import drift_review_signals, drifting_stations

    if project.drift_review == DriftReview.OFF:
        return 0
    refitted = 0
    held = drifting_stations(project_id=project.pk, label=label, signals=drift_review_signals(project))
    for station in project.stations.filter(pk__in=list(held)):
        since = held[station.pk]
        latest = drift_thresholds_for(project=project, model_version=label, station_id=station.pk, since=since)
        decided = Verdict.objects.filter(
            project=project,
            source=Verdict.Source.HUMAN,
            is_final=True,
            part_id__in=Inspection.objects.filter(station=station, received_at__gte=since).values("part_id"),
        )
        deciding = latest is not None and latest.t_pass >= 0
        if latest is not None:
            created = Calibration.objects.filter(pk=latest.pk).values_list("created_at", flat=True).get()
            decided = decided.filter(created_at__gt=created)
        if decided.exists():
            fitted = calibration_run(project=project, model_version=label, station=station, drift_since=since)
            refitted += 1
            if fitted.t_pass >= 0 and not deciding:  # the models decide its parts again: tell its managers
                payload = {
                    "station": station.pk,
                    "name": station.name,
                    "parts": fitted.parts,
                    "t_pass": fitted.t_pass,
                    "t_fail": fitted.t_fail,
                    "expected_review_rate": fitted.expected_review_rate,
                }
                transaction.on_commit(
                    partial(notify_drift, project_id=project.pk, event="drift.calibrated", payload=payload)
                )
    return refitted
