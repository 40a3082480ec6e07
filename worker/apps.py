"""The Django app ``worker`` (label ``channel_worker``): ``manage.py runworker`` and checks."""

from __future__ import annotations

from django.apps import AppConfig


class ChannelWorkerConfig(AppConfig):
    name = "worker"
    # A distinct label, so a project's own app called "worker" cannot clash with this one.
    label = "channel_worker"
    verbose_name = "Channel worker"

    def ready(self) -> None:
        from worker import checks  # noqa: F401  (registers the system checks)
