"""System checks: make sure our ``runworker`` is the one ``manage.py`` runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Tags, Warning, register
from django.core.management import find_commands


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
    configs = list(apps.get_app_configs())
    names = [config.name for config in configs]
    if "worker" not in names:
        return []
    earlier = [
        config.name
        for config in configs[: names.index("worker")]
        if "runworker" in find_commands(os.path.join(config.path, "management"))
    ]
    return [
        Warning(
            f"{name!r} comes before 'worker' in INSTALLED_APPS, so `manage.py runworker` runs "
            f"{name}'s worker, not channel-worker's.",
            hint=f"Move 'worker' above {name!r} in INSTALLED_APPS.",
            id="channel_worker.W001",
        )
        for name in earlier
    ]
