"""Tasks for the Tasks API, run by ``runworker tasks.default`` through ``ChannelLayerBackend``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from example.thumbnails.gallery import request_deletion
from example.thumbnails.models import Picture

if TYPE_CHECKING:
    from django.tasks import task
else:
    try:
        from django.tasks import task
    except ImportError:  # Django 5.2: the django-tasks backport
        from django_tasks import task


@task
def clear_gallery() -> int:
    """Queue the deletion of every picture; returns how many were queued."""
    queued = 0
    ids = Picture.objects.exclude(status=Picture.Status.DELETING).values_list("id", flat=True)
    for picture_id in list(ids):
        if request_deletion(picture_id) is not None:
            queued += 1
    return queued


@task
def clean_orphaned_thumbnails() -> int:
    """Remove thumbnail folders whose picture no longer exists; returns how many were removed.

    Run every night by the schedule ``clean-orphaned-thumbnails`` (``CHANNEL_WORKER["SCHEDULES"]``
    in settings). A folder is only made for a picture whose row exists, so one without a row
    was left by a deletion that did not finish.
    """
    root = Path(settings.MEDIA_ROOT) / "thumbnails"
    if not root.is_dir():
        return 0
    known = {str(picture_id) for picture_id in Picture.objects.values_list("id", flat=True)}
    removed = 0
    for directory in root.iterdir():
        if directory.is_dir() and directory.name not in known:
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    return removed
