"""The image pyramid behind smooth zooming on large (20-megapixel) images.

Level 0 is full resolution; each next level halves both sides (rounding up) until the
whole image fits one ``TILE_SIZE`` tile. Tiles are JPEGs cached in storage under a key made
from the image's SHA-256, so every inspection sharing the image shares its tiles. A level
is generated on the first request for any of its tiles: the image is decoded once (JPEGs at
the level's reduced size directly), resized once and cut into all of that level's tiles;
concurrent requests for the same level wait for the first instead of decoding again.
"""

from __future__ import annotations

import io
import math
import time

from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from inspection.errors import NotFound
from inspection.models import Image

TILE_SIZE = 512
JPEG_QUALITY = 85
_LOCK_SECONDS = 120  # longer than generating level 0 of the largest accepted image
_WAIT_SECONDS = 60


def levels_of(width: int, height: int) -> int:
    levels, side = 1, max(width, height)
    while side > TILE_SIZE:
        side = math.ceil(side / 2)
        levels += 1
    return levels


def level_size(width: int, height: int, level: int) -> tuple[int, int]:
    return max(1, math.ceil(width / 2**level)), max(1, math.ceil(height / 2**level))


def grid_of(width: int, height: int, level: int) -> tuple[int, int]:
    """(columns, rows) of tiles at ``level``."""
    level_w, level_h = level_size(width, height, level)
    return math.ceil(level_w / TILE_SIZE), math.ceil(level_h / TILE_SIZE)


def descriptor(image: Image) -> dict[str, int | str]:
    return {
        "width": image.width,
        "height": image.height,
        "tile_size": TILE_SIZE,
        "levels": levels_of(image.width, image.height),
        "format": "jpeg",
    }


def tile_folder(image: Image) -> str:
    """Where every tile of ``image`` is stored (removed with the image by retention)."""
    return f"tiles/{image.sha256[:2]}/{image.sha256}"


def tile_key(image: Image, level: int, col: int, row: int) -> str:
    return f"{tile_folder(image)}/{level}/{col}_{row}.jpg"


def tile_bytes(image: Image, *, level: int, col: int, row: int) -> bytes:
    """The JPEG of one tile; NotFound outside the pyramid. Generates the level on a miss."""
    if not 0 <= level < levels_of(image.width, image.height):
        raise NotFound("No such level.")
    cols, rows = grid_of(image.width, image.height, level)
    if not (0 <= col < cols and 0 <= row < rows):
        raise NotFound("No such tile.")
    key = tile_key(image, level, col, row)
    if not default_storage.exists(key):
        lock = f"loupe:tiles:{image.sha256}:{level}"
        if cache.add(lock, 1, timeout=_LOCK_SECONDS):
            try:
                _generate_level(image, level)
            finally:
                cache.delete(lock)
        else:
            deadline = time.monotonic() + _WAIT_SECONDS
            while not default_storage.exists(key) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not default_storage.exists(key):  # the generator died: do it here
                _generate_level(image, level)
    with default_storage.open(key, "rb") as stored:
        return bytes(stored.read())


def _generate_level(image: Image, level: int) -> None:
    target = level_size(image.width, image.height, level)
    with default_storage.open(image.file, "rb") as stored, PILImage.open(io.BytesIO(stored.read())) as source:
        if level > 0:
            source.draft("RGB", target)  # JPEG: DCT-scaled decode, never larger than needed
        pixels = source.convert("RGB")
        if pixels.size != target:
            pixels = pixels.resize(target, PILImage.Resampling.BOX if level > 0 else PILImage.Resampling.BILINEAR)
    cols, rows = grid_of(image.width, image.height, level)
    for col in range(cols):
        for row in range(rows):
            key = tile_key(image, level, col, row)
            if default_storage.exists(key):
                continue
            box = (col * TILE_SIZE, row * TILE_SIZE, min(target[0], (col + 1) * TILE_SIZE),
                   min(target[1], (row + 1) * TILE_SIZE))  # fmt: skip
            buffer = io.BytesIO()
            pixels.crop(box).save(buffer, format="JPEG", quality=JPEG_QUALITY)
            saved = default_storage.save(key, ContentFile(buffer.getvalue()))
            if saved != key:  # written meanwhile by another request: keep one copy
                default_storage.delete(saved)
