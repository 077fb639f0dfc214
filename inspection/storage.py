"""Bridges between Django's storage and the ML package, which works on local paths and arrays."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage


def read_pixels(key: str) -> np.ndarray:
    """A stored (already normalised) image as an RGB uint8 array."""
    with default_storage.open(key, "rb") as stored:
        return np.asarray(PILImage.open(io.BytesIO(stored.read())).convert("RGB"))


def save_png(key: str, pixels: np.ndarray) -> str:
    """Store ``pixels`` (HxW uint8) as a PNG under ``key``, replacing any earlier file."""
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    if default_storage.exists(key):
        default_storage.delete(key)
    return str(default_storage.save(key, ContentFile(buffer.getvalue())))


@contextmanager
def local_files(keys: list[str]) -> Iterator[dict[str, Path]]:
    """Local paths for stored files: the files themselves on a filesystem storage, else
    temporary copies removed on exit (S3)."""
    try:
        yield {key: Path(default_storage.path(key)) for key in keys}
        return
    except NotImplementedError:
        pass
    scratch = Path(tempfile.mkdtemp(prefix="loupe-train-"))
    try:
        paths = {}
        for index, key in enumerate(keys):
            target = scratch / f"{index}{Path(key).suffix}"
            with default_storage.open(key, "rb") as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            paths[key] = target
        yield paths
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
