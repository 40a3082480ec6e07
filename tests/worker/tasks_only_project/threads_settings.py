"""The tasks-only project with ``CHANNEL_WORKER`` read from ``CW_TEST_CHANNEL_WORKER`` (JSON)."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.worker.tasks_only_project.settings import *  # noqa: F403

CHANNEL_WORKER: dict[str, Any] = json.loads(os.environ.get("CW_TEST_CHANNEL_WORKER", "{}"))
