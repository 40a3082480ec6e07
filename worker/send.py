"""The send API's earlier import path: ``from worker.send import send`` keeps working.

New code imports it from the package: ``from worker import send``. Importing this module makes
``worker.send`` this module rather than the function, so the module is made callable as ``send``
and either spelling of ``worker.send(...)`` keeps sending.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from worker.sending.api import asend, send, send_on_commit

__all__ = ["asend", "send", "send_on_commit"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> None:
        send(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
