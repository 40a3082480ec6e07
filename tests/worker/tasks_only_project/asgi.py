"""An ``asgi.py`` as ``django-admin startproject`` writes it, with a router for websockets.

``get_asgi_application()`` runs ``django.setup()`` again, which sets Django's logging up again.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.worker.tasks_only_project.asgi_settings")
django_asgi_app = get_asgi_application()

from routing import ProtocolTypeRouter  # noqa: E402  (after Django is set up)

# django-stubs types an ASGIHandler's scope as a dict, the ASGI spec as a mapping.
application = ProtocolTypeRouter({"http": django_asgi_app})  # type: ignore[dict-item]
