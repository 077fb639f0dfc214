"""Checks and normalises uploaded images before anything is stored. No database access.

Order matters: size cap, then magic-byte sniffing against the allowlist, then the header's
pixel count (decompression bombs are refused before any pixel is decoded), then a full
decode (truncated files fail here), then EXIF orientation is applied and the image is
re-encoded by Loupe, which strips every metadata block and any polyglot payload.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image as PILImage
from PIL import ImageFile, ImageOps, UnidentifiedImageError

from inspection.errors import InvalidImage, PayloadTooLarge

ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF")

# Magic bytes of the allowed formats; anything else (SVG, HTML, PDF, FITS...) is refused
# before Pillow is asked to guess.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# Truncated data must fail, never be padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class NormalisedImage:
    content: bytes
    format: str  # "JPEG" or "PNG"
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        return "jpg" if self.format == "JPEG" else "png"


def sniff_format(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def normalise_image(stream: IO[bytes], *, max_bytes: int, max_pixels: int) -> NormalisedImage:
    """Validate an uploaded image and return Loupe's normalised copy.

    Raises ``PayloadTooLarge`` over ``max_bytes`` and ``InvalidImage`` (with a reason a
    device operator can act on) for everything else. Cost: one decode and one encode.
    """
    raw = stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"Image is larger than {max_bytes} bytes.")
    if not raw:
        raise InvalidImage("Image file is empty.", code="empty_image")
    source_format = sniff_format(raw[:16])
    if source_format is None:
        raise InvalidImage(
            f"Unsupported image format: allowed are {', '.join(ALLOWED_FORMATS)}.", code="unsupported_format"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            picture = PILImage.open(io.BytesIO(raw), formats=[source_format])
            width, height = picture.size
            if width <= 0 or height <= 0:
                raise InvalidImage("Image has no pixels.", code="corrupt_image")
            if width * height > max_pixels:
                raise InvalidImage(
                    f"Image declares {width}x{height} pixels, more than the {max_pixels} allowed.",
                    code="too_many_pixels",
                )
            if getattr(picture, "n_frames", 1) > 1:
                raise InvalidImage("Multi-frame images are not accepted.", code="multi_frame")
            picture.load()
            upright = ImageOps.exif_transpose(picture)
    except InvalidImage:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise InvalidImage("Image is a decompression bomb.", code="too_many_pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        # OSError: truncated data; ValueError: oversized text chunks (Pillow's MAX_TEXT_CHUNK).
        raise InvalidImage(f"Image could not be decoded ({type(exc).__name__}).", code="corrupt_image") from None

    if upright.mode not in {"L", "RGB"}:
        upright = upright.convert("RGB" if upright.mode not in {"I;16", "I", "F", "1"} else "L")
    buffer = io.BytesIO()
    if source_format == "JPEG":
        # Re-encoding drops EXIF/XMP/comments and anything appended after the image.
        upright.save(buffer, format="JPEG", quality=95, subsampling=0, optimize=False)
        out_format = "JPEG"
    else:
        upright.save(buffer, format="PNG", compress_level=3)
        out_format = "PNG"
    content = buffer.getvalue()
    return NormalisedImage(
        content=content,
        format=out_format,
        width=upright.width,
        height=upright.height,
        sha256=hashlib.sha256(content).hexdigest(),
    )


def overlay_png(key: str, *, kind: str) -> bytes:
    """A stored 8-bit heatmap or mask as an RGBA PNG to lay over the part: the heatmap in the
    inferno colour map with opacity rising with the score (cold regions stay clear), the mask
    red at 60 % where defective. Cost: one small PNG decode and encode."""
    import io

    import cv2
    import numpy as np
    from django.core.files.storage import default_storage

    with default_storage.open(key, "rb") as stored:
        values = np.asarray(PILImage.open(io.BytesIO(stored.read())).convert("L"))
    if kind == "heatmap":
        rgb = cv2.cvtColor(cv2.applyColorMap(values, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
        alpha = np.clip(values.astype(np.float32) * 1.6, 0, 220).astype(np.uint8)
    else:
        rgb = np.zeros((*values.shape, 3), dtype=np.uint8)
        rgb[..., 0] = 230
        alpha = np.where(values > 127, 153, 0).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(np.dstack([rgb, alpha])).save(buffer, format="PNG")  # (h, w, 4) uint8: RGBA
    return buffer.getvalue()
