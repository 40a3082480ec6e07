"""Names the worker gives and checks: channel and group names, task channels, worker ids.

The naming rule is Channels' own: asked of the layer, so a layer with other limits is obeyed, or
of Channels' base layer for a name checked before any layer is at hand. This module only says
it once, in the words every error uses.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from typing import Any

#: What a channel or group name may contain, as every error about one says it.
NAME_RULE = "ASCII letters, digits, hyphens, underscores and periods, shorter than 100 characters"
#: How process-specific channels (``layer.new_channel()``) differ.
PROCESS_LOCAL_RULE = "a process-specific channel adds '!' and a suffix"

#: ``tasks.<queue_name>`` carries the ``django.tasks`` queue of that name.
TASK_CHANNEL_PREFIX = "tasks."
#: The ``"type"`` of task messages on task channels.
TASK_MESSAGE_TYPE = "task.run"
#: The key of a task message that holds the task's import path, e.g. ``reports.tasks.nightly``.
TASK_PATH_KEY = "task"


def is_valid_channel_name(layer: Any, name: object, *, process_local: bool = True) -> bool:
    """Whether ``layer`` accepts ``name`` as a channel; ``!`` names only when ``process_local``."""
    if not isinstance(name, str) or (not process_local and "!" in name):
        return False
    try:
        return bool(layer.require_valid_channel_name(name))
    except TypeError:
        return False


def is_plain_channel_name(name: object) -> bool:
    """Whether ``name`` is a channel name by Channels' own rule, not process-specific, for a
    name checked before any layer is at hand (a task queue's channel in ``TASKS``)."""
    return is_valid_channel_name(_rule_layer(), name, process_local=False)


@functools.cache
def _rule_layer() -> Any:
    # Channels' base layer holds the rule; loaded on first use, as it imports Django.
    from channels.layers import BaseChannelLayer

    return BaseChannelLayer()


def is_valid_group_name(layer: Any, name: object) -> bool:
    """Whether ``layer`` accepts ``name`` as a group."""
    try:
        return bool(layer.require_valid_group_name(name))
    except TypeError:
        return False


def task_channel(queue_name: str) -> str:
    """The channel that carries the tasks of ``queue_name``."""
    return f"{TASK_CHANNEL_PREFIX}{queue_name}"


def is_task_channel(channel: str) -> bool:
    return channel.startswith(TASK_CHANNEL_PREFIX) and len(channel) > len(TASK_CHANNEL_PREFIX)


def process_id() -> str:
    """``host:pid`` of this process, the prefix of every worker id it runs."""
    global _process_id
    pid = os.getpid()
    if _process_id[0] != pid:
        # Asked once per process (a forked child asks again): every task run names it.
        _process_id = (pid, f"{socket.gethostname()}:{pid}")
    return _process_id[1]


_process_id = (0, "")


def new_worker_id() -> str:
    """``host:pid:token``: one ``Worker`` of this process, as health, status, dead letters say."""
    return f"{process_id()}:{uuid.uuid4().hex[:8]}"
