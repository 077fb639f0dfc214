"""Run one model version on image files; one JSON line per file."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from PIL import Image as PILImage

from inspection.errors import DomainError
from inspection.imaging import normalise_image
from inspection.models import ModelVersion, Station
from workers.ml.regions import Region, blank_zones, crop, parse_region, parse_zones, paste, region_box, zero_zones


class Command(BaseCommand):
    help = (
        'Print {"file", "label", "probabilities", "anomaly_score", "mask", "latency_ms"} for each file. '
        "With --station (or --region) each file is cut to that inspection region (its ignore zones "
        "blanked) first; the mask PNG "
        "is written at the file's whole size."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--model", type=int, required=True, help="model version id")
        parser.add_argument("--out", type=Path, default=None, help="folder for mask PNGs (default var/predictions)")
        parser.add_argument(
            "--station",
            type=int,
            default=None,
            help="cut each file to this station's inspection region, as on the line",
        )
        parser.add_argument(
            "--region", default=None, help="cut each file to x,y,width,height (fractions of the image) instead"
        )
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        from workers.ml.errors import MLError
        from workers.ml.inference import load_inferencer

        version = ModelVersion.objects.filter(pk=options["model"]).first()
        if version is None or not version.artifacts:
            raise CommandError(f"No trained model version {options['model']}.")
        try:
            inferencer = load_inferencer(version.artifact_dir, version.artifacts, backend="onnx")
        except MLError as error:
            raise CommandError(f"Model version {version.pk} refused: {error}") from None
        region, zones = self._view(version, options["station"], options["region"])
        out_dir: Path = options["out"] or Path(settings.VAR_DIR) / "predictions"
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in options["files"]:
            line: dict[str, Any] = {
                "file": str(path),
                "label": None,
                "probabilities": None,
                "anomaly_score": None,
                "mask": None,
                "latency_ms": None,
            }
            try:
                with path.open("rb") as stream:
                    normalised = normalise_image(
                        stream, max_bytes=settings.LOUPE_MAX_UPLOAD_BYTES, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS
                    )
            except (OSError, DomainError) as error:
                line["error"] = getattr(error, "detail", str(error))
                self.stdout.write(json.dumps(line))
                continue
            pixels = np.asarray(PILImage.open(io.BytesIO(normalised.content)).convert("RGB"))
            shape = (int(pixels.shape[0]), int(pixels.shape[1]))
            started = time.perf_counter()
            prediction = inferencer.predict([crop(blank_zones(pixels, zones), region)])[0]
            line["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            line["label"] = prediction.label
            line["probabilities"] = prediction.probabilities
            line["anomaly_score"] = prediction.anomaly_score
            if prediction.mask is not None:
                mask_path = out_dir / f"{path.stem}.v{version.pk}.mask.png"
                whole = zero_zones(paste(prediction.mask, region_box(shape, region), shape), zones)
                PILImage.fromarray(whole).save(mask_path)
                line["mask"] = str(mask_path)
            self.stdout.write(json.dumps(line))

    @staticmethod
    def _view(
        version: ModelVersion, station_id: int | None, text: str | None
    ) -> tuple[Region | None, tuple[Region, ...]]:
        """The region (and, from a station, its ignore zones) to cut each file to."""
        if text is not None:
            try:
                return parse_region([float(value) for value in text.split(",")]), ()
            except ValueError as error:
                raise CommandError(f"Bad --region {text!r}: {error}.") from None
        if station_id is None:
            return None, ()
        station = Station.objects.filter(pk=station_id, project_id=version.project_id).first()
        if station is None:
            raise CommandError(f"No station {station_id} in the model's project.")
        region = parse_region(station.inspection_region) if station.inspection_region is not None else None
        return region, parse_zones(station.ignore_zones or [])
