"""The Django app ``worker`` (label ``channel_worker``): ``manage.py runworker`` and checks."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig, apps


class ChannelWorkerConfig(AppConfig):
    name = "worker"
    # A distinct label, so a project's own app called "worker" cannot clash with this one.
    label = "channel_worker"
    verbose_name = "Channel worker"

    def import_models(self) -> None:
        super().import_models()
        # The admin pages' permissions need models (worker/admin/models.py; no tables), and
        # Django creates permissions only for an app with a models module.
        self.models_module = import_module("worker.admin.models")

    def ready(self) -> None:
        from worker import checks  # noqa: F401  (registers the system checks)

        if apps.is_installed("django.contrib.admin"):
            from worker.admin.site import register

            register()
