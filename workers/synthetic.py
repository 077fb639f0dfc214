"""Synthetic part images: textured surfaces, some with scratches, pits or cracks.

Used by the line simulator of ``make demo`` and by the tests; framework-free. Deterministic
for a given seed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEFECT_KINDS = ("scratch", "pit", "crack")


@dataclass(frozen=True)
class SyntheticPart:
    image: Image.Image
    defect: str | None  # None for a good part
    mask: Image.Image  # L mode, 255 where the defect is

    def encode(self, fmt: str = "JPEG") -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format=fmt)
        return buffer.getvalue()


def textured_surface(rng: np.random.Generator, size: int) -> Image.Image:
    """Brushed-metal-like grey texture: smoothed noise plus directional streaks."""
    noise = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    coarse = np.asarray(
        Image.fromarray(((noise + 4) * 28).clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3)),
        dtype=np.float32,
    )
    streaks = np.repeat(rng.normal(0.0, 6.0, (1, size)).astype(np.float32), size, axis=0)
    base = 128 + (coarse - coarse.mean()) * 0.8 + streaks + rng.normal(0, 3, (size, size))
    gradient = np.linspace(-10, 10, size, dtype=np.float32)[None, :]
    return Image.fromarray((base + gradient).clip(0, 255).astype(np.uint8))


def synthetic_part(
    seed: int, *, size: int = 256, defect: str | None = "random", defect_rate: float = 0.3
) -> SyntheticPart:
    """One part image. ``defect="random"`` draws a defect with probability ``defect_rate``."""
    rng = np.random.default_rng(seed)
    surface = textured_surface(rng, size).convert("RGB")
    if defect == "random":
        defect = str(rng.choice(DEFECT_KINDS)) if rng.random() < defect_rate else None
    mask = Image.new("L", (size, size), 0)
    if defect is not None:
        draw = ImageDraw.Draw(surface)
        mask_draw = ImageDraw.Draw(mask)
        _draw_defect(defect, rng, size, draw, mask_draw)
    return SyntheticPart(image=surface, defect=defect, mask=mask)


def _draw_defect(
    kind: str, rng: np.random.Generator, size: int, draw: ImageDraw.ImageDraw, mask: ImageDraw.ImageDraw
) -> None:
    shade = int(rng.integers(20, 60))
    colour = (shade, shade, shade)
    if kind == "scratch":
        x0, y0 = rng.integers(size // 8, size // 2, 2)
        length = int(rng.integers(size // 3, size // 2))
        angle = rng.uniform(0, np.pi)
        x1, y1 = int(x0 + length * np.cos(angle)), int(y0 + length * np.sin(angle))
        width = int(rng.integers(2, 4))
        for target, fill in ((draw, colour), (mask, 255)):
            target.line([(int(x0), int(y0)), (x1, y1)], fill=fill, width=width)
    elif kind == "pit":
        cx, cy = rng.integers(size // 5, 4 * size // 5, 2)
        radius = int(rng.integers(size // 40 + 3, size // 14 + 4))
        box = [(int(cx - radius), int(cy - radius)), (int(cx + radius), int(cy + radius))]
        draw.ellipse(box, fill=colour)
        mask.ellipse(box, fill=255)
    elif kind == "crack":
        points = [(int(rng.integers(size // 6, size // 3)), int(rng.integers(size // 6, 5 * size // 6)))]
        for _ in range(int(rng.integers(5, 9))):
            x, y = points[-1]
            points.append(
                (int(x + rng.integers(8, size // 10 + 9)), int(y + rng.integers(-size // 12, size // 12 + 1)))
            )
        for target, fill in ((draw, colour), (mask, 255)):
            target.line(points, fill=fill, width=2)
    else:
        raise ValueError(f"unknown defect kind {kind!r}")
