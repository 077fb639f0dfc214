"""The image pyramid: a descriptor, JPEG tiles of at most 512 px, cached under the image's
SHA-256, 404 outside the pyramid or outside the caller's projects."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from annotation import tiles
from tests.annotation.conftest import Studio, jpeg_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def wide(studio: Studio) -> Any:
    """A 1300 x 700 image: levels 1300 -> 650 -> 325 px wide, so 3 levels."""
    gradient = np.tile(np.linspace(0, 255, 1300, dtype=np.uint8), (700, 1))
    return studio.task(image=jpeg_of(np.stack([gradient] * 3, axis=-1))).inspection


def test_the_descriptor_names_size_tile_size_and_levels(studio: Studio, wide: Any) -> None:
    response = studio.client(studio.annotator).get(f"/api/v1/inspections/{wide.pk}/tiles")

    assert response.status_code == 200
    assert response.json() == {"width": 1300, "height": 700, "tile_size": 512, "levels": 3, "format": "jpeg"}


@pytest.mark.parametrize(
    ("level", "col", "row", "size"),
    [(0, 0, 0, (512, 512)), (0, 2, 1, (276, 188)), (1, 1, 0, (138, 350)), (2, 0, 0, (325, 175))],
)
def test_a_tile_is_a_jpeg_of_its_part_of_the_level(
    studio: Studio, wide: Any, level: int, col: int, row: int, size: tuple[int, int]
) -> None:
    response = studio.client(studio.annotator).get(f"/api/v1/inspections/{wide.pk}/tiles/{level}/{col}/{row}")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, max-age=86400"
    assert response["X-Content-Type-Options"] == "nosniff"
    tile = Image.open(io.BytesIO(response.content))
    assert tile.format == "JPEG" and tile.size == size


def test_a_level_is_generated_once_and_then_served_from_storage(
    studio: Studio, wide: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = studio.client(studio.annotator)
    client.get(f"/api/v1/inspections/{wide.pk}/tiles/0/0/0")
    assert default_storage.exists(tiles.tile_key(wide.image, 0, 2, 1))  # the whole level was cut

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(tiles, "_generate_level", no_decoding)
    response = client.get(f"/api/v1/inspections/{wide.pk}/tiles/0/2/1")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "path", ["3/0/0", "0/3/0", "0/0/2", "2/1/0", "1/0/1"], ids=["level", "col", "row", "col-at-top", "row-at-1"]
)
def test_outside_the_pyramid_is_404(studio: Studio, wide: Any, path: str) -> None:
    response = studio.client(studio.annotator).get(f"/api/v1/inspections/{wide.pk}/tiles/{path}")

    assert response.status_code == 404


def test_tiles_of_another_projects_image_are_404(studio: Studio, wide: Any, outsider: Any) -> None:
    assert outsider.get(f"/api/v1/inspections/{wide.pk}/tiles").status_code == 404
    assert outsider.get(f"/api/v1/inspections/{wide.pk}/tiles/0/0/0").status_code == 404


def test_the_station_that_posted_the_image_may_read_its_tiles(studio: Studio, wide: Any) -> None:
    from rest_framework.test import APIClient

    response = APIClient().get(f"/api/v1/inspections/{wide.pk}/tiles", headers=studio.station.auth)

    assert response.status_code == 200


def test_a_small_image_is_one_level_of_one_tile() -> None:
    assert tiles.levels_of(96, 96) == 1 and tiles.grid_of(96, 96, 0) == (1, 1)
    assert tiles.levels_of(5472, 3648) == 5  # 20 MP: 5472 -> 2736 -> 1368 -> 684 -> 342
