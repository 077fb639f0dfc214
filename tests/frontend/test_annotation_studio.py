"""The annotation studio in a real browser: draw a box, a polygon and a brush mask, save,
reload and see them; accept a pre-label; the click assist outlines a generated defect; a
stale save gets 409 and the work is offered back; class names stay inert text."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.models import Label, LabelTask
from inspection.models import Inspection, Project
from tests.conftest import LiveStack, wait_until
from tests.factories import make_project, make_station, make_user
from tests.frontend.test_review_console import post_part
from workers.ml.polygons import rasterize_polygons

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = "<img src=x onerror=alert(1)>"


def blob_image(size: int = 160) -> tuple[bytes, np.ndarray]:
    """A grey part with one dark elliptical defect; returns the JPEG and the true mask."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:size, 0:size]
    truth = ((xx - 96) / 22.0) ** 2 + ((yy - 70) / 14.0) ** 2 <= 1.0
    gray = np.clip(170 + rng.normal(0, 4, (size, size)) - truth * 110, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(gray).convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), truth


def task_for(live: LiveStack, station: Any, serial: str, image: bytes | None = None) -> LabelTask:
    import requests

    if image is None:
        inspection_id = post_part(live, station, serial)
    else:
        response = requests.post(
            f"{live.base_url}/api/v1/inspections",
            headers=station.auth,
            data={"part_serial": serial},
            files={"image": ("cam.jpg", image, "image/jpeg")},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        inspection_id = int(response.json()["id"])
    wait_until(lambda: LabelTask.objects.filter(inspection_id=inspection_id).exists(), timeout_s=30)
    return LabelTask.objects.get(inspection_id=inspection_id)


def canvas_point(screen: Any, x: float, y: float) -> tuple[float, float]:
    """Screen coordinates of image pixel (x, y) in the studio's current view."""
    view = screen.page.evaluate("() => window.__loupeStudio.view")
    box = screen.page.locator("#studio-canvas").bounding_box()
    return box["x"] + view["x"] + x * view["scale"], box["y"] + view["y"] + y * view["scale"]


def drag(screen: Any, a: tuple[float, float], b: tuple[float, float]) -> None:
    mouse = screen.page.mouse
    mouse.move(*canvas_point(screen, *a))
    mouse.down()
    mouse.move(*canvas_point(screen, *b), steps=8)
    mouse.up()


def open_studio(open_screen: Any, user: Any) -> Any:
    screen = open_screen(user, "annotate")
    screen.page.wait_for_selector("#task-title")
    screen.page.wait_for_function("() => window.__loupeStudio && window.__loupeStudio.view.scale > 0")
    return screen


def test_an_annotator_draws_a_box_a_polygon_and_a_mask_saves_reloads_and_sees_them(
    live: LiveStack, open_screen: Any
) -> None:
    project = make_project(classes=("scratch", "pit", HOSTILE))
    station = make_station(project)
    annotator = make_user(project, role="annotator")
    task = task_for(live, station, "AN-UI-1")
    screen = open_studio(open_screen, annotator)
    page = screen.page

    page.keyboard.press("1")  # class: scratch
    page.keyboard.press("b")
    drag(screen, (10, 10), (40, 30))
    page.keyboard.press("2")  # class: pit
    page.keyboard.press("p")
    for x, y in [(50, 50), (80, 50), (80, 80), (50, 80)]:
        page.mouse.click(*canvas_point(screen, x, y))
    page.keyboard.press("Enter")
    page.keyboard.press("d")
    drag(screen, (20, 70), (30, 90))
    page.wait_for_selector("#save-state >> text=/^Saved, version/", timeout=15_000)
    screen.shot("studio")

    page.reload()
    page.wait_for_function("() => window.__loupeStudio && window.__loupeStudio.doc.shapes.length === 3")
    kinds = page.evaluate("() => window.__loupeStudio.doc.shapes.map((s) => s.type).sort()")
    assert kinds == ["box", "mask", "polygon"]
    label = Label.objects.get(task=task)
    assert sorted(shape["type"] for shape in label.shapes) == ["box", "mask", "polygon"]
    box = next(shape for shape in label.shapes if shape["type"] == "box")
    assert box["x"] == pytest.approx(10, abs=1.5) and box["width"] == pytest.approx(30, abs=2)
    # The class named like an HTML tag is a button label, not markup.
    assert page.locator("button.class-button", has_text=HOSTILE).count() == 1
    assert page.locator("img[src=x]").count() == 0
    assert screen.dialogs == [] and screen.errors == []


def test_an_annotator_accepts_the_models_pre_label(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    station = make_station(project)
    annotator = make_user(project, role="annotator")
    task = task_for(live, station, "AN-PRE-1")
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[10:30, 12:36] = 255
    buffer = io.BytesIO()
    PILImage.fromarray(mask).save(buffer, format="PNG")
    key = default_storage.save(f"masks/prelabel-{task.inspection_id}.png", ContentFile(buffer.getvalue()))
    Inspection.objects.filter(pk=task.inspection_id).update(
        mask_file=key,
        model_version="segmenter#7",
        scores={"predicted_class": "pit", "probabilities": {"good": 0.1, "pit": 0.9}, "decision": {"action": "fail"}},
    )
    screen = open_studio(open_screen, annotator)
    screen.page.wait_for_selector("#suggestions >> text=segmenter#7")

    screen.page.keyboard.press("y")
    screen.page.wait_for_selector("#save-state >> text=/^Saved, version/", timeout=15_000)

    label = Label.objects.get(task=task)
    [polygon] = [shape for shape in label.shapes if shape["type"] == "polygon"]
    assert polygon["defect_class"] == project.defect_classes.get(name="pit").pk
    assert label.defect_class_id == project.defect_classes.get(name="pit").pk


def test_the_click_assist_outlines_a_generated_defect(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    station = make_station(project)
    annotator = make_user(project, role="annotator")
    image, truth = blob_image()
    task = task_for(live, station, "AN-ASSIST-1", image)
    screen = open_studio(open_screen, annotator)
    page = screen.page

    page.keyboard.press("a")
    drag(screen, (64, 48), (128, 92))  # a loose box around the dark blob
    page.wait_for_selector("#suggestions")
    page.keyboard.press("y")
    page.wait_for_selector("#save-state >> text=/^Saved, version/", timeout=15_000)

    label = Label.objects.get(task=task)
    polygons = [shape["points"] for shape in label.shapes if shape["type"] == "polygon"]
    assert polygons
    drawn = rasterize_polygons([[tuple(p) for p in points] for points in polygons], truth.shape) > 0
    iou = (drawn & truth).sum() / (drawn | truth).sum()
    assert iou > 0.7, iou


def test_a_stale_save_gets_409_and_the_work_is_offered_back_to_merge(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    station = make_station(project)
    first, second = make_user(project, role="annotator"), make_user(project, role="annotator")
    task_for(live, station, "AN-STALE-1")
    ana = open_studio(open_screen, first)
    ben = open_studio(open_screen, second)  # the same image: the queue reserves nothing

    ana.page.keyboard.press("b")
    drag(ana, (5, 5), (30, 30))
    ana.page.wait_for_selector("#save-state >> text=/^Saved, version/", timeout=15_000)
    ben.page.keyboard.press("b")
    drag(ben, (50, 50), (90, 90))

    # Ben's autosave was based on no label at all: the server says someone saved first.
    ben.page.wait_for_selector("#conflict:not([hidden])", timeout=15_000)
    ben.shot("studio-conflict")
    assert "Your work is kept" in ben.page.inner_text("#conflict")
    ben.page.click("#conflict-merge")
    ben.page.wait_for_selector("#save-state >> text=/^Saved, version/", timeout=15_000)

    label = Label.objects.get(task__inspection__part__serial="AN-STALE-1")
    boxes = sorted(shape["x"] for shape in label.shapes if shape["type"] == "box")
    assert len(boxes) == 2 and boxes[0] == pytest.approx(5, abs=1.5) and boxes[1] == pytest.approx(50, abs=1.5)
    assert ben.dialogs == [] and ben.errors == []


def test_a_manager_settles_a_disagreement_from_the_studio(live: LiveStack, open_screen: Any) -> None:
    from rest_framework.test import APIClient

    from annotation.models import Annotation

    project = make_project()
    project.labels_per_image = 2
    project.save(update_fields=["labels_per_image"])
    station = make_station(project)
    first, second = make_user(project, role="annotator"), make_user(project, role="annotator")
    manager = make_user(project, role="manager")
    task = task_for(live, station, "AN-ADJ-1")
    for user, name in ((first, "scratch"), (second, "pit")):
        client = APIClient()
        client.force_authenticate(user)
        body = {"version": 0, "outcome": "fail", "defect_class": project.defect_classes.get(name=name).pk,
                "shapes": [], "submit": True}  # fmt: skip
        assert client.put(f"/api/v1/label-tasks/{task.pk}/label", body, format="json").status_code == 200
    task.refresh_from_db()
    assert task.status == "needs_adjudication"

    screen = open_screen(manager, "annotate")
    page = screen.page
    page.wait_for_selector("#next-disputed")
    page.click("#next-disputed")
    page.wait_for_selector(f"#adjudication button[data-author='{second.username}']")
    page.click(f"#adjudication button[data-author='{second.username}']")
    page.click("#adjudicate")

    wait_until(lambda: LabelTask.objects.get(pk=task.pk).status == "adjudicated", timeout_s=15)
    training = Annotation.objects.get(label_task=task)
    assert training.defect_class_id == project.defect_classes.get(name="pit").pk
    assert screen.errors == []


def test_a_manager_configures_classes_and_labelling(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "settings")
    page = screen.page
    page.wait_for_selector("#new-class")

    page.fill("#new-class-name", HOSTILE)
    page.fill("#new-class-hotkey", "7")
    page.click("#new-class button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#classes tr').length === 4")
    first = project.defect_classes.order_by("id").first()
    assert first is not None
    row = page.locator(f"#classes tr[data-defect-class='{first.pk}']")
    row.locator("input[type=color]").fill("#00aa55")
    row.locator("button").click()
    page.fill("#labels-per-image", "3")
    page.select_option("#training-labels", "adjudicated")
    page.click("#labelling-settings button[type=submit]")
    # Both saves are requests of their own: wait for them, not for a fixed time (500 ms was
    # not always enough with the whole suite running on 2 cores).
    wait_until(lambda: project.defect_classes.filter(pk=first.pk, color="#00aa55").exists(), timeout_s=10)
    wait_until(lambda: Project.objects.get(pk=project.pk).labels_per_image == 3, timeout_s=10)
    screen.shot("settings")

    created = project.defect_classes.get(hotkey=7)
    assert created.name == HOSTILE
    first.refresh_from_db()
    assert first.color == "#00aa55"
    project.refresh_from_db()
    assert (project.labels_per_image, project.training_labels) == (3, "adjudicated")

    page.fill("#image-retention-days", "100000")  # the browser lets it through; the server says why not
    page.click("#retention-settings button[type=submit]")
    page.wait_for_function("() => document.querySelector('#settings-message').textContent.includes('retention')")
    assert "36500" in (page.text_content("#settings-message") or "")
    page.fill("#image-retention-days", "90")
    page.click("#retention-settings button[type=submit]")
    wait_until(lambda: Project.objects.get(pk=project.pk).image_retention_days == 90, timeout_s=10)
    assert page.text_content("#settings-message") == ""
    page.fill("#image-retention-days", "")
    page.click("#retention-settings button[type=submit]")
    wait_until(lambda: Project.objects.get(pk=project.pk).image_retention_days is None, timeout_s=10)
    assert page.locator("img[src=x]").count() == 0 and screen.dialogs == []


def canvas_brightness(screen: Any, x: float, y: float) -> float:
    """Mean RGB of the studio canvas at image pixel (x, y)."""
    view = screen.page.evaluate("() => window.__loupeStudio.view")
    script = """([x, y]) => {
        const canvas = document.querySelector('#studio-canvas');
        const ratio = window.devicePixelRatio || 1;
        const [r, g, b] = canvas.getContext('2d').getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data;
        return (r + g + b) / 3;
    }"""
    return float(screen.page.evaluate(script, [view["x"] + x * view["scale"], view["y"] + y * view["scale"]]))


def test_the_studio_dims_the_image_outside_the_stations_inspection_region_and_in_its_zones(
    live: LiveStack, open_screen: Any
) -> None:
    from inspection.services import station_set_region

    project = make_project()
    station = make_station(project)
    station_set_region(
        station=station.station,
        region={"x": 0.5, "y": 0.0, "width": 0.5, "height": 1.0},
        ignore_zones=[{"x": 0.75, "y": 0.0, "width": 0.25, "height": 0.25}],
    )
    plain = PILImage.new("RGB", (160, 160), (170, 170, 170))
    buffer = io.BytesIO()
    plain.save(buffer, format="JPEG", quality=95)
    task_for(live, station, "SN-REGION-1", image=buffer.getvalue())

    screen = open_studio(open_screen, make_user(project, role="annotator"))
    screen.page.wait_for_function("() => window.__loupeStudio.frameTimes.length > 0")
    wait_until(lambda: canvas_brightness(screen, 120, 80) > 150, timeout_s=10, what="the image drawn")

    inside, outside = canvas_brightness(screen, 120, 80), canvas_brightness(screen, 40, 80)
    assert outside < 0.7 * inside  # the part the models never see is dimmed
    assert canvas_brightness(screen, 140, 20) < 0.7 * inside  # and so is the ignore zone
    assert "inspection region" in (screen.page.text_content("#region-hint") or "")
    screen.shot("annotate-region")
    assert screen.errors == []
