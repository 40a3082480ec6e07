"""One uploaded picture, its processing state and the thumbnails made so far."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse


class Picture(models.Model):
    """An upload; file paths are made by the server from ``id``, never taken from the client."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"
        DELETING = "deleting"

    id: models.UUIDField[uuid.UUID | str, uuid.UUID] = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False
    )
    created_at: models.DateTimeField[datetime | str, datetime] = models.DateTimeField(
        auto_now_add=True
    )
    # Relative to MEDIA_ROOT: "originals/<id>.<extension of the format Pillow detected>".
    original: models.CharField[str, str] = models.CharField(max_length=200)
    format: models.CharField[str, str] = models.CharField(max_length=10)
    width: models.PositiveIntegerField[int, int] = models.PositiveIntegerField()
    height: models.PositiveIntegerField[int, int] = models.PositiveIntegerField()
    status: models.CharField[str, str] = models.CharField(
        max_length=12, choices=Status.choices, default=Status.QUEUED
    )
    # [{"size": 64, "path": "thumbnails/<id>/64.webp", "width": 64, "height": 43}, ...]
    thumbnails = models.JSONField(default=list)
    error: models.CharField[str, str] = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.format} {self.width}x{self.height} ({self.status})"

    @staticmethod
    def original_name(picture_id: uuid.UUID, extension: str) -> str:
        return f"originals/{picture_id}.{extension}"

    @staticmethod
    def thumbnail_dir(picture_id: uuid.UUID | str) -> str:
        return f"thumbnails/{picture_id}"

    def as_state(self) -> dict[str, Any]:
        """What the page shows of this picture, as sent over the WebSocket."""
        media = settings.MEDIA_URL
        return {
            "id": str(self.id),
            "status": self.status,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "original_url": f"{media}{self.original}",
            "done": len(self.thumbnails),
            "total": len(settings.THUMBNAILS_SIZES),
            "thumbnails": [
                {
                    "size": entry["size"],
                    "url": f"{media}{entry['path']}",
                    "width": entry["width"],
                    "height": entry["height"],
                }
                for entry in self.thumbnails
            ],
            "error": self.error,
            "delete_url": reverse("thumbnails:delete", args=[self.id]),
        }
