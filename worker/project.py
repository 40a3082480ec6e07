"""The Django project served: settings, import paths, ASGI application, its channels, layer."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from worker.errors import ConfigurationError
from worker.names import is_task_channel
from worker.transport.layer import check_layer

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer

    from routing.types import ASGIApp, Receive, Scope, Send


def import_path(pythonpath: Sequence[str]) -> list[str]:
    """``sys.path`` as ``setup_django()`` leaves it: the current directory and ``pythonpath``
    in front, as ``manage.py`` has its directory, unless they are on it already."""
    front = [entry for entry in dict.fromkeys([os.getcwd(), *pythonpath]) if entry not in sys.path]
    return [*front, *sys.path]


def setup_django(settings_module: str | None, pythonpath: list[str]) -> None:
    """Configure Django the way ``manage.py`` would, from the current directory."""
    sys.path[:] = import_path(pythonpath)
    if settings_module:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigurationError(
            "No Django settings: pass --settings mysite.settings (your project's settings "
            "module) or set DJANGO_SETTINGS_MODULE."
        )
    import django

    try:
        django.setup()
    except ImportError as error:
        raise ConfigurationError(
            f"Cannot import the settings module "
            f"{os.environ['DJANGO_SETTINGS_MODULE']!r}: {error}. Run the command from your "
            "project directory or add it with --pythonpath."
        ) from error


def import_string(dotted: str, what: str) -> Any:
    module_name, _, attribute = dotted.rpartition(".")
    if not module_name:
        raise ConfigurationError(
            f"{what} {dotted!r} is not a dotted path; expected e.g. 'mysite.asgi.application'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(f"Cannot import {what} module {module_name!r}: {error}") from error
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(
            f"{what} {dotted!r}: module {module_name!r} has no attribute {attribute!r}."
        ) from None


def load_application(dotted: str | None, channels: Sequence[str] = ()) -> ASGIApp:
    """The root application: ``--application`` or the ``ASGI_APPLICATION`` setting.

    A project that only uses ``django.tasks`` has neither: when every channel in ``channels`` is
    a task channel, which the worker serves itself, none is needed.
    """
    from django.conf import settings

    path = dotted or getattr(settings, "ASGI_APPLICATION", None)
    if not path and channels and all(is_task_channel(channel) for channel in channels):
        return no_application
    if not path:
        others = [channel for channel in channels if not is_task_channel(channel)]
        needs = f" for channel(s) {', '.join(map(repr, others))}" if others else ""
        raise ConfigurationError(
            f"No ASGI application{needs}: set ASGI_APPLICATION = 'mysite.asgi.application' in "
            "your settings or pass --application (task channels 'tasks.<queue>' need none)."
        )
    application: ASGIApp = import_string(path, "ASGI application")
    return application


async def no_application(scope: Scope, receive: Receive, send: Send) -> None:
    """The root application of a project without one: only task channels are served."""
    raise ConfigurationError(
        f"No ASGI application for {scope.get('channel') or scope['type']!r}: set "
        "ASGI_APPLICATION to serve channels other than task channels."
    )


def load_layer(alias: str) -> RedisChannelLayer:
    from channels.exceptions import InvalidChannelLayerError
    from channels.layers import get_channel_layer

    try:
        layer = get_channel_layer(alias)
    except InvalidChannelLayerError as error:
        raise ConfigurationError(f"Channel layer {alias!r} is misconfigured: {error}") from error
    return check_layer(layer, alias)


def _mapping(application: object, class_name: str) -> dict[str, Any] | None:
    mapping = getattr(application, "application_mapping", None)
    if type(application).__name__ == class_name and isinstance(mapping, dict):
        return mapping
    return None


def routed_channels(application: object) -> Mapping[str, Any] | None:
    """The channels ``application`` routes, each with its application; None when not known.

    Looks through ``ProtocolTypeRouter({"channel": ChannelNameRouter({...})})`` (ours or
    Channels', by class name); a ``ProtocolTypeRouter`` without ``"channel"`` routes none.
    """
    protocols = _mapping(application, "ProtocolTypeRouter")
    if protocols is not None:
        if "channel" not in protocols:
            return MappingProxyType({})
        application = protocols["channel"]
    names = _mapping(application, "ChannelNameRouter")
    return MappingProxyType(dict(names)) if names is not None else None


def check_served(application: object, channels: list[str]) -> None:
    """Fail at start-up when the root application cannot route a consumed channel.

    Looks through ``ProtocolTypeRouter({"channel": ChannelNameRouter({...})})`` (ours or
    Channels'); other shapes are trusted. Task channels are served by the worker itself.
    """
    channels = [channel for channel in channels if not is_task_channel(channel)]
    if not channels:
        return
    protocols = _mapping(application, "ProtocolTypeRouter")
    if protocols is not None and "channel" not in protocols:
        raise ConfigurationError(
            "The ASGI application's ProtocolTypeRouter has no 'channel' entry, so it cannot "
            "handle worker messages; add 'channel': ChannelNameRouter({...})."
        )
    names = routed_channels(application)
    if names is None:
        return
    missing = [channel for channel in channels if channel not in names]
    if missing:
        raise ConfigurationError(
            f"No application for channel(s) {', '.join(map(repr, missing))} in the ASGI "
            f"application's ChannelNameRouter; known channels: "
            f"{', '.join(map(repr, sorted(names))) or '(none)'}."
        )
