"""System checks: make sure our ``runworker`` is the one ``manage.py`` runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Tags, Warning, register

# Apps that ship a management command named "runworker" of their own.
_COMPETING_APPS = ("channels", "daphne")


@register(Tags.compatibility)
def check_installed_apps_order(
    *,
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Warn when an app listed before ``worker`` would shadow its ``runworker`` command.

    Django resolves a management command to the first app in ``INSTALLED_APPS`` that defines it.
    """
    names = [config.name for config in apps.get_app_configs()]
    if "worker" not in names:
        return []
    ours = names.index("worker")
    earlier = [name for name in _COMPETING_APPS if name in names[:ours]]
    return [
        Warning(
            f"{name!r} comes before 'worker' in INSTALLED_APPS, so `manage.py runworker` runs "
            f"{name}'s worker, not channel-worker's.",
            hint=f"Move 'worker' above {name!r} in INSTALLED_APPS.",
            id="channel_worker.W001",
        )
        for name in earlier
    ]
