"""The ``thumbnails`` app of the example project."""

from __future__ import annotations

from django.apps import AppConfig


class ThumbnailsConfig(AppConfig):
    name = "example.thumbnails"
    label = "thumbnails"
    verbose_name = "Thumbnails"
    default_auto_field = "django.db.models.BigAutoField"
