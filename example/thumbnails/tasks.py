"""A task for the Tasks API, run by ``runworker tasks.default`` through ``ChannelLayerBackend``."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
