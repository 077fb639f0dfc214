"""Import a folder-per-class dataset, with optional masks beside the images.

Layouts understood: ``<Class>/Imgs/<name>.jpg`` with mask ``<name>.png`` (MTD), and
``<Class>/<name>.<ext>`` with an optional ``<name>_mask.png`` or ``<name>.png`` mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from inspection.errors import DomainError
from inspection.models import Project
from inspection.services import project_create
from inspection.services.datasets import DatasetItem, dataset_import_item

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def find_items(root: Path) -> list[tuple[str, Path, Path | None]]:
    """(class folder name, image path, mask path or None), sorted for a stable import."""
    found = []
    for class_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        image_dir = class_dir / "Imgs" if (class_dir / "Imgs").is_dir() else class_dir
        files = sorted(path for path in image_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        stems_with_jpeg = {path.stem for path in files if path.suffix.lower() in {".jpg", ".jpeg"}}
        for path in files:
            is_mask = path.stem.endswith("_mask") or (path.suffix.lower() == ".png" and path.stem in stems_with_jpeg)
            if is_mask:
                continue
            mask = next(
                (
                    c
                    for c in (image_dir / f"{path.stem}_mask.png", image_dir / f"{path.stem}.png")
                    if c != path and c.exists()
                ),
                None,
            )
            found.append((class_dir.name, path, mask))
    return found


class Command(BaseCommand):
    help = "Import a folder-per-class dataset (MTD layout supported) as labelled training images."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", required=True, help="project name (created if missing)")
        parser.add_argument("--good-class", required=True, help="folder name of the defect-free class")
        parser.add_argument("--strip-prefix", default="", help="drop this prefix from folder names (e.g. MT_)")
        parser.add_argument("--author", default=None, help="username recorded as the labels' author")

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["path"]
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder.")
        items = find_items(root)
        folders = sorted({folder for folder, _, _ in items})
        if options["good_class"] not in folders:
            raise CommandError(f"No folder named {options['good_class']!r} in {root}; found {', '.join(folders)}.")
        strip = options["strip_prefix"]

        def class_name(folder: str) -> str:
            return folder[len(strip) :] if strip and folder.startswith(strip) else folder

        good = class_name(options["good_class"])
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            defects = [class_name(folder) for folder in folders if folder != options["good_class"]]
            project = project_create(name=options["project"], defect_classes=defects, good_class_name=good)
            self.stdout.write(f"created project {project.name!r} (id {project.pk}) with classes {', '.join(defects)}")
        author = get_user_model().objects.filter(username=options["author"]).first() if options["author"] else None
        imported = skipped = 0
        for index, (folder, image_path, mask_path) in enumerate(items, start=1):
            label = class_name(folder)
            try:
                created = dataset_import_item(
                    project=project,
                    item=DatasetItem(
                        serial=f"{folder}/{image_path.stem}",
                        image_path=image_path,
                        label=None if label == project.good_class_name else label,
                        mask_path=mask_path,
                    ),
                    author=author,
                )
                imported += int(created)
                skipped += int(not created)
            except DomainError as error:
                skipped += 1
                self.stderr.write(f"skipped {image_path}: {error.detail}")
            _progress(index, len(items), self.stdout)
        self.stdout.write(f"\nimported {imported} images, skipped {skipped} into project {project.name!r}")


def _progress(done: int, total: int, out: Any) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", ending="")
    if hasattr(out, "flush"):
        out.flush()
