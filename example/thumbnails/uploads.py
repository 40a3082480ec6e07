"""Checking an upload before anything is stored or queued: its size, then Pillow's verdict."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

# Formats accepted, and the extension the stored file gets (never the client's).
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
ACCEPTED = "JPEG, PNG, GIF or WebP"
# Only these decoders ever see an upload.
FORMATS = tuple(EXTENSIONS)


class UploadRejected(ValueError):
    """An upload that is not stored; ``str(error)`` is the message shown to the user.

    ``status`` is the HTTP status of the rejection (413 when too large).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What Pillow found in an accepted upload."""

    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def check_size(size: int | None, max_bytes: int) -> None:
    """Reject empty files and files over ``max_bytes``, before any decoding."""
    if not size:
        raise UploadRejected("The file is empty: choose an image to upload.")
    if size > max_bytes:
        raise UploadRejected(
            f"The file is {megabytes(size)}, over the {megabytes(max_bytes)} limit: upload a "
            "smaller image.",
            status=413,
        )


def inspect_image(file: IO[bytes], max_pixels: int) -> ImageInfo:
    """Open ``file`` with Pillow, check its format and pixel count, and decode it fully.

    Pillow opens lazily, so the header is checked first and a huge image is refused before its
    pixels are decoded; the full decode catches truncated and corrupt files here rather than in
    the worker.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            info = _header(file, max_pixels)
            file.seek(0)
            with Image.open(file, formats=FORMATS) as image:
                image.verify()
            file.seek(0)
            with Image.open(file, formats=FORMATS) as image:
                image.load()
    except UploadRejected:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise UploadRejected(
            f"The image has too many pixels: at most {max_pixels:,} are accepted.", status=413
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadRejected(
            f"The file is not an image Pillow can read ({ACCEPTED}), or it is damaged."
        ) from error
    finally:
        file.seek(0)
    return info


def _header(file: IO[bytes], max_pixels: int) -> ImageInfo:
    with Image.open(file, formats=FORMATS) as image:
        image_format = image.format or ""
        width, height = image.size
    if image_format not in EXTENSIONS:
        raise UploadRejected(f"A {image_format} image is not accepted: upload {ACCEPTED}.")
    if width * height > max_pixels:
        raise UploadRejected(
            f"The image is {width}x{height} pixels: at most {max_pixels:,} pixels are accepted.",
            status=413,
        )
    return ImageInfo(image_format, width, height)
