"""The example's pages as a browser without JavaScript gets them, and its file serving.

The gallery is rendered by the server (reload to see progress), "Delete all" is disabled on an
empty gallery, and a plain form post that deletes asks on a page of its own first. Files are
served whole under ASGI, without Django's warning for streaming a sync iterator.
"""

from __future__ import annotations

import re
import uuid
import warnings
from pathlib import Path

import pytest
from django.test import AsyncClient, Client

from tests.example.test_views import (
    DELETE,
    example_app,
    image_bytes,
    media,
    post_upload,
    queued,
    upload_file,
)

__all__ = ["example_app", "media"]  # fixtures, used by name

EXAMPLE_STATIC = Path(__file__).resolve().parents[2] / "example/thumbnails/static/thumbnails"


def uploaded_picture(client: Client) -> str:
    response = post_upload(client, upload_file("photo.png", image_bytes()))
    picture_id: str = response.json()["picture"]["id"]
    return picture_id


def test_the_page_shows_the_gallery_without_javascript(media: Path) -> None:
    client = Client()
    empty = client.get("/").content.decode()
    assert re.search(r'<button type="submit" disabled>Delete all', empty)
    assert re.search(r'<p id="empty">No pictures yet', empty)

    picture_id = uploaded_picture(client)
    page = client.get("/").content.decode()
    assert f'<article class="picture" data-id="{picture_id}" data-status="queued">' in page
    assert '<span class="status">Queued for the worker…</span>' in page
    assert f'action="/pictures/{picture_id}/delete/"' in page
    assert re.search(r'<button type="submit">Delete all', page)
    assert '<p id="empty" hidden>' in page


def test_a_plain_form_delete_asks_first_and_deletes_once_confirmed(media: Path) -> None:
    client = Client()
    picture_id = uploaded_picture(client)
    asked = client.post(f"/pictures/{picture_id}/delete/")
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Delete this picture and its thumbnails?" in page
    assert f'action="/pictures/{picture_id}/delete/"' in page
    assert '<input type="hidden" name="confirmed" value="yes">' in page
    assert queued(DELETE) == []

    done = client.post(f"/pictures/{picture_id}/delete/", {"confirmed": "yes"})
    assert (done.status_code, done["Location"]) == (302, "/")
    assert queued(DELETE) == [{"type": "thumbnails.delete", "id": picture_id}]


def test_a_plain_form_delete_of_an_unknown_picture_still_says_so(media: Path) -> None:
    response = Client().post(f"/pictures/{uuid.uuid4()}/delete/")
    assert response.status_code == 404
    assert "That picture no longer exists." in response.content.decode()


def test_a_plain_form_delete_all_asks_first(media: Path) -> None:
    response = Client().post("/pictures/clear/")
    assert response.status_code == 200
    assert "Delete every picture and its thumbnails?" in response.content.decode()


async def test_static_files_are_served_whole_without_a_streaming_warning(media: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = await AsyncClient().get("/static/thumbnails/gallery.css")
    assert response.status_code == 200
    assert not response.streaming
    assert response.content == (EXAMPLE_STATIC / "gallery.css").read_bytes()
    assert response["Content-Length"] == str(len(response.content))
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.parametrize("path", ["/", "/static/thumbnails/gallery.css"])
def test_pages_declare_their_icon_and_files_keep_their_headers(media: Path, path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    if path == "/":
        assert '<link rel="icon" type="image/svg+xml" href="data:image/svg+xml,' in (
            response.content.decode()
        )
    else:
        assert response["Content-Type"].startswith("text/css")
        assert "Last-Modified" in response
