"""A line simulator: posts a generated part image every ``--interval`` seconds, through the
same public API and station token a real camera station uses. ``--dim-after`` makes its lamp
fail part-way, so the dashboard's drift panel has something to show."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from PIL import Image, ImageEnhance

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
            image = part.encode("JPEG")
            if options["dim_after"] and posted >= options["dim_after"]:
                image = _dimmed(part.image, options["dim"])
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


def _dimmed(image: Image.Image, factor: float) -> bytes:
    buffer = io.BytesIO()
    ImageEnhance.Brightness(image).enhance(factor).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
