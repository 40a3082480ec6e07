"""Pillow work done by the worker: one thumbnail at a time, and removing a picture's files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from example.thumbnails.uploads import FORMATS

THUMBNAIL_FORMAT = "WEBP"
THUMBNAIL_EXTENSION = "webp"


@dataclass(frozen=True, slots=True)
class Thumbnail:
    size: int
    path: str
    width: int
    height: int

    def as_entry(self) -> dict[str, int | str]:
        return {"size": self.size, "path": self.path, "width": self.width, "height": self.height}


def make_thumbnail(media_root: Path, original: str, directory: str, size: int) -> Thumbnail:
    """Write the ``size`` px (longest side) thumbnail of ``original`` under ``directory``.

    Paths are relative to ``media_root``. The file appears whole or not at all, so a page never
    loads half an image; running it again overwrites it, so a redelivered message is harmless.
    """
    relative = f"{directory}/{size}.{THUMBNAIL_EXTENSION}"
    destination = media_root / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(media_root / original, formats=FORMATS) as opened:
        image = ImageOps.exif_transpose(opened)
        image.thumbnail((size, size))
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA")
        partial = destination.with_suffix(".partial")
        image.save(partial, format=THUMBNAIL_FORMAT, quality=82)
        partial.replace(destination)
        return Thumbnail(size, relative, image.width, image.height)


def remove_files(media_root: Path, original: str, directory: str) -> None:
    """Remove a picture's original and thumbnails; files already gone are fine."""
    if original:
        (media_root / original).unlink(missing_ok=True)
    shutil.rmtree(media_root / directory, ignore_errors=True)
