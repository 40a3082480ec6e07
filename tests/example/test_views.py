"""Uploads and deletions through the example's views: limits, Pillow's verdict, safe names.

Runs the views with Django's test client on the suite's in-memory channel layer, so a test
reads exactly what a view queued for the worker; no Redis, no worker.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client, override_settings
from PIL import Image

from example import settings as example_settings

GENERATE = "thumbnails-generate"
DELETE = "thumbnails-delete"
JSON = {"Accept": "application/json"}


def image_bytes(image_format: str = "PNG", size: tuple[int, int] = (300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, format=image_format)
    return buffer.getvalue()


def upload_file(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


async def _drain(channel: str) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    assert layer is not None
    messages: list[dict[str, Any]] = []
    while True:
        try:
            messages.append(await asyncio.wait_for(layer.receive(channel), 0.05))
        except TimeoutError:
            return messages


def queued(channel: str) -> list[dict[str, Any]]:
    """Every message waiting on ``channel``, taken off it."""
    return async_to_sync(_drain)(channel)


@pytest.fixture(scope="module")
def example_app() -> Iterator[None]:
    """The example app installed over the suite's settings, with its tables."""
    apps = [*settings.INSTALLED_APPS]
    apps += [app for app in example_settings.INSTALLED_APPS if app not in apps]
    with override_settings(
        INSTALLED_APPS=apps,
        ROOT_URLCONF="example.urls",
        TEMPLATES=example_settings.TEMPLATES,
        MIDDLEWARE=example_settings.MIDDLEWARE,
        STATIC_URL=example_settings.STATIC_URL,
        MEDIA_URL=example_settings.MEDIA_URL,
        THUMBNAILS_MAX_UPLOAD_BYTES=example_settings.THUMBNAILS_MAX_UPLOAD_BYTES,
        THUMBNAILS_MAX_PIXELS=example_settings.THUMBNAILS_MAX_PIXELS,
        THUMBNAILS_SIZES=example_settings.THUMBNAILS_SIZES,
        THUMBNAILS_GROUP=example_settings.THUMBNAILS_GROUP,
        # No worker reads the in-memory layer, so send() refuses it unless told not to check;
        # these tests read what the views queued from it themselves.
        CHANNEL_WORKER={**example_settings.CHANNEL_WORKER, "UNKNOWN_CHANNEL": "off"},
    ):
        call_command("migrate", verbosity=0)
        yield


@pytest.fixture
def media(example_app: None, tmp_path: Path) -> Iterator[Path]:
    """An empty media directory, no pictures and nothing queued."""
    from example.thumbnails.models import Picture

    Picture.objects.all().delete()
    queued(GENERATE)
    queued(DELETE)
    root = tmp_path / "media"
    with override_settings(MEDIA_ROOT=root):
        yield root


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def post_upload(client: Client, file: SimpleUploadedFile | None, *, script: bool = True) -> Any:
    """POST the upload form as the page's script does, or as a plain form (``script=False``)."""
    data = {"image": file} if file is not None else {}
    return client.post("/pictures/", data, headers=JSON if script else None)


def test_an_image_is_stored_under_a_name_the_server_makes_and_queued(media: Path) -> None:
    from example.thumbnails.models import Picture

    response = post_upload(Client(), upload_file("../../etc/cron.d/evil x.png", image_bytes()))

    assert response.status_code == 201
    picture = response.json()["picture"]
    assert picture["status"] == "queued"
    assert (picture["format"], picture["width"], picture["height"]) == ("PNG", 300, 200)
    assert stored_files(media) == [media / "originals" / f"{picture['id']}.png"]
    assert Picture.objects.get(pk=picture["id"]).original == f"originals/{picture['id']}.png"
    assert queued(GENERATE) == [{"type": "thumbnails.generate", "id": picture["id"]}]


def test_the_stored_extension_follows_the_content_not_the_client_name(media: Path) -> None:
    response = post_upload(Client(), upload_file("photo.gif", image_bytes("JPEG")))

    assert response.status_code == 201
    picture_id = response.json()["picture"]["id"]
    assert stored_files(media) == [media / "originals" / f"{picture_id}.jpg"]


@pytest.mark.parametrize(
    ("name", "content", "status", "message"),
    [
        ("notes.png", b"these are notes, not pixels\n", 400, "not an image Pillow can read"),
        ("cut.png", image_bytes()[:120], 400, "not an image Pillow can read"),
        ("old.bmp", image_bytes("BMP"), 400, "JPEG, PNG, GIF or WebP"),
        ("empty.png", b"", 400, "The file is empty"),
    ],
    ids=["text", "truncated", "unsupported-format", "empty"],
)
def test_a_file_that_is_not_an_accepted_image_is_rejected_and_nothing_is_queued(
    media: Path, name: str, content: bytes, status: int, message: str
) -> None:
    response = post_upload(Client(), upload_file(name, content))

    assert response.status_code == status
    assert message in response.json()["error"]
    assert stored_files(media) == []
    assert queued(GENERATE) == []


def test_a_file_over_the_size_limit_is_rejected_with_413(media: Path) -> None:
    with override_settings(THUMBNAILS_MAX_UPLOAD_BYTES=1000):
        response = post_upload(Client(), upload_file("big.png", image_bytes(size=(400, 400))))

    assert response.status_code == 413
    assert re.search(r"The file is .* MB, over the 0\.0 MB limit", response.json()["error"])
    assert stored_files(media) == []
    assert queued(GENERATE) == []


def test_a_request_declaring_more_than_the_limit_is_refused_before_its_file_is_read(
    media: Path,
) -> None:
    with override_settings(THUMBNAILS_MAX_UPLOAD_BYTES=1000):
        response = post_upload(Client(), upload_file("huge.png", b"\0" * 200_000))

    assert response.status_code == 413
    assert "over the" in response.json()["error"]
    assert stored_files(media) == []


def test_an_image_with_too_many_pixels_is_rejected_before_it_is_decoded(media: Path) -> None:
    with override_settings(THUMBNAILS_MAX_PIXELS=10_000):
        response = post_upload(Client(), upload_file("wide.png", image_bytes(size=(300, 200))))

    assert response.status_code == 413
    assert "300x200 pixels" in response.json()["error"]
    assert queued(GENERATE) == []


def test_a_post_without_a_file_says_so(media: Path) -> None:
    response = post_upload(Client(), None)

    assert response.status_code == 400
    assert response.json()["error"] == "No file was sent: choose an image to upload."


def test_a_plain_form_post_shows_the_rejection_on_the_page(media: Path) -> None:
    response = post_upload(Client(), upload_file("notes.png", b"plain text"), script=False)

    assert response.status_code == 400
    assert "The file is not an image Pillow can read" in response.content.decode()


def test_a_plain_form_post_of_an_image_redirects_to_the_gallery(media: Path) -> None:
    response = post_upload(Client(), upload_file("photo.png", image_bytes()), script=False)

    assert (response.status_code, response["Location"]) == (302, "/")
    assert len(queued(GENERATE)) == 1


def test_uploads_and_deletions_need_the_csrf_token(media: Path) -> None:
    client = Client(enforce_csrf_checks=True)

    upload = post_upload(client, upload_file("photo.png", image_bytes()))
    delete = client.post(f"/pictures/{uuid.uuid4()}/delete/", headers=JSON)

    assert (upload.status_code, delete.status_code) == (403, 403)
    assert stored_files(media) == []
    assert queued(GENERATE) == []


def test_the_page_carries_a_csrf_token_for_its_forms(media: Path) -> None:
    page = Client().get("/").content.decode()

    assert page.count('name="csrfmiddlewaretoken"') == 2


def test_delete_marks_the_picture_and_queues_its_deletion_once(media: Path) -> None:
    client = Client()
    picture_id = post_upload(client, upload_file("p.png", image_bytes())).json()["picture"]["id"]

    first = client.post(f"/pictures/{picture_id}/delete/", headers=JSON)
    second = client.post(f"/pictures/{picture_id}/delete/", headers=JSON)

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["picture"]["status"] == "deleting"
    assert queued(DELETE) == [{"type": "thumbnails.delete", "id": picture_id}]


def test_deleting_an_unknown_picture_answers_404(media: Path) -> None:
    response = Client().post(f"/pictures/{uuid.uuid4()}/delete/", headers=JSON)

    assert response.status_code == 404
    assert response.json()["error"] == "That picture no longer exists."
    assert queued(DELETE) == []


def test_the_nightly_cleanup_removes_only_thumbnail_folders_without_a_picture(
    media: Path,
) -> None:
    from example.thumbnails.tasks import clean_orphaned_thumbnails

    picture_id = post_upload(Client(), upload_file("p.png", image_bytes())).json()["picture"]["id"]
    kept, orphan = media / "thumbnails" / picture_id, media / "thumbnails" / str(uuid.uuid4())
    for folder in (kept, orphan):
        folder.mkdir(parents=True)
        (folder / "64.webp").write_bytes(b"webp")

    assert clean_orphaned_thumbnails.call() == 1
    assert kept.is_dir()
    assert not orphan.exists()


def test_the_example_schedules_its_nightly_cleanup(example_app: None) -> None:
    from worker.schedules.setup import project_schedules

    schedules = project_schedules(example_settings.CHANNEL_WORKER)

    cleanup = schedules["clean-orphaned-thumbnails"]
    assert (cleanup.task, cleanup.cron, cleanup.channel) == (
        "example.thumbnails.tasks.clean_orphaned_thumbnails",
        "0 3 * * *",
        "tasks.default",
    )
