"""Start-up checks: the ``runworker`` app order system check and ``check_served``."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from channels.routing import ChannelNameRouter as ChannelsChannelNameRouter
from channels.routing import ProtocolTypeRouter as ChannelsProtocolTypeRouter
from django.core import checks
from django.test import override_settings

from routing import ChannelNameRouter, ProtocolTypeRouter
from routing.types import Receive, Scope, Send
from worker.checks import check_installed_apps_order
from worker.errors import ConfigurationError
from worker.project import check_served

DJANGO_APPS = ["django.contrib.auth", "django.contrib.contenttypes"]


def stand_in_app(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *commands: str
) -> None:
    """An importable app ``name`` whose ``management/commands`` holds ``commands``."""
    folder = tmp_path / name
    (folder / "management" / "commands").mkdir(parents=True)
    for command in commands:
        (folder / "management" / "commands" / f"{command}.py").write_text("")
    module = types.ModuleType(name)
    module.__file__ = str(folder / "__init__.py")
    monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def daphne_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for the ``daphne`` app (not installed here): like daphne, only ``runserver``."""
    stand_in_app("daphne", tmp_path, monkeypatch, "runserver")


@pytest.fixture
def other_worker_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An app with a ``runworker`` command of its own."""
    stand_in_app("otherworker", tmp_path, monkeypatch, "runworker")


def order_warnings() -> list[checks.CheckMessage]:
    return [m for m in check_installed_apps_order() if m.id == "channel_worker.W001"]


def test_check_warns_when_channels_comes_before_worker() -> None:
    with override_settings(INSTALLED_APPS=[*DJANGO_APPS, "channels", "worker"]):
        [warning] = order_warnings()
    assert warning.level == checks.WARNING
    assert warning.msg == (
        "'channels' comes before 'worker' in INSTALLED_APPS, so `manage.py runworker` runs "
        "channels's worker, not channel-worker's."
    )
    assert warning.hint == "Move 'worker' above 'channels' in INSTALLED_APPS."


@pytest.mark.usefixtures("daphne_app")
def test_daphne_before_worker_is_fine_as_daphne_has_no_runworker() -> None:
    # Daphne's docs ask for it first in INSTALLED_APPS, for its runserver.
    with override_settings(INSTALLED_APPS=["daphne", *DJANGO_APPS, "worker"]):
        assert order_warnings() == []


@pytest.mark.usefixtures("daphne_app", "other_worker_app")
def test_check_warns_once_for_each_app_with_a_runworker_before_worker() -> None:
    with override_settings(INSTALLED_APPS=["daphne", "otherworker", "channels", "worker"]):
        warnings = order_warnings()
    assert [warning.msg.split()[0] for warning in warnings] == ["'otherworker'", "'channels'"]


@pytest.mark.usefixtures("daphne_app")
def test_check_is_silent_when_worker_comes_first() -> None:
    with override_settings(INSTALLED_APPS=[*DJANGO_APPS, "worker", "daphne", "channels"]):
        assert check_installed_apps_order() == []


def test_check_is_silent_without_worker_installed() -> None:
    with override_settings(INSTALLED_APPS=[*DJANGO_APPS, "channels"]):
        assert check_installed_apps_order() == []


def test_check_runs_with_the_project_checks() -> None:
    with override_settings(INSTALLED_APPS=[*DJANGO_APPS, "channels", "worker"]):
        messages = checks.run_checks(tags=[checks.Tags.compatibility])
    assert "channel_worker.W001" in [message.id for message in messages]


# check_served


async def plain_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in application; never called."""


def test_check_served_accepts_channels_the_router_knows() -> None:
    application = ProtocolTypeRouter(
        {"channel": ChannelNameRouter({"email": plain_app, "sms": plain_app})}
    )
    check_served(application, ["email", "sms"])
    check_served(application, ["sms"])


def test_check_served_lists_known_channels_for_a_missing_one() -> None:
    application = ProtocolTypeRouter(
        {"channel": ChannelNameRouter({"email": plain_app, "sms": plain_app})}
    )
    with pytest.raises(
        ConfigurationError,
        match=r"^No application for channel\(s\) 'thumbnail', 'push' in the ASGI application's "
        r"ChannelNameRouter; known channels: 'email', 'sms'\.$",
    ):
        check_served(application, ["email", "thumbnail", "push"])


def test_check_served_rejects_a_protocol_router_without_channel() -> None:
    application = ProtocolTypeRouter({"websocket": plain_app})
    with pytest.raises(
        ConfigurationError,
        match=r"ProtocolTypeRouter has no 'channel' entry.*add 'channel': ChannelNameRouter",
    ):
        check_served(application, ["email"])


def test_check_served_looks_through_channels_own_routers() -> None:
    application = ChannelsProtocolTypeRouter(
        {"channel": ChannelsChannelNameRouter({"email": plain_app})}
    )
    check_served(application, ["email"])
    with pytest.raises(ConfigurationError, match=r"'sms'.*known channels: 'email'"):
        check_served(application, ["sms"])
    with pytest.raises(ConfigurationError, match="no 'channel' entry"):
        check_served(ChannelsProtocolTypeRouter({"websocket": plain_app}), ["email"])


def test_check_served_accepts_a_bare_channel_name_router() -> None:
    check_served(ChannelNameRouter({"email": plain_app}), ["email"])
    with pytest.raises(ConfigurationError, match=r"channel\(s\) 'sms'"):
        check_served(ChannelNameRouter({"email": plain_app}), ["sms"])


def test_check_served_trusts_other_applications() -> None:
    check_served(plain_app, ["anything"])
    check_served(ProtocolTypeRouter({"channel": plain_app}), ["anything"])
