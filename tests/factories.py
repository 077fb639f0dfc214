"""Factories: small, explicit builders of the rows tests need."""

from __future__ import annotations

import functools
import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model

from inspection.models import Project, Station
from inspection.services import membership_set, project_create, station_create, station_token_issue
from workers.synthetic import synthetic_part

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_project(name: str | None = None, classes: tuple[str, ...] = ("scratch", "pit", "crack")) -> Project:
    return project_create(name=name or f"Project {next(_counter)}", defect_classes=list(classes))


@dataclass
class StationWithToken:
    station: Station
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Station {self.token}"}


def make_station(project: Project, name: str | None = None) -> StationWithToken:
    station = station_create(project=project, line_name="Line 1", station_name=name or f"Camera {next(_counter)}")
    _, raw = station_token_issue(station=station)
    return StationWithToken(station=station, token=raw)


@functools.cache
def _password_hash() -> str:
    # PBKDF2 is slow by design; hash the shared test password once per run.
    from django.contrib.auth.hashers import make_password

    return make_password(PASSWORD)


def make_user(project: Project | None = None, role: str = "reviewer", **extra: Any) -> Any:
    user = get_user_model().objects.create(username=f"user{next(_counter)}", password=_password_hash(), **extra)
    if project is not None:
        membership_set(project=project, user=user, role=role)
    return user


def part_jpeg(seed: int = 0, defect: str | None = "scratch") -> bytes:
    return synthetic_part(seed, size=96, defect=defect).encode("JPEG")


def upload(content: bytes, name: str = "part.jpg", content_type: str = "image/jpeg") -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type=content_type)


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


# Hyperparameters small enough to train each kind in seconds on 64 px generated parts.
TINY = {
    "anomaly": {"input_size": [64, 64], "taps": [4, 10], "bank_size": 256},
    "classifier": {
        "input_size": [64, 64],
        "epochs": 3,
        "batch_size": 16,
        "patience": 3,
        "learning_rate": 2e-3,
        "int8": True,  # so that serving the INT8 copy can be tested
    },
    "segmenter": {"input_size": [64, 64], "epochs": 3, "batch_size": 8, "patience": 3, "learning_rate": 3e-3},
}


def write_dataset(root: Path, *, goods: int = 12, per_defect: int = 6) -> Path:
    """An MTD-shaped folder of generated parts: <Class>/Imgs/<name>.jpg with <name>.png masks."""
    for folder, defect, count in [
        ("MT_Free", None, goods),
        ("MT_scratch", "scratch", per_defect),
        ("MT_pit", "pit", per_defect),
    ]:
        images = root / folder / "Imgs"
        images.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            part = synthetic_part(hash((folder, index)) % 10_000, size=64, defect=defect)
            part.image.save(images / f"{folder}_{index}.jpg", quality=95)
            part.mask.save(images / f"{folder}_{index}.png")
    return root
