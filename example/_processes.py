"""The demo's child processes: each in a process group of its own, stopped in order, never left.

Only the launcher handles SIGINT and SIGTERM; children run in their own sessions, so a Ctrl-C in
the terminal reaches the launcher alone and it stops them one by one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

# prctl(PR_SET_PDEATHSIG): Linux sends the child this signal when the launcher dies, even by
# SIGKILL, so the children stop with it.
_PR_SET_PDEATHSIG = 1


def say(line: str, *, error: bool = False) -> None:
    """Print a status line; a closed terminal or pipe must not stop the shutdown."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr if error else sys.stdout, flush=True)


class ChildFailed(RuntimeError):
    """A child process exited when it should not have, or the demo did not come up."""


_SAME_SIGNAL_S = 0.5


class Stop:
    """Set by the first SIGINT/SIGTERM; a second one kills every child at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signals = 0
        self._first_signal_at = 0.0
        self.children: list[Child] = []

    def install(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._on_signal)

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> None:
        self._event.wait(timeout_s)

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        # One Ctrl-C can arrive twice: from the terminal to the whole foreground group, and
        # forwarded by a parent such as `uv run`. Only a later one means "kill everything".
        if self.signals and now - self._first_signal_at < _SAME_SIGNAL_S:
            return
        if not self.signals:
            self._first_signal_at = now
        self.signals += 1
        if self.signals > 1:
            say(f"Received {signal.Signals(number).name} again: killing everything")
            for child in self.children:
                child.kill()
        self._event.set()


def _die_with_launcher() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _preexec() -> Callable[[], None] | None:
    return _die_with_launcher if sys.platform == "linux" else None


class Child:
    """One child process, started in a new session (so its pid is its process group id)."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        stop: Stop,
    ) -> None:
        self.name = name
        self.process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_preexec(),
        )
        self.pid = self.process.pid
        stop.children.append(self)

    def raise_if_exited(self, when: str) -> None:
        code = self.process.poll()
        if code is not None:
            raise ChildFailed(f"The {self.name} process exited with code {code} {when}.")

    def wait_for_exit(self, stop: Stop) -> int:
        """Wait until the child exits by itself; stop it if the demo is stopped meanwhile."""
        while self.process.poll() is None:
            if stop.requested:
                self.stop(10)
                break
            stop.wait(0.2)
        return self.process.wait()

    def stop(self, timeout_s: float) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; then kill what is left of its group."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                say(f"The {self.name} process did not stop in {timeout_s:g} s: killing it")
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        # Anything it started and left behind shares its process group.
        self._signal_group(signal.SIGKILL)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, number)
