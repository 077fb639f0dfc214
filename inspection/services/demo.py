"""The demo's starting model: generated, labelled parts of the simulator's kind, a classifier
trained on them and deployed, so that `make demo` shows the whole loop (the models deciding,
people deciding what they are unsure of, thresholds fitted as decisions arrive) rather than a
queue of every part."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspection.models import ModelVersion, Project
from inspection.services.datasets import DatasetItem, dataset_import_item
from inspection.services.model_versions import model_version_deploy, training_run, training_start
from workers.synthetic import DEFECT_KINDS, synthetic_part

# The patch-head classifier at the simulator's image size, trained briefly: ~1 minute on 2 cores.
DEMO_CLASSIFIER = {"input_size": [128, 128], "epochs": 12, "patience": 4}
DEMO_GOODS, DEMO_PER_DEFECT = 60, 20
# Targets a demo reaches in minutes (114 decided parts with no escape certify 2 % at 90 %);
# a plant sets its own on the dashboard.
DEMO_TARGETS = {"target_escape_rate": 0.02, "target_false_reject_rate": 0.02, "audit_rate": 0.05}


def demo_model_ensure(
    *,
    project: Project,
    hyperparameters: dict[str, Any] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> ModelVersion | None:
    """Train and deploy the demo classifier unless one serves already. Returns the deployed
    version, or None when there was one. The labelled parts are imported once (serials DEMO-*);
    the parts the simulator posts later are new to the model."""
    if ModelVersion.objects.filter(project=project, kind="classifier", status=ModelVersion.Status.DEPLOYED).exists():
        return None
    Project.objects.filter(pk=project.pk).update(**DEMO_TARGETS)
    with tempfile.TemporaryDirectory(prefix="loupe-demo-") as folder:
        labels: list[str | None] = [None] * DEMO_GOODS + [kind for kind in DEFECT_KINDS for _ in range(DEMO_PER_DEFECT)]
        for index, label in enumerate(labels):
            part = synthetic_part(10_000 + index, size=256, defect=label)
            image, mask = Path(folder) / f"demo-{index}.png", Path(folder) / f"demo-{index}-mask.png"
            part.image.save(image)
            part.mask.save(mask)
            item = DatasetItem(
                serial=f"DEMO-{index:03d}", image_path=image, label=label, mask_path=mask if label else None
            )
            dataset_import_item(project=project, item=item)
    version = training_start(
        project=project, kind="classifier", hyperparameters=hyperparameters or DEMO_CLASSIFIER, enqueue=False
    )
    finished = training_run(model_version_id=version.pk, on_progress=on_progress)
    if finished is None or finished.status != ModelVersion.Status.READY:
        raise RuntimeError(f"The demo classifier did not train: {finished and (finished.error or finished.status)}")
    return model_version_deploy(version=finished)
