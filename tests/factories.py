"""Factories: small, explicit builders of the rows tests need."""

from __future__ import annotations

import functools
import io
import itertools
from dataclasses import dataclass
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
