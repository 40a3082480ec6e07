"""What the gallery page hears: messages to the group its WebSocket consumers join.

Three message types, each relayed to the browser by ``GalleryConsumer``:
``picture.update`` (a picture's whole state), ``task.progress`` (sent through
``worker.tasks.progress.Progress`` while thumbnails are made, with the state after each size) and
``picture.deleted``.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from worker import Progress

PICTURE_UPDATE = "picture.update"
PICTURE_DELETED = "picture.deleted"


def gallery_group() -> str:
    group: str = settings.THUMBNAILS_GROUP
    return group


def progress() -> Progress:
    return Progress(gallery_group())


def update_message(state: dict[str, Any]) -> dict[str, Any]:
    return {"type": PICTURE_UPDATE, "picture": state}


def deleted_message(picture_id: str) -> dict[str, Any]:
    return {"type": PICTURE_DELETED, "id": picture_id}


async def apublish(message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured(
            "The thumbnails app needs CHANNEL_LAYERS['default'] to reach the gallery page."
        )
    await layer.group_send(gallery_group(), message)


def publish(message: dict[str, Any]) -> None:
    """``apublish()`` for sync code: a view, or a task in its worker thread."""
    async_to_sync(apublish)(message)
