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
        parser.add_argument(
            "--review-after",
            type=float,
            default=0,
            help=(
                "a simulated reviewer: decides, by the generated truth, review items of this line's parts that "
                "nobody took within this many seconds, signed in as the demo reviewer (0 = no reviewer)"
            ),
        )
        parser.add_argument("--credentials-file", default=str(settings.VAR_DIR / "demo-credentials.txt"))

    def handle(self, *args: Any, **options: Any) -> None:
        token_path = Path(options["token_file"])
        if not token_path.exists():
            raise CommandError(f"No station token at {token_path}: run `manage.py seed_demo` first.")
        headers = {"Authorization": f"Station {token_path.read_text().strip()}"}
        endpoint = options["url"].rstrip("/") + "/api/v1/inspections"
        run_id = uuid.uuid4().hex[:8]
        posted = 0
        seed = int(time.time())
        reviewer = (
            SimulatedReviewer(options["url"], Path(options["credentials_file"]), options["review_after"])
            if options["review_after"]
            else None
        )
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
                    if reviewer is not None:
                        reviewer.truth[serial] = part.defect
                if reviewer is not None:
                    for decided in reviewer.decide_waiting():
                        self.stdout.write(f"  simulated reviewer: {decided}")
            except requests.ConnectionError:
                self.stdout.write("server not reachable yet; retrying")
            time.sleep(options["interval"])
        while reviewer is not None and options["count"] and reviewer.truth and reviewer.waiting():
            # A counted run ends when the reviewer has decided every part it was waiting for.
            for decided in reviewer.decide_waiting():
                self.stdout.write(f"  simulated reviewer: {decided}")
            time.sleep(min(1.0, options["interval"] or 0.2))


class SimulatedReviewer:
    """Stands in for people in the demo: through the public review API, as the demo reviewer,
    it claims the oldest review item and, when that is one of this line's parts waiting longer
    than ``after`` seconds, decides it by what the simulator drew (a defect's class, or pass);
    anything younger or not its own goes back to the queue for a person."""

    def __init__(self, url: str, credentials: Path, after: float) -> None:
        self.url, self.after = url.rstrip("/"), after
        self.truth: dict[str, str | None] = {}
        self.decided: set[str] = set()
        self.session: requests.Session | None = None
        self.classes: dict[str, int] = {}
        self.credentials = credentials

    def _sign_in(self) -> requests.Session:
        if self.session is not None:
            return self.session
        rows = [line.split() for line in self.credentials.read_text().splitlines() if line.strip()]
        username, password = next((row[1], row[2]) for row in rows if row[0] == "reviewer")
        session = requests.Session()
        session.get(f"{self.url}/api/v1/auth/csrf", timeout=10)
        login = session.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": username, "password": password},
            headers={"X-CSRFToken": session.cookies.get("csrftoken", "")},
            timeout=10,
        )
        login.raise_for_status()
        session.headers.update({"X-CSRFToken": session.cookies.get("csrftoken") or "", "Referer": self.url})
        self.session = session
        return session

    def _class_id(self, session: requests.Session, project: int, name: str) -> int:
        if name not in self.classes:
            body = session.get(f"{self.url}/api/v1/projects/{project}", timeout=10).json()
            self.classes.update({row["name"]: row["id"] for row in body["defect_classes"]})
        return self.classes[name]

    def waiting(self) -> bool:
        return any(serial not in self.decided for serial in self.truth)

    def decide_waiting(self, most: int = 5) -> list[str]:
        """Decide up to ``most`` items that waited long enough; what it decided, in words."""
        from django.utils.dateparse import parse_datetime

        session = self._sign_in()
        done: list[str] = []
        skipped: list[int] = []
        while len(done) < most:
            claim = session.post(f"{self.url}/api/v1/review-items/claim", json={"exclude": skipped}, timeout=10)
            if claim.status_code != 200:
                break
            item = claim.json()
            serial = item["part"]["serial"]
            created = parse_datetime(item["created_at"])
            waited = time.time() - created.timestamp() if created else 0.0
            if serial not in self.truth or waited < self.after:
                session.post(f"{self.url}/api/v1/review-items/{item['id']}/release", timeout=10)
                if waited < self.after:
                    break  # oldest first: the rest are younger still
                skipped.append(item["id"])
                continue
            defect = self.truth[serial]
            body: dict[str, Any] = {"outcome": "fail" if defect else "pass"}
            if defect:
                body["defect_class"] = self._class_id(session, item["project"], defect)
            decided = session.post(f"{self.url}/api/v1/review-items/{item['id']}/decide", json=body, timeout=10)
            self.decided.add(serial)
            done.append(f"{serial} {body['outcome']}{f' ({defect})' if defect else ''} -> {decided.status_code}")
        return done


def _changed(image: Image.Image, dim: float, blur: float) -> bytes:
    """The part as a failing camera delivers it: darker by ``dim``, blurred by ``blur`` pixels."""
    if dim != 1.0:
        image = ImageEnhance.Brightness(image).enhance(dim)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
