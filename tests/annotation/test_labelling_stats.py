"""Labelling progress and agreement between annotators."""

from __future__ import annotations

import pytest

from annotation.agreement import cohen_kappa, fleiss_kappa
from tests.annotation.conftest import Studio, fail_label, put_json
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_cohen_kappa_matches_the_textbook_example() -> None:
    # 50 items: both yes 20, both no 15, A yes / B no 5, A no / B yes 10 -> kappa 0.4
    pairs = [("y", "y")] * 20 + [("n", "n")] * 15 + [("y", "n")] * 5 + [("n", "y")] * 10

    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a")] * 3) is None  # one category: chance agreement is 1


def test_fleiss_kappa_matches_the_wikipedia_example() -> None:
    # Fleiss (1971) as in Wikipedia: 10 subjects, 14 raters, 5 categories -> kappa 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    items = [[category for category, count in enumerate(row) for _ in range(count)] for row in table]

    assert fleiss_kappa(items) == pytest.approx(0.210, abs=0.001)


def test_managers_see_every_annotator_annotators_only_themselves(studio: Studio) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    first, second = studio.task(), studio.task()
    put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{first.pk}/label", fail_label(studio, submit=True))
    studio.client(studio.annotator).post(f"/api/v1/label-tasks/{second.pk}/skip")
    put_json(studio.client(studio.second_annotator), f"/api/v1/label-tasks/{first.pk}/label",
             fail_label(studio, submit=True, name="pit"))  # fmt: skip
    url = f"/api/v1/projects/{studio.project.pk}/labelling"

    managed = studio.client(studio.manager).get(url).json()
    own = studio.client(studio.annotator).get(url).json()

    assert managed["tasks"] == {"open": 1, "labelled": 0, "needs_adjudication": 1, "adjudicated": 0}
    assert [(row["username"], row["submitted"], row["skipped"]) for row in managed["annotators"]] == sorted(
        [(studio.annotator.username, 1, 1), (studio.second_annotator.username, 1, 0)]
    )
    assert all(row["last_at"] for row in managed["annotators"])
    assert [row["username"] for row in own["annotators"]] == [studio.annotator.username]
    assert own["tasks"] == managed["tasks"]


def test_agreement_is_kappa_over_classes_and_iou_over_shapes(studio: Studio) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    scratch, pit = studio.class_id("scratch"), studio.class_id("pit")
    left = [{"type": "box", "x": 0, "y": 0, "width": 40, "height": 40, "defect_class": scratch}]
    shifted = [{"type": "box", "x": 20, "y": 0, "width": 40, "height": 40, "defect_class": scratch}]
    plans = [("scratch", left, "scratch", left), ("pit", [], "pit", []), ("scratch", left, "pit", shifted)]
    for first, first_shapes, second, second_shapes in plans:
        task = studio.task()
        put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label",
                 fail_label(studio, submit=True, name=first, shapes=first_shapes))  # fmt: skip
        put_json(studio.client(studio.second_annotator), f"/api/v1/label-tasks/{task.pk}/label",
                 fail_label(studio, submit=True, name=second, shapes=second_shapes))  # fmt: skip

    agreement = studio.client(studio.manager).get(f"/api/v1/projects/{studio.project.pk}/labelling").json()["agreement"]

    # Ratings (scratch, scratch), (pit, pit), (scratch, pit): po = 2/3, pe = 4/9 -> kappa 0.4.
    expected = cohen_kappa([(scratch, scratch), (pit, pit), (scratch, pit)])
    assert agreement["class_kappa"] == pytest.approx(expected, abs=1e-4) == pytest.approx(0.4, abs=1e-4)
    assert agreement["tasks_compared"] == 3
    # Identical boxes (IoU 1) and boxes overlapping by half their width (IoU 1/3); no shapes: skipped.
    assert agreement["mean_shape_iou"] == pytest.approx((1 + 1 / 3) / 2, abs=0.03)


def test_no_compared_tasks_means_no_agreement_figures(studio: Studio) -> None:
    body = studio.client(studio.annotator).get(f"/api/v1/projects/{studio.project.pk}/labelling").json()

    assert body["agreement"] == {"class_kappa": None, "mean_shape_iou": None, "tasks_compared": 0}
    assert body["annotators"] == []


def test_a_three_annotator_project_uses_fleiss(studio: Studio) -> None:
    studio.project.labels_per_image = 3
    studio.project.save()
    third = make_user(studio.project, role="annotator")
    task = studio.task()
    for user, name in [(studio.annotator, "scratch"), (studio.second_annotator, "scratch"), (third, "pit")]:
        put_json(studio.client(user), f"/api/v1/label-tasks/{task.pk}/label",
                 fail_label(studio, submit=True, name=name, shapes=[]))  # fmt: skip
    other = studio.task()
    for user in (studio.annotator, studio.second_annotator, third):
        put_json(studio.client(user), f"/api/v1/label-tasks/{other.pk}/label",
                 fail_label(studio, submit=True, name="pit", shapes=[]))  # fmt: skip

    agreement = studio.client(studio.manager).get(f"/api/v1/projects/{studio.project.pk}/labelling").json()["agreement"]

    scratch, pit = studio.class_id("scratch"), studio.class_id("pit")
    expected = fleiss_kappa([[("fail", scratch)] * 2 + [("fail", pit)], [("fail", pit)] * 3])
    assert agreement["class_kappa"] == pytest.approx(expected, abs=1e-4)
    assert agreement["tasks_compared"] == 2
