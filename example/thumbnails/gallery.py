"""What the views and the task do to the gallery: store and queue an upload, queue a deletion.

Messages go out with ``send_on_commit``, so a worker never sees a picture whose row is not
committed yet, and a rolled-back upload queues nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from example.thumbnails.events import publish, update_message
from example.thumbnails.messages import (
    DELETE_CHANNEL,
    GENERATE_CHANNEL,
    delete_message,
    generate_message,
)
from example.thumbnails.models import Picture
from example.thumbnails.uploads import ImageInfo
from worker import send_on_commit


def queue_upload(upload: UploadedFile[Any], info: ImageInfo) -> Picture:
    """Store a checked upload under a name made from a new id, and queue its thumbnails."""
    picture_id = uuid.uuid4()
    stored = default_storage.save(Picture.original_name(picture_id, info.extension), upload)
    picture = Picture(
        id=picture_id, original=stored, format=info.format, width=info.width, height=info.height
    )
    try:
        with transaction.atomic():
            picture.save(force_insert=True)
            send_on_commit(GENERATE_CHANNEL, generate_message(picture.id))
    except BaseException:
        default_storage.delete(stored)
        raise
    publish(update_message(picture.as_state()))
    return picture


def request_deletion(picture_id: uuid.UUID | str) -> Picture | None:
    """Mark a picture as being deleted and queue its deletion; None when it does not exist.

    A picture already being deleted is not queued again.
    """
    with transaction.atomic():
        picture = Picture.objects.select_for_update().filter(pk=picture_id).first()
        if picture is None:
            return None
        if picture.status != Picture.Status.DELETING:
            picture.status = Picture.Status.DELETING
            picture.save(update_fields=["status"])
            send_on_commit(DELETE_CHANNEL, delete_message(picture.id))
    publish(update_message(picture.as_state()))
    return picture
