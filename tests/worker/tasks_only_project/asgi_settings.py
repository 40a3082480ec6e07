"""The Tasks project with an ``ASGI_APPLICATION`` too, as a project that also serves the web."""

from __future__ import annotations

from tests.worker.tasks_only_project.settings import *  # noqa: F403

ASGI_APPLICATION = "tests.worker.tasks_only_project.asgi.application"
