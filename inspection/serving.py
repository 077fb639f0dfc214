"""Model serving inside an inference worker process.

ONNX Runtime sessions are created once per process and version. Which versions are
deployed is read from the database for every part (one indexed query), so a deployment
takes effect on the next part without a restart; the session of the version it replaced
is dropped then.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings

from inspection.models import ModelVersion, Precision

if TYPE_CHECKING:
    from workers.ml.inference import Inferencer

_lock = threading.Lock()
# (project id, kind) -> ((version id, precision), its loaded inferencer)
_loaded: dict[tuple[int, str], tuple[tuple[int, str], Inferencer]] = {}


# What serving reads of a deployed version. Not the training data (every image and label id:
# hundreds of kB of JSON in a mature project), metrics or progress history: read for every
# part, those cost ~10 ms of worker CPU and ~16 ms in all per part with three deployed models
# trained on 20,000 labelled images (under 1 ms with this list; benchmarks/serving_registry.py).
SERVING_FIELDS = ("id", "project_id", "kind", "status", "precision", "thresholds", "artifacts", "station_regions")


def deployed_versions(*, project_id: int) -> dict[str, ModelVersion]:
    """The project's deployed version of each kind, with the fields serving uses (the rest
    load on access)."""
    rows = ModelVersion.objects.filter(project_id=project_id, status=ModelVersion.Status.DEPLOYED).only(*SERVING_FIELDS)
    return {row.kind: row for row in rows}


def inferencer_for(version: ModelVersion) -> Inferencer:
    """The loaded inferencer of ``version`` at its serving precision; every artifact hash is
    verified on first load (a mismatch raises and nothing is served from that version)."""
    slot = (version.project_id, version.kind)
    serving = (version.pk, version.precision)
    with _lock:
        current = _loaded.get(slot)
        if current is not None and current[0] == serving:
            return current[1]
        from workers.ml.inference import load_inferencer

        inferencer = load_inferencer(
            version.artifact_dir,
            version.artifacts,
            backend="onnx",
            int8=version.precision == Precision.INT8,
            intra_op_threads=settings.LOUPE_INFERENCE_THREADS,
            allow_spinning=settings.LOUPE_INFERENCE_SPIN,
        )
        _loaded[slot] = (serving, inferencer)
        return inferencer


def loaded_version_ids() -> list[int]:
    with _lock:
        return sorted(serving[0] for serving, _ in _loaded.values())
