"""The example's URLconf: the gallery, the admin, and the static and media files.

One process serves everything in the demo; a production deployment puts a file server in
front of ``/static/`` and ``/media/`` instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import include, path, re_path
from django.views.static import serve as serve_media

View = Callable[..., HttpResponseBase]


def whole(view: View) -> View:
    """``view`` answering with the whole file in one response instead of a file stream.

    Django's file views stream from a sync iterator, which an ASGI server can only consume
    with a warning ("StreamingHttpResponse must consume synchronous iterators") per file. The
    demo's files are small (a page's script and style, thumbnails, uploads up to 5 MB).
    """

    @functools.wraps(view)
    def serve(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if not response.streaming:
            return response
        try:
            content = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        finally:
            response.close()
        answer = HttpResponse(content, status=response.status_code)
        for header, value in response.headers.items():
            answer.headers[header] = value
        return answer

    return serve


urlpatterns = [
    path("", include("example.thumbnails.urls")),
    # Django's admin, with the worker's Channels, Workers, Dead letters and Task results pages.
    path("admin/", admin.site.urls),
    re_path(r"^static/(?P<path>.*)$", whole(serve_static), {"insecure": True}),
    re_path(r"^media/(?P<path>.*)$", whole(serve_media), {"document_root": settings.MEDIA_ROOT}),
]
