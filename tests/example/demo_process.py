"""The demo launcher (``example/run_demo.py``) as a subprocess: ready line, pids, clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = REPO_ROOT / "example" / "run_demo.py"
READY = re.compile(r"Demo ready at (?P<url>http://\S+)")
PROCESSES = re.compile(r"Demo processes: (?P<pids>(?:\w+=\d+ ?)+)$")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DemoProcess:
    """``run_demo.py`` in a session of its own, its output collected by a reader thread."""

    def __init__(self, port: int, data_dir: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--port", str(port), "--data-dir", str(data_dir)],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="demo output", daemon=True)
        self._reader.start()
        self.url = ""
        self.children: dict[str, int] = {}

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_ready(self, timeout_s: float) -> str:
        """The page's URL once the launcher says the demo is ready; the children's pids too."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self.lines:
                    if match := PROCESSES.search(line):
                        self.children = {
                            name: int(pid)
                            for name, pid in (part.split("=") for part in match["pids"].split())
                        }
                    if match := READY.search(line):
                        self.url = match["url"]
                if self.url:
                    return self.url
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"The demo exited with {self.process.returncode} before it was ready:\n"
                        f"{self.output}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"The demo was not ready in {timeout_s} s:\n{self.output}")
                self._changed.wait(min(left, 0.5))

    def interrupt(self, timeout_s: float) -> int:
        """Ctrl-C: SIGINT to the launcher alone, as a terminal would; its exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout_s)
        finally:
            self._reader.join(5)

    def close(self) -> None:
        """Kill whatever is left (after a failed test nothing may outlive it); close the pipe."""
        for pid in [self.process.pid, *self.children.values()]:
            if group_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
