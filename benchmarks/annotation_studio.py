"""The annotation studio under load, in Debian's Chromium: a 20-megapixel image carrying
2,000 polygons is panned and zoomed with real mouse input, and saved.

    .venv/bin/python benchmarks/annotation_studio.py [--shapes 2000] [--width 5472 --height 3648]

Frame time is the time the studio takes to draw one frame (tiles + every shape), measured
in the page around each draw, with the canvas flushed (rasterised) before the clock stops; the interval between animation frames during the interaction
is reported beside it (it includes waiting for the next 60 Hz vsync, so it never goes below
~16.7 ms). Save time is from the PUT leaving the page to the new version coming back (2,000
polygons validated and stored), the median of five saves. Prints one table, then one JSON
line: {"shapes", "frame_p95_ms", "save_ms"}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def wait_http(url: str, timeout_s: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


CHROMIUM = os.environ.get("LOUPE_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "studio-bench-password-1"  # noqa: S105  (a throwaway user in a temporary database)


def star(rng: Any, cx: float, cy: float, radius: float, vertices: int) -> list[list[float]]:
    import numpy as np

    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radii = radius * rng.uniform(0.5, 1.0, vertices)
    return [
        [round(float(cx + r * np.cos(a)), 2), round(float(cy + r * np.sin(a)), 2)]
        for a, r in zip(angles, radii, strict=True)
    ]


def big_image(width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    # A brushed-metal-like surface: streaks plus noise, so JPEG tiles are realistic in size.
    streaks = rng.normal(0, 12, (1, width)).repeat(height, axis=0)
    noise = rng.normal(0, 6, (height, width))
    gray = np.clip(128 + streaks + noise + np.linspace(-20, 20, width)[None, :], 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray).convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def setup(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    from django.contrib.auth import get_user_model

    from annotation.services import label_save, label_task_create_for
    from inspection.models import Inspection
    from inspection.services import membership_set, project_create, station_create
    from inspection.services.inspections import inspection_submit

    project = project_create(name="Studio bench", defect_classes=["scratch", "pit", "crack", "stain"])
    station = station_create(project=project, line_name="Line 1", station_name="Camera 1")
    user = get_user_model().objects.create_user("bench-annotator", password=PASSWORD)
    membership_set(project=project, user=user, role="annotator")
    started = time.perf_counter()
    submitted = inspection_submit(
        station=station, image_file=io.BytesIO(big_image(args.width, args.height)), part_serial="BIG-1"
    )
    task = label_task_create_for(inspection=Inspection.objects.get(pk=submitted.inspection.pk))
    prepared = time.perf_counter() - started
    rng = np.random.default_rng(1)
    classes = list(project.defect_classes.values_list("pk", flat=True))
    shapes: list[dict[str, Any]] = [
        {
            "type": "polygon",
            "points": star(
                rng,
                rng.uniform(80, args.width - 80),
                rng.uniform(80, args.height - 80),
                rng.uniform(15, 70),
                int(rng.integers(8, 24)),
            ),
            "defect_class": int(classes[index % len(classes)]),
        }
        for index in range(args.shapes)
    ]
    label_save(task=task, author=user, version=0, outcome="fail", defect_class=classes[0], shapes=shapes, submit=False)
    points = sum(len(s["points"]) for s in shapes)
    return {"task": task.pk, "username": user.username, "prepared_s": prepared, "points": points}


def measure(base: str, args: argparse.Namespace, fixture: dict[str, Any]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=base).new_page()
        page.goto("/")
        page.fill("#username", fixture["username"])
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("header.topbar")
        page.goto("/#/annotate")
        page.wait_for_function(
            f"() => window.__loupeStudio && window.__loupeStudio.doc.shapes.length === {args.shapes}", timeout=60_000
        )
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(500)
        box = page.locator("#studio-canvas").bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.evaluate(
            "() => { window.__loupeFlushFrames = true; window.__loupeStudio.frameTimes.length = 0; window.__intervals = []; let last = performance.now(); const tick = (t) => { window.__intervals.push(t - last); last = t; if (!window.__stop) requestAnimationFrame(tick); }; requestAnimationFrame(tick); }"
        )
        started = time.perf_counter()
        page.mouse.move(cx, cy)
        for step in range(args.steps):
            # Zoom in towards a wandering point, pan with the right button, zoom back out.
            phase = step % 60
            if phase < 20:
                page.mouse.wheel(0, -120)
            elif phase < 40:
                page.mouse.down(button="right")
                page.mouse.move(cx + 40 * ((phase % 5) - 2), cy + 25 * ((phase % 3) - 1), steps=4)
                page.mouse.up(button="right")
            else:
                page.mouse.wheel(0, 120)
        page.wait_for_timeout(300)
        interaction_s = time.perf_counter() - started
        if args.screenshot:
            # Mid-zoom (the scaled layer) and settled (redrawn sharp), to check they line up.
            page.mouse.wheel(0, -360)
            page.wait_for_timeout(40)
            page.screenshot(path=str(args.screenshot.with_suffix(".zooming.png")))
            page.wait_for_timeout(400)
            page.screenshot(path=str(args.screenshot))
        frames = page.evaluate("() => { window.__stop = true; return window.__loupeStudio.frameTimes.slice(); }")
        intervals = page.evaluate("() => window.__intervals.slice(2)")
        saves = []
        for _ in range(5):
            page.evaluate("() => window.__loupeStudio.save(false)")
            saves.append(page.evaluate("() => window.__loupeStudio.lastSaveMs"))
        browser.close()
    return {"frames": frames, "intervals": intervals, "saves": saves, "interaction_s": interaction_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=2000)
    parser.add_argument("--width", type=int, default=5472)
    parser.add_argument("--height", type=int, default=3648)
    parser.add_argument("--screenshot", type=Path, default=None, help="save PNGs of the studio here")
    parser.add_argument("--steps", type=int, default=240, help="input events during the pan/zoom run")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "annotation-studio-latest.txt")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="loupe-studio-"))
    os.environ["LOUPE_VAR_DIR"] = str(var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")
    os.environ["DATABASE_URL"] = os.environ.get("DATABASE_URL", f"sqlite:///{var}/bench.sqlite3")
    embedded = None
    if not os.environ.get("REDIS_URL"):
        from workers.embedded_redis import start_embedded_redis

        embedded = start_embedded_redis(var / "redis.sock")
        os.environ["REDIS_URL"] = f"unix://{var}/redis.sock"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    os.environ["CSRF_TRUSTED_ORIGINS"] = base

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    fixture = setup(args)
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "loupe.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env=os.environ.copy(),
        start_new_session=True,
    )
    try:
        wait_http(f"{base}/api/v1/health")
        result = measure(base, args, fixture)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=20)
        if embedded is not None:
            embedded.terminate()

    frames, intervals, saves = result["frames"], result["intervals"], result["saves"]
    lines = [
        f"Annotation studio benchmark: {args.shapes} polygons ({fixture['points']:,} vertices) on a "
        f"{args.width}x{args.height} image ({args.width * args.height / 1e6:.1f} MP), Chromium headless "
        f"(software rendering), 1366x768, {os.cpu_count()} CPUs",
        "",
        f"{'measure':<44}{'p50':>10}{'p95':>10}{'max':>10}",
        f"{'draw one frame (ms)':<44}{percentile(frames, 50):>10.2f}{percentile(frames, 95):>10.2f}{max(frames):>10.2f}",
        f"{'interval between frames (ms)':<44}{percentile(intervals, 50):>10.2f}{percentile(intervals, 95):>10.2f}{max(intervals):>10.2f}",
        f"{'save 2,000 polygons (ms)':<44}{percentile(saves, 50):>10.1f}{percentile(saves, 95):>10.1f}{max(saves):>10.1f}",
        f"frames drawn: {len(frames)} during {result['interaction_s']:.1f} s of input; "
        f"intervals over 25 ms: {sum(1 for i in intervals if i > 25)} of {len(intervals)}",
    ]
    headline = {
        "shapes": args.shapes,
        "frame_p95_ms": round(percentile(frames, 95) or 0, 2),
        "save_ms": round(percentile(saves, 50) or 0, 1),
    }
    lines.append(json.dumps(headline))
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    shutil.rmtree(var, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
