"""The training view in a real browser: a manager starts a job, watches the curve grow
live over the websocket, reads the model's metrics and deploys it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inspection.models import ModelVersion
from tests.conftest import LiveStack, wait_until
from tests.factories import make_project, make_user
from tests.inspection.test_model_serving_live import labelled_goods

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_manager_starts_training_watches_progress_live_and_deploys_the_model(
    live: LiveStack, open_screen: Any, tmp_path: Path
) -> None:
    project = make_project()
    labelled_goods(project, tmp_path, 12)
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "training")
    page = screen.page
    page.wait_for_selector("#live-status[data-state=live]")

    page.select_option("#train-kind", "classifier")
    page.fill("#train-epochs", "4")
    page.fill("#train-size", "64")
    page.check("#train-int8")
    page.click("#train-start")

    # Progress arrives over the websocket: the text and the curve update without a reload.
    page.wait_for_selector("#progress-text >> text=/epoch [1-4]\\/4/", timeout=120_000)
    page.wait_for_selector("#training-curve canvas")
    version = ModelVersion.objects.get(project=project)
    wait_until(lambda: ModelVersion.objects.get(pk=version.pk).status != "training", timeout_s=180)
    version.refresh_from_db()
    assert version.status == "ready", (version.status, version.error)
    page.wait_for_selector(f"tr[data-version='{version.pk}'][data-status=ready]", timeout=20_000)
    page.wait_for_selector("#confusion")
    screen.shot("training")

    labels = page.locator("#confusion thead th").all_inner_texts()
    assert labels == ["good", "pit"] or set(labels) >= {"pit"}
    assert page.locator("#metrics").inner_text().count("accuracy") >= 1

    # The quantized model is offered beside it, with what it costs in accuracy.
    offer = page.locator(f"tr[data-version='{version.pk}'] button[data-action=deploy-int8]").get_attribute("title")
    assert offer is not None and "validation accuracy" in offer

    page.click(f"tr[data-version='{version.pk}'] button[data-action=deploy]")
    page.wait_for_selector(f"tr[data-version='{version.pk}'][data-status=deployed]")
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.DEPLOYED and version.precision == "fp32"
    assert screen.errors == [] and screen.dialogs == []


def test_a_models_example_errors_show_the_labelled_images(live: LiveStack, open_screen: Any, tmp_path: Path) -> None:
    from annotation.models import Annotation

    project = make_project()
    labelled_goods(project, tmp_path, 4)
    pit = Annotation.objects.filter(project=project, defect_class__name="pit").first()
    assert pit is not None
    version = ModelVersion.objects.create(
        project=project,
        kind="classifier",
        status="ready",
        metrics={
            "accuracy": 0.75,
            "example_errors": [{"annotation": pit.pk, "truth": "pit", "predicted": "good", "p_defect": 0.12}],
        },
    )
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "training")
    page = screen.page
    page.wait_for_selector(f"tr[data-version='{version.pk}']")

    page.wait_for_selector("#example-errors img")
    page.wait_for_function("() => document.querySelector('#example-errors img').naturalWidth > 0")
    assert "pit → good" in page.inner_text("#example-errors")
    screen.shot("training-errors")


def test_a_model_fitted_on_too_few_parts_warns_the_manager(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    warning = "Fitted on only 9 good parts. A goods-only detector needs a few hundred."
    version = ModelVersion.objects.create(
        project=project,
        kind="anomaly",
        status="ready",
        metrics={"val_image_auroc": 0.8, "data_warnings": [warning]},
    )
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "training")
    page = screen.page

    page.wait_for_selector(f"tr[data-version='{version.pk}']")
    page.wait_for_selector("#data-warnings li")
    assert page.inner_text("#data-warnings") == warning
    assert screen.errors == []


def test_a_version_found_worse_than_what_serves_is_deployed_only_when_the_manager_insists(
    live: LiveStack, open_screen: Any, register: Any
) -> None:
    project = make_project()
    serving = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    candidate = register(project, "classifier")
    figures = {"escape_rate": 0.004, "false_reject_rate": 0.0, "t_pass": 0.2, "t_fail": 0.9, "auroc": 0.97}
    ModelVersion.objects.filter(pk=candidate.pk).update(
        comparison={
            "status": "done", "verdict": "worse", "serving": serving.label, "candidate": candidate.label,
            "parts": 480, "defective": 40, "target_escape_rate": 0.005,
            "candidate_figures": {**figures, "review_rate": 0.31}, "serving_figures": {**figures, "review_rate": 0.12},
        }
    )  # fmt: skip
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "training")
    page = screen.page
    page.wait_for_selector("#comparison >> text=Worse than the models serving")
    assert "31 % of parts to people against 12 %" in page.inner_text("#comparison")

    page.click(f"tr[data-version='{candidate.pk}'] button[data-action=deploy]")
    page.wait_for_selector("#training-message >> text=Deploy with force")
    refused_then = ModelVersion.objects.get(pk=serving.pk).status
    page.click("#deploy-anyway")
    page.wait_for_selector(f"tr[data-version='{candidate.pk}'][data-status=deployed]")

    assert refused_then == ModelVersion.Status.DEPLOYED
    assert ModelVersion.objects.get(pk=serving.pk).status == ModelVersion.Status.RETIRED
    assert screen.errors == [] and screen.dialogs == []
