"""A line simulator: posts a generated part image every ``--interval`` seconds, through the
same public API and station token a real camera station uses. ``--dim-after`` makes its lamp
fail part-way and ``--blur-after`` its lens go out of focus, so the dashboard's drift panel has
something to show: a dimmer lamp is a camera drift the models (standardising intensity) hardly
mind; a blur moves their scores too (``benchmarks/drift_models_mtd.py``)."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from PIL import Image, ImageEnhance, ImageFilter

from workers.synthetic import synthetic_part


class Command(BaseCommand):
    help = "Post synthetic part images to Loupe like a camera station."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--token-file", default=str(settings.VAR_DIR / "demo-station-token"))
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between parts")
        parser.add_argument("--count", type=int, default=0, help="stop after this many parts (0 = run forever)")
        parser.add_argument("--defect-rate", type=float, default=0.3)
        parser.add_argument(
            "--dim-after",
            type=int,
            default=0,
            help="a failing lamp: after this many parts every image is darker by --dim (0 = never)",
        )
        parser.add_argument("--dim", type=float, default=0.7, help="brightness factor once dimmed")
        parser.add_argument(
            "--blur-after",
            type=int,
            default=0,
            help="a lens going out of focus: after this many parts every image is blurred by --blur (0 = never)",
        )
        parser.add_argument("--blur", type=float, default=2.0, help="Gaussian blur radius in pixels once blurred")

    def handle(self, *args: Any, **options: Any) -> None:
        token_path = Path(options["token_file"])
        if not token_path.exists():
            raise CommandError(f"No station token at {token_path}: run `manage.py seed_demo` first.")
        headers = {"Authorization": f"Station {token_path.read_text().strip()}"}
        endpoint = options["url"].rstrip("/") + "/api/v1/inspections"
        run_id = uuid.uuid4().hex[:8]
        posted = 0
        seed = int(time.time())
        while options["count"] == 0 or posted < options["count"]:
            part = synthetic_part(seed + posted, defect_rate=options["defect_rate"])
            dim = options["dim"] if options["dim_after"] and posted >= options["dim_after"] else 1.0
            blur = options["blur"] if options["blur_after"] and posted >= options["blur_after"] else 0.0
            image = _changed(part.image, dim, blur) if dim != 1.0 or blur else part.encode("JPEG")
            serial = f"SIM-{run_id}-{posted:06d}"
            try:
                response = requests.post(
                    endpoint,
                    headers={**headers, "Idempotency-Key": serial},
                    data={"part_serial": serial, "sku": "PLATE-A", "lot": f"LOT-{run_id}"},
                    files={"image": (f"{serial}.jpg", image, "image/jpeg")},
                    timeout=10,
                )
                self.stdout.write(f"{serial} ({part.defect or 'good'}) -> {response.status_code}")
                if response.status_code < 500:
                    posted += 1
            except requests.ConnectionError:
                self.stdout.write("server not reachable yet; retrying")
            time.sleep(options["interval"])


def _changed(image: Image.Image, dim: float, blur: float) -> bytes:
    """The part as a failing camera delivers it: darker by ``dim``, blurred by ``blur`` pixels."""
    if dim != 1.0:
        image = ImageEnhance.Brightness(image).enhance(dim)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
