"""The worker's consumers (make and delete thumbnails) and the gallery page's WebSocket.

``GenerateConsumer`` and ``DeleteConsumer`` are plain Channels consumers run by ``runworker``;
messages may be delivered twice (at-least-once), so both are safe to run again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import transaction

from example.thumbnails.events import (
    apublish,
    deleted_message,
    gallery_group,
    progress,
    update_message,
)
from example.thumbnails.imaging import Thumbnail, make_thumbnail, remove_files
from example.thumbnails.models import Picture

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


async def _db(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ORM code in Django's database thread, closing stale connections around it."""
    return cast("T", await database_sync_to_async(function)(*args, **kwargs))


def _media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


class GenerateConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    """``thumbnails-generate``: every size of a picture, with progress after each one.

    ``{"type": "thumbnails.generate", "id": "<picture uuid>"}``. A picture deleted meanwhile
    is skipped, or its half-made thumbnails are removed. An error marks the picture failed and
    goes on to the worker, which retries it (``CHANNEL_WORKER`` sets the attempts).
    """

    async def thumbnails_generate(self, message: dict[str, Any]) -> None:
        picture_id = str(message["id"])
        picture = await _db(_start, picture_id)
        if picture is None:
            logger.info("Picture %s is gone or being deleted: no thumbnails made", picture_id)
            return
        await apublish(update_message(picture.as_state()))
        try:
            await self._generate(picture)
        except Exception as error:
            state = await _db(_fail, picture_id, f"{type(error).__name__}: {error}")
            if state is not None:
                await apublish(update_message(state))
            raise

    async def _generate(self, picture: Picture) -> None:
        sizes: tuple[int, ...] = tuple(settings.THUMBNAILS_SIZES)
        delay_s = float(settings.THUMBNAILS_STEP_DELAY_S)
        directory = Picture.thumbnail_dir(picture.id)
        reporter = progress()
        for done, size in enumerate(sizes, start=1):
            # Pillow releases the GIL while it resizes: other pictures go on meanwhile.
            thumbnail = await asyncio.to_thread(
                make_thumbnail, _media_root(), picture.original, directory, size
            )
            state = await _db(_add_thumbnail, str(picture.id), thumbnail)
            if state is None:
                # Deleted while this size was being made: leave no file behind.
                await asyncio.to_thread(remove_files, _media_root(), "", directory)
                logger.info("Picture %s was deleted during generation", picture.id)
                return
            await reporter.areport(done, len(sizes), f"{size} px", picture=state)
            if delay_s and done < len(sizes):
                await asyncio.sleep(delay_s)
        state = await _db(_finish, str(picture.id))
        if state is not None:
            await apublish(update_message(state))
            logger.info("Picture %s: %d thumbnails made", picture.id, len(sizes))


class DeleteConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    """``thumbnails-delete``: remove a picture's files, then its row; tell the page.

    ``{"type": "thumbnails.delete", "id": "<picture uuid>"}``; a picture already gone is fine.
    """

    async def thumbnails_delete(self, message: dict[str, Any]) -> None:
        picture_id = str(message["id"])
        original = await _db(_original_of, picture_id)
        if original is not None:
            await asyncio.to_thread(
                remove_files, _media_root(), original, Picture.thumbnail_dir(picture_id)
            )
            await _db(_delete, picture_id)
            logger.info("Picture %s deleted", picture_id)
        await apublish(deleted_message(picture_id))


class GalleryConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """The page's live feed: a snapshot on connect, then every change to any picture.

    Sends ``{"event": "snapshot", "pictures": [...]}``, ``{"event": "picture", "picture": {...}}``
    and ``{"event": "deleted", "id": "..."}``; the progress of a picture being made arrives as
    ``{"event": "picture", "picture": {...}, "progress": {"done": 2, "total": 4, ...}}``.
    """

    async def connect(self) -> None:
        # Join before reading the snapshot, so no change falls between the two.
        await self.channel_layer.group_add(gallery_group(), self.channel_name)
        await self.accept()
        pictures = await _db(_snapshot)
        await self.send_json({"event": "snapshot", "pictures": pictures})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(gallery_group(), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The page only listens; what it sends is ignored.
        return

    async def picture_update(self, event: dict[str, Any]) -> None:
        await self.send_json({"event": "picture", "picture": event["picture"]})

    async def picture_deleted(self, event: dict[str, Any]) -> None:
        await self.send_json({"event": "deleted", "id": event["id"]})

    async def task_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "event": "picture",
                "picture": event["picture"],
                "progress": {
                    "done": event["done"],
                    "total": event["total"],
                    "detail": event["detail"],
                },
            }
        )


def _start(picture_id: str) -> Picture | None:
    updated = (
        Picture.objects.filter(pk=picture_id)
        .exclude(status=Picture.Status.DELETING)
        .update(status=Picture.Status.PROCESSING, thumbnails=[], error="")
    )
    return Picture.objects.filter(pk=picture_id).first() if updated else None


def _add_thumbnail(picture_id: str, thumbnail: Thumbnail) -> dict[str, Any] | None:
    with transaction.atomic():
        picture = (
            Picture.objects.select_for_update()
            .filter(pk=picture_id)
            .exclude(status=Picture.Status.DELETING)
            .first()
        )
        if picture is None:
            return None
        entries = [entry for entry in picture.thumbnails if entry["size"] != thumbnail.size]
        picture.thumbnails = sorted([*entries, thumbnail.as_entry()], key=lambda e: e["size"])
        picture.save(update_fields=["thumbnails"])
        return picture.as_state()


def _finish(picture_id: str) -> dict[str, Any] | None:
    return _set_status(picture_id, Picture.Status.READY, "")


def _fail(picture_id: str, error: str) -> dict[str, Any] | None:
    return _set_status(picture_id, Picture.Status.FAILED, error[:300])


def _set_status(picture_id: str, status: str, error: str) -> dict[str, Any] | None:
    updated = (
        Picture.objects.filter(pk=picture_id)
        .exclude(status=Picture.Status.DELETING)
        .update(status=status, error=error)
    )
    picture = Picture.objects.filter(pk=picture_id).first() if updated else None
    return picture.as_state() if picture is not None else None


def _original_of(picture_id: str) -> str | None:
    picture = Picture.objects.filter(pk=picture_id).first()
    return picture.original if picture is not None else None


def _delete(picture_id: str) -> None:
    Picture.objects.filter(pk=picture_id).delete()


def _snapshot() -> list[dict[str, Any]]:
    return [picture.as_state() for picture in Picture.objects.all()]
