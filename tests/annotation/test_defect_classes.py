"""Managers keep the project's defect classes (name, colour, hotkey) and its labelling
settings; every change is audited and scoped to their own projects."""

from __future__ import annotations

from typing import Any

import pytest

from inspection.models import AuditEvent, DefectClass
from tests.annotation.conftest import Studio, post_json

pytestmark = pytest.mark.django_db


def test_a_manager_adds_a_class_and_it_is_audited(studio: Studio) -> None:
    body = {"project": studio.project.pk, "name": "dent", "color": "#A0B1C2", "hotkey": 4}

    response = post_json(studio.client(studio.manager), "/api/v1/defect-classes", body)

    assert response.status_code == 201
    created = response.json()
    assert {key: created[key] for key in ("project", "name", "color", "hotkey")} == {
        "project": studio.project.pk, "name": "dent", "color": "#a0b1c2", "hotkey": 4,
    }  # fmt: skip
    event = AuditEvent.objects.get(action="defect_class.created")
    assert event.object_id == str(created["id"]) and event.actor == studio.manager


def test_a_hostile_name_is_stored_as_text(studio: Studio) -> None:
    name = '<img src=x onerror="alert(1)">'

    response = post_json(studio.client(studio.manager), "/api/v1/defect-classes",
                         {"project": studio.project.pk, "name": name})  # fmt: skip

    assert response.status_code == 201 and response.json()["name"] == name
    assert DefectClass.objects.get(pk=response.json()["id"]).name == name


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "scratch"}, 409),
        ({"name": "dent", "hotkey": 1}, 409),
        ({"name": "dent", "hotkey": 10}, 400),
        ({"name": "dent", "hotkey": 0}, 400),
        ({"name": "dent", "color": "red"}, 400),
        ({"name": "dent", "color": "#12345g"}, 400),
        ({"name": ""}, 400),
        ({"name": "   "}, 400),
        ({"name": "x" * 61}, 400),
        ({"name": "dent", "is_default": True}, 400),
    ],
    ids=["duplicate-name", "duplicate-hotkey", "hotkey-10", "hotkey-0", "color-word", "color-not-hex", "empty",
         "blank", "too-long", "unknown-field"],
)  # fmt: skip
def test_bad_classes_are_refused_and_nothing_is_created(studio: Studio, body: dict[str, Any], status: int) -> None:
    before = DefectClass.objects.count()

    response = post_json(studio.client(studio.manager), "/api/v1/defect-classes", {"project": studio.project.pk,
                                                                                  **body})  # fmt: skip

    assert response.status_code == status
    assert DefectClass.objects.count() == before and not AuditEvent.objects.filter(action__startswith="defect").exists()


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_managers_change_classes(studio: Studio, role: str) -> None:
    user = studio.annotator if role == "annotator" else studio.reviewer
    scratch = studio.class_id("scratch")

    created = post_json(studio.client(user), "/api/v1/defect-classes", {"project": studio.project.pk, "name": "x"})
    patched = studio.client(user).patch(f"/api/v1/defect-classes/{scratch}", {"name": "y"}, format="json")

    assert (created.status_code, patched.status_code) == (403, 403)
    assert DefectClass.objects.get(pk=scratch).name == "scratch"


def test_another_projects_classes_are_404(studio: Studio, outsider: Any) -> None:
    scratch = studio.class_id("scratch")

    created = post_json(outsider, "/api/v1/defect-classes", {"project": studio.project.pk, "name": "x"})
    patched = outsider.patch(f"/api/v1/defect-classes/{scratch}", {"name": "y"}, format="json")
    read = outsider.get(f"/api/v1/defect-classes/{scratch}")

    assert (created.status_code, patched.status_code, read.status_code) == (404, 404, 404)


def test_a_manager_renames_recolours_and_rekeys_a_class_audited(studio: Studio) -> None:
    scratch = studio.class_id("scratch")

    response = studio.client(studio.manager).patch(
        f"/api/v1/defect-classes/{scratch}", {"name": "long scratch", "color": "#000000", "hotkey": None},
        format="json",
    )  # fmt: skip

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["color"], response.json()["hotkey"]) == (
        "long scratch", "#000000", None,
    )  # fmt: skip
    event = AuditEvent.objects.get(action="defect_class.updated")
    assert event.before == {"name": "scratch", "color": "#e4572e", "hotkey": 1}


@pytest.mark.parametrize("body", [{"project": 999}, {"hotkey": 2}, {"name": "pit"}], ids=["move", "hotkey", "name"])
def test_a_patch_cannot_move_a_class_or_take_anothers_name_or_hotkey(studio: Studio, body: dict[str, Any]) -> None:
    scratch = studio.class_id("scratch")

    response = studio.client(studio.manager).patch(f"/api/v1/defect-classes/{scratch}", body, format="json")

    assert response.status_code in {400, 409}
    refreshed = DefectClass.objects.get(pk=scratch)
    assert (refreshed.project_id, refreshed.name, refreshed.hotkey) == (studio.project.pk, "scratch", 1)


def test_managers_set_labels_per_image_and_training_labels(studio: Studio) -> None:
    response = studio.client(studio.manager).patch(
        f"/api/v1/projects/{studio.project.pk}", {"labels_per_image": 3, "training_labels": "adjudicated"},
        format="json",
    )  # fmt: skip

    assert response.status_code == 200
    assert (response.json()["labels_per_image"], response.json()["training_labels"]) == (3, "adjudicated")
    assert AuditEvent.objects.get(action="project.updated").after == {"labels_per_image": 3,
                                                                       "training_labels": "adjudicated"}  # fmt: skip


@pytest.mark.parametrize("body", [{"labels_per_image": 0}, {"labels_per_image": 6}, {"training_labels": "all"}])
def test_labelling_settings_out_of_range_are_refused(studio: Studio, body: dict[str, Any]) -> None:
    response = studio.client(studio.manager).patch(f"/api/v1/projects/{studio.project.pk}", body, format="json")

    assert response.status_code == 400
    studio.project.refresh_from_db()
    assert (studio.project.labels_per_image, studio.project.training_labels) == (1, "single")


def test_an_annotator_cannot_change_labelling_settings(studio: Studio) -> None:
    response = studio.client(studio.annotator).patch(
        f"/api/v1/projects/{studio.project.pk}", {"labels_per_image": 2}, format="json"
    )

    assert response.status_code == 403
