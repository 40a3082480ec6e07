"""The example's URLconf: the gallery, and its static and media files.

One process serves everything in the demo; a production deployment puts a file server in
front of ``/static/`` and ``/media/`` instead.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from django.views.static import serve as serve_media

urlpatterns = [
    path("", include("example.thumbnails.urls")),
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
    re_path(r"^media/(?P<path>.*)$", serve_media, {"document_root": settings.MEDIA_ROOT}),
]
