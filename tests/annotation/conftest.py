"""The annotation studio's test bench: a project with classes, people in every role, and
done inspections of generated images (posted by a station and run, as in production)."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from annotation.models import LabelTask
from inspection.models import Project
from inspection.services import inspection_run
from tests.factories import StationWithToken, make_project, make_station, make_user, part_jpeg, upload

_serials = itertools.count(1)


def jpeg_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def put_json(client: APIClient, url: str, body: Any) -> Any:
    # Python's encoder writes NaN and Infinity literally, as a hostile client would.
    return client.put(url, json.dumps(body, allow_nan=True), content_type="application/json")


def post_json(client: APIClient, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body, allow_nan=True), content_type="application/json")


@dataclass
class Studio:
    project: Project
    station: StationWithToken
    annotator: Any
    second_annotator: Any
    reviewer: Any
    manager: Any

    def task(self, image: bytes | None = None, scores: dict[str, Any] | None = None) -> LabelTask:
        """A done inspection's label task (96 px generated part unless ``image`` is given)."""
        posted: Any = APIClient().post(
            "/api/v1/inspections",
            {"part_serial": f"AN-{next(_serials)}", "image": upload(image or part_jpeg(next(_serials)))},
            format="multipart",
            headers=self.station.auth,
        )
        assert posted.status_code == 202, posted.content
        inspection = inspection_run(inspection_id=posted.json()["id"])
        assert inspection is not None
        task = LabelTask.objects.get(inspection=inspection)
        if scores is not None:
            inspection.scores = scores
            inspection.save(update_fields=["scores"])
        return task

    def class_id(self, name: str) -> int:
        return int(self.project.defect_classes.get(name=name).pk)

    def client(self, user: Any) -> APIClient:
        return client_for(user)


@pytest.fixture
def studio(db: None) -> Studio:
    project = make_project()
    return Studio(
        project=project,
        station=make_station(project),
        annotator=make_user(project, role="annotator"),
        second_annotator=make_user(project, role="annotator"),
        reviewer=make_user(project, role="reviewer"),
        manager=make_user(project, role="manager"),
    )


@pytest.fixture
def outsider(db: None) -> APIClient:
    """A manager of another project."""
    return client_for(make_user(make_project(), role="manager"))


def fail_label(studio: Studio, *, version: int = 0, submit: bool = False, name: str = "scratch",
               shapes: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    class_id = studio.class_id(name)
    if shapes is None:
        shapes = [{"type": "box", "x": 10, "y": 10, "width": 20, "height": 20, "defect_class": class_id}]
    return {"version": version, "outcome": "fail", "defect_class": class_id, "shapes": shapes, "submit": submit}


MakeTask = Callable[..., LabelTask]
