"""A station's inspection region: project admins set the part of the camera's frame the
models look at; inference and training cut every image of that station to it, and what the
models draw is stored in the whole image's coordinates."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image as PILImage
from rest_framework.test import APIClient

from annotation.models import Annotation
from inspection.models import AuditEvent, Inspection, ModelVersion, Project, Station
from inspection.services import station_set_region
from inspection.services.model_runs import inspection_run
from inspection.services.model_versions import training_run, training_start
from tests.factories import TINY, make_project, make_station, make_user, upload
from workers.synthetic import synthetic_part

pytestmark = pytest.mark.django_db

LEFT_HALF = {"x": 0.0, "y": 0.0, "width": 0.5, "height": 1.0}
RIGHT_HALF = {"x": 0.5, "y": 0.0, "width": 0.5, "height": 1.0}
TOP_CORNER = {"x": 0.0, "y": 0.0, "width": 0.25, "height": 0.25}


def admin_client(project: Project, role: str = "admin") -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user(project, role=role))
    return client


def png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def good_and_defect_side_by_side() -> tuple[PILImage.Image, PILImage.Image, PILImage.Image]:
    """A 192x96 frame: a good part on the left, a part with a pit on the right."""
    good = synthetic_part(3, size=96, defect=None).image
    bad = synthetic_part(5, size=96, defect="pit").image
    frame = PILImage.new("RGB", (192, 96))
    frame.paste(good, (0, 0))
    frame.paste(bad, (96, 0))
    return frame, good, bad


def post_and_run(station: Any, image: PILImage.Image, serial: str) -> Inspection:
    posted: Any = APIClient().post(
        "/api/v1/inspections",
        {"part_serial": serial, "image": upload(png(image), name="part.png", content_type="image/png")},
        format="multipart",
        headers=station.auth,
    )
    assert posted.status_code == 202, posted.content
    inspection = inspection_run(inspection_id=posted.json()["id"])
    assert inspection is not None and inspection.status == "done"
    return inspection


def stored_map(key: str) -> np.ndarray:
    with default_storage.open(key, "rb") as stored:
        return np.asarray(PILImage.open(io.BytesIO(stored.read())).convert("L"))


def test_a_project_admin_sets_and_clears_a_stations_region_and_each_change_is_audited() -> None:
    project = make_project()
    camera = make_station(project)
    client = admin_client(project)

    set_response: Any = client.patch(
        f"/api/v1/stations/{camera.station.pk}", {"inspection_region": LEFT_HALF}, format="json"
    )
    shown: Any = client.get(f"/api/v1/stations/{camera.station.pk}")
    cleared: Any = client.patch(f"/api/v1/stations/{camera.station.pk}", {"inspection_region": None}, format="json")

    assert set_response.status_code == 200 and set_response.json()["inspection_region"] == LEFT_HALF
    assert shown.json()["inspection_region"] == LEFT_HALF
    assert cleared.status_code == 200 and cleared.json()["inspection_region"] is None
    zoned: Any = client.patch(
        f"/api/v1/stations/{camera.station.pk}", {"ignore_zones": [TOP_CORNER, RIGHT_HALF]}, format="json"
    )

    assert zoned.status_code == 200 and zoned.json()["ignore_zones"] == [TOP_CORNER, RIGHT_HALF]
    assert zoned.json()["inspection_region"] is None  # left as it was
    events = list(AuditEvent.objects.filter(action="station.region_changed").order_by("id"))
    assert [(e.before["inspection_region"], e.after["inspection_region"]) for e in events] == [
        (None, LEFT_HALF),
        (LEFT_HALF, None),
        (None, None),
    ]
    assert (events[2].before["ignore_zones"], events[2].after["ignore_zones"]) == ([], [TOP_CORNER, RIGHT_HALF])
    assert events[0].actor_label.startswith("user")


@pytest.mark.parametrize("role", ["annotator", "reviewer", "manager"])
def test_only_project_admins_set_a_region(role: str) -> None:
    project = make_project()
    camera = make_station(project)

    response = admin_client(project, role).patch(
        f"/api/v1/stations/{camera.station.pk}", {"inspection_region": LEFT_HALF}, format="json"
    )

    assert response.status_code == 403
    assert Station.objects.get(pk=camera.station.pk).inspection_region is None


def test_another_projects_station_is_not_found() -> None:
    theirs = make_station(make_project())
    client = admin_client(make_project())

    assert client.get(f"/api/v1/stations/{theirs.station.pk}").status_code == 404
    response = client.patch(f"/api/v1/stations/{theirs.station.pk}", {"inspection_region": LEFT_HALF}, format="json")

    assert response.status_code == 404
    assert Station.objects.get(pk=theirs.station.pk).inspection_region is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"inspection_region": {"x": 0.6, "y": 0, "width": 0.5, "height": 1}}, "inside the image"),
        ({"inspection_region": {"x": 0, "y": 0, "width": 0.001, "height": 1}}, "at least 0.02"),
        ({"inspection_region": {"x": "a", "y": 0, "width": 0.5, "height": 1}}, "finite number"),
        ({"inspection_region": {"x": 0, "y": 0, "width": 0.5}}, "missing: height"),
        ({"inspection_region": [0, 0, 1]}, "a region is"),
        ({"inspection_region": LEFT_HALF, "name": "renamed"}, "name"),
        ({}, "inspection_region"),
        ({"ignore_zones": {"x": 0, "y": 0, "width": 0.5, "height": 0.5}}, "a list"),
        (
            {"ignore_zones": [TOP_CORNER, {"x": 0.9, "y": 0, "width": 0.5, "height": 0.5}]},
            "zone 2: the region must lie",
        ),
        ({"ignore_zones": [TOP_CORNER] * 17}, "at most 16"),
    ],
)
def test_a_bad_region_is_a_400_with_the_reason_and_changes_nothing(body: dict[str, Any], reason: str) -> None:
    project = make_project()
    camera = make_station(project)
    station_set_region(station=camera.station, region=RIGHT_HALF)
    before = AuditEvent.objects.count()

    response: Any = admin_client(project).patch(f"/api/v1/stations/{camera.station.pk}", body, format="json")

    assert response.status_code == 400
    assert reason in str(response.json())
    assert Station.objects.get(pk=camera.station.pk).inspection_region == RIGHT_HALF
    assert AuditEvent.objects.count() == before


def test_the_models_see_only_the_region_and_the_heatmap_covers_the_whole_frame(
    register: Callable[..., ModelVersion],
) -> None:
    project = make_project()
    for kind in ("classifier", "anomaly"):
        register(project, kind, status=ModelVersion.Status.DEPLOYED)
    framed = make_station(project, "Framed camera")
    plain = make_station(project, "Plain camera")
    station_set_region(station=framed.station, region=LEFT_HALF)
    frame, good, _ = good_and_defect_side_by_side()

    in_frame = post_and_run(framed, frame, "F-1")
    alone = post_and_run(plain, good, "G-1")

    # The good left half scores exactly as the good part on its own: the pit beside it is unseen.
    for score in ("anomaly_score", "defect_probability"):
        assert in_frame.scores[score] == pytest.approx(alone.scores[score], abs=1e-5)
    assert in_frame.scores["region_box"] == [0, 0, 96, 96]
    assert "region_box" not in alone.scores
    heat = stored_map(in_frame.heatmap_file)
    assert heat.shape == (96, 192)
    assert heat[:, 96:].max() == 0  # outside the region nothing was looked at
    assert np.array_equal(heat[:, :96], stored_map(alone.heatmap_file))


def test_the_segmenters_mask_of_the_region_is_stored_in_the_whole_frames_coordinates(
    register: Callable[..., ModelVersion],
) -> None:
    project = make_project()
    register(project, "segmenter", status=ModelVersion.Status.DEPLOYED)
    framed = make_station(project, "Framed camera")
    plain = make_station(project, "Plain camera")
    station_set_region(station=framed.station, region=RIGHT_HALF)
    frame, _, bad = good_and_defect_side_by_side()

    in_frame = post_and_run(framed, frame, "F-2")
    alone = post_and_run(plain, bad, "B-2")

    mask = stored_map(in_frame.mask_file)
    assert mask.shape == (96, 192)
    assert mask[:, :96].max() == 0
    assert np.array_equal(mask[:, 96:], stored_map(alone.mask_file))
    assert in_frame.scores["defect_pixels"] == alone.scores["defect_pixels"] > 0


def test_training_cuts_each_image_to_the_region_its_station_had_when_training_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import workers.ml.training

    project = make_project()
    framed = make_station(project, "Framed camera")
    plain = make_station(project, "Plain camera")
    station_set_region(station=framed.station, region=LEFT_HALF, ignore_zones=[TOP_CORNER])
    parts = [(framed, index) for index in range(5)] + [(plain, index) for index in range(5, 10)]
    for camera, index in parts:
        part = synthetic_part(index, size=96, defect=None).image
        posted: Any = APIClient().post(
            "/api/v1/inspections",
            {"part_serial": f"T-{index}", "image": upload(png(part), name="p.png", content_type="image/png")},
            format="multipart",
            headers=camera.auth,
        )
        inspection = Inspection.objects.get(pk=posted.json()["id"])
        Annotation.objects.create(
            project=project, part=inspection.part, image=inspection.image, source="annotator", outcome="pass"
        )
    version = training_start(project=project, kind="anomaly", hyperparameters=TINY["anomaly"], enqueue=False)
    station_set_region(station=framed.station, region=RIGHT_HALF)  # later changes do not rewrite the job
    seen: list[Any] = []
    real_train = workers.ml.training.train

    def spy(**kwargs: Any) -> Any:
        seen.extend(kwargs["samples"])
        return real_train(**kwargs)

    monkeypatch.setattr(workers.ml.training, "train", spy)

    trained = training_run(model_version_id=version.pk)

    framed_images = {str(i.image_id) for i in Inspection.objects.filter(station=framed.station)}
    assert set(version.training_data["views"]) == framed_images
    # What each station looked like to this model, for routing to check against later.
    framed_view = {"region": LEFT_HALF, "ignore_zones": [TOP_CORNER]}
    assert version.station_regions == {str(framed.station.pk): framed_view, str(plain.station.pk): None}
    assert trained is not None and trained.status == ModelVersion.Status.READY
    regions = sorted(sample.region for sample in seen if sample.region is not None)
    assert regions == [(0.0, 0.0, 0.5, 1.0)] * 5
    assert [s.ignore_zones for s in seen if s.region is not None] == [((0.0, 0.0, 0.25, 0.25),)] * 5
    assert all(sample.region is None and sample.ignore_zones == () for sample in seen if sample.region is None)
    assert sum(sample.region is None for sample in seen) == 5


def test_predict_cuts_each_file_to_the_stations_region_and_writes_the_mask_at_full_size(
    register: Callable[..., ModelVersion], tmp_path: Path
) -> None:
    project = make_project()
    version = register(project, "segmenter")
    framed = make_station(project, "Framed camera")
    station_set_region(station=framed.station, region=LEFT_HALF)
    frame, good, bad = good_and_defect_side_by_side()
    frame.save(tmp_path / "frame.png")
    good.save(tmp_path / "good.png")
    bad.save(tmp_path / "bad.png")

    def mask_of(*args: str) -> np.ndarray:
        out = io.StringIO()
        call_command("predict", "--model", str(version.pk), "--out", str(tmp_path / "out"), *args, stdout=out)
        row = json.loads(out.getvalue().splitlines()[0])
        return np.asarray(PILImage.open(row["mask"]))

    left = mask_of("--station", str(framed.station.pk), str(tmp_path / "frame.png"))
    right = mask_of("--region", "0.5,0,0.5,1", str(tmp_path / "frame.png"))
    good_alone = mask_of(str(tmp_path / "good.png"))
    bad_alone = mask_of(str(tmp_path / "bad.png"))

    assert left.shape == right.shape == (96, 192)
    # What the segmenter says inside each region is what it says of that part alone; outside, nothing.
    assert left[:, 96:].max() == 0 and np.array_equal(left[:, :96], good_alone)
    assert right[:, :96].max() == 0 and np.array_equal(right[:, 96:], bad_alone) and bad_alone.max() == 255
    with pytest.raises(CommandError, match="inside the image"):
        call_command("predict", "--model", str(version.pk), "--region", "0.6,0,0.5,1", str(tmp_path / "bad.png"))
    other = make_station(make_project())
    with pytest.raises(CommandError, match="No station"):
        call_command(
            "predict", "--model", str(version.pk), "--station", str(other.station.pk), str(tmp_path / "bad.png")
        )


def test_parts_from_a_station_whose_region_changed_since_training_go_to_people_until_retrained(
    register: Callable[..., ModelVersion],
) -> None:
    from review.models import ReviewItem

    project = make_project()
    # Models trained on whole frames, sure enough to decide every part alone.
    version = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=1.0, auto_fail_threshold=2.0, audit_rate=0.0)
    framed = make_station(project, "Framed camera")
    plain = make_station(project, "Plain camera")
    _, good, _ = good_and_defect_side_by_side()

    station_set_region(station=framed.station, region=LEFT_HALF)
    from_plain = post_and_run(plain, good, "P-1")
    from_framed = post_and_run(framed, good, "F-1")

    assert not ReviewItem.objects.filter(part=from_plain.part).exists()  # decided by the models
    assert from_plain.part.verdicts.get(is_final=True).outcome == "pass"
    assert ReviewItem.objects.get(part=from_framed.part).reason == "region_changed"
    assert from_framed.scores["region_untrained"] is True

    # A model trained with the station's current region decides its parts again.
    framed_view = {"region": LEFT_HALF, "ignore_zones": []}
    ModelVersion.objects.filter(pk=version.pk).update(station_regions={str(framed.station.pk): framed_view})
    retrained = post_and_run(framed, good, "F-2")

    assert not ReviewItem.objects.filter(part=retrained.part).exists()
    assert "region_untrained" not in retrained.scores
    # Ignore zones are part of the view: adding one to the plain camera sends its parts to people.
    station_set_region(station=plain.station, ignore_zones=[TOP_CORNER])
    zoned = post_and_run(plain, good, "P-2")
    assert ReviewItem.objects.get(part=zoned.part).reason == "region_changed"


def test_the_django_admin_shows_a_stations_region_but_cannot_change_it() -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    camera = make_station(make_project())
    station_set_region(station=camera.station, region=LEFT_HALF)
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-admin-test")
    client = Client()
    client.force_login(superuser)
    url = f"/admin/inspection/station/{camera.station.pk}/change/"

    page = client.get(url)
    client.post(
        url,
        {"project": camera.station.project_id, "line": camera.station.line_id, "name": "Renamed", "is_active": "on",
         "inspection_region": '{"x": 0.9, "y": 0.9, "width": 0.9, "height": 0.9}'},
    )  # fmt: skip

    assert page.status_code == 200 and 'name="inspection_region"' not in page.content.decode()
    station = Station.objects.get(pk=camera.station.pk)
    assert station.name == "Renamed" and station.inspection_region == LEFT_HALF


def test_the_models_see_ignore_zones_blanked_and_draw_nothing_inside_them(
    register: Callable[..., ModelVersion],
) -> None:
    from workers.ml.regions import blank_zones, parse_zones

    project = make_project()
    for kind in ("anomaly", "segmenter"):
        register(project, kind, status=ModelVersion.Status.DEPLOYED)
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=-1.0, auto_fail_threshold=2.0)
    zoned = make_station(project, "Zoned camera")
    plain = make_station(project, "Plain camera")
    station_set_region(station=zoned.station, ignore_zones=[RIGHT_HALF])  # the pit's half: a date code, say
    frame, _, _ = good_and_defect_side_by_side()
    blanked = PILImage.fromarray(blank_zones(np.asarray(frame), parse_zones([RIGHT_HALF])))

    in_zoned = post_and_run(zoned, frame, "Z-1")
    as_blanked = post_and_run(plain, blanked, "B-1")

    # The zoned camera's part scores as the same frame with the zone blanked, seen whole.
    assert in_zoned.scores["anomaly_score"] == pytest.approx(as_blanked.scores["anomaly_score"], abs=1e-5)
    assert in_zoned.scores["ignore_zones"] == [RIGHT_HALF]
    assert np.asarray(blanked)[:, 96:].std() < 1.0  # the zone is one plain colour
    for key in (in_zoned.heatmap_file, in_zoned.mask_file):
        drawn = stored_map(key)
        assert drawn.shape == (96, 192) and drawn[:, 96:].max() == 0


def test_a_region_of_the_whole_frame_is_stored_as_no_region() -> None:
    camera = make_station(make_project())

    station = station_set_region(station=camera.station, region={"x": 0, "y": 0, "width": 1, "height": 1})

    assert station.inspection_region is None and station.view() is None
    assert not AuditEvent.objects.filter(action="station.region_changed").exists()  # nothing changed
