"""``channel-worker status``: the table, ``--json`` and ``--watch``, with and without a worker."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker._ops import OPS_SETTINGS, Ops, channel_worker_command, stop, wait_for
from tests.worker.ops_project.consumers import OPS_CHANNEL
from tests.worker.process_helpers import REPO_ROOT, wait_until
from worker.transport.keys import ChannelKeys

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

KEYS = ChannelKeys.for_channel("asgi", OPS_CHANNEL)
FIELDS = {
    "channel",
    "queued",
    "oldest_age_s",
    "in_flight",
    "delayed",
    "dead_letters",
    "live_workers",
    "completed_last_minute",
}
# Wide enough that rich neither wraps nor truncates a heading.
WIDE = {"COLUMNS": "200", "LINES": "50", "TERM": "xterm"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def ops(redis_url: str, tmp_path: Path) -> Iterator[Ops]:
    harness = Ops(redis_url, tmp_path)
    yield harness
    harness.close()


def status_command(*args: str) -> list[str]:
    return channel_worker_command("--settings", OPS_SETTINGS, "status", *args)


def status_json(ops: Ops, *channels: str) -> list[dict[str, Any]]:
    result = ops.run(status_command("--json", *channels))
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def status_table(ops: Ops, *channels: str) -> str:
    result = ops.run(status_command(*channels), **WIDE)
    assert result.returncode == 0, result.stderr
    return result.stdout


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The rows of a rendered status table by channel, each cell by its heading."""
    lines = ANSI.sub("", text).splitlines()
    (header,) = [line for line in lines if line.startswith("┃")]
    headings = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows = {}
    for line in lines:
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows[cells[0]] = dict(zip(headings, cells, strict=True))
    return rows


def backdate_oldest(ops: Ops, age_s: float) -> None:
    """Make the channel's oldest message look ``age_s`` old, as if it had waited that long."""
    oldest: Any = ops.client.zrange(KEYS.queue, 0, 0)
    ops.client.zadd(KEYS.queue, {oldest[0]: time.time() - age_s}, xx=True)


def test_status_without_a_worker_shows_queued_messages_and_the_oldest_age(ops: Ops) -> None:
    ops.send(*({"type": "ops.run", "id": f"m{n}"} for n in range(3)))
    backdate_oldest(ops, 120)

    (row,) = status_json(ops, OPS_CHANNEL)
    assert set(row) == FIELDS
    assert 120 <= row.pop("oldest_age_s") < 180
    assert row == {
        "channel": OPS_CHANNEL,
        "queued": 3,
        "in_flight": 0,
        "delayed": 0,
        "dead_letters": 0,
        "live_workers": 0,
        "completed_last_minute": 0,
    }

    shown = table_rows(status_table(ops, OPS_CHANNEL))[OPS_CHANNEL]
    assert re.fullmatch(r"1[2-7]\d\.\d s", shown.pop("oldest age"))
    assert shown == {
        "channel": OPS_CHANNEL,
        "queued": "3",
        "in flight": "0",
        "retrying": "0",
        "dead letters": "0",
        "live workers": "0",
        "done/min": "0",
    }


def test_status_piped_without_columns_prints_the_whole_table(ops: Ops) -> None:
    # Past 80 columns with every heading: rich would cut the names and wrap the headings.
    long_name = "thumbnails-generate-every-size-for-the-gallery-and-the-feed"
    ops.send({"type": "ops.run", "id": "m1"}, channel=long_name)

    # As a CI runner has it: colours forced on, output to a pipe.
    result = ops.run(status_command(OPS_CHANNEL, long_name), FORCE_COLOR="1")

    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == {OPS_CHANNEL, long_name}
    assert rows[long_name]["queued"] == "1"
    assert max(len(line) for line in result.stdout.splitlines()) > 80


def test_status_without_workers_or_channels_says_so(ops: Ops) -> None:
    assert status_json(ops) == []
    text = status_table(ops)
    assert "No live workers and no channels named." in text
    assert table_rows(text) == {}


def test_status_with_a_worker_shows_in_flight_work_dead_letters_and_throughput(
    ops: Ops,
) -> None:
    worker = ops.runworker(
        "--concurrency", "2",
        "--prefetch", "1",
        "--max-attempts", "1",
        "--health-interval-s", "0.5",
        "--shutdown-timeout-s", "1",
    )  # fmt: skip
    ops.send(*({"type": "ops.run", "id": f"quick{n}"} for n in range(3)))
    ops.send({"type": "ops.fail", "id": "bad"})
    wait_until(
        lambda: len(ops.handled_ids()) == 3 and ops.client.zcard(KEYS.dead) == 1,
        "three messages handled and one dead-lettered",
        log=worker,
    )
    # Two handlers busy, one message prefetched, two left in Redis.
    ops.send(*({"type": "ops.run", "id": f"slow{n}", "sleep_s": 60} for n in range(5)))

    def settled() -> dict[str, Any] | None:
        rows = status_json(ops)
        if len(rows) == 1 and rows[0]["in_flight"] == 2 and rows[0]["completed_last_minute"]:
            return rows[0]
        return None

    row = wait_for(settled, "two in flight and the throughput", timeout_s=60, log=worker)
    assert 0 <= row.pop("oldest_age_s") < 60
    assert row == {
        "channel": OPS_CHANNEL,
        "queued": 2,
        "in_flight": 2,
        "delayed": 0,
        "dead_letters": 1,
        "live_workers": 1,
        "completed_last_minute": 3,
    }

    shown = table_rows(status_table(ops))[OPS_CHANNEL]
    assert re.fullmatch(r"\d+\.\d s", shown.pop("oldest age"))
    assert shown == {
        "channel": OPS_CHANNEL,
        "queued": "2",
        "in flight": "2",
        "retrying": "0",
        "dead letters": "1",
        "live workers": "1",
        "done/min": "3",
    }
    assert stop(worker) == 0


class Terminal:
    """A process on a pseudo-terminal, as in a user's shell; collects everything it draws."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._master, follower = pty.openpty()
        self.process = subprocess.Popen(
            command,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        os.close(follower)
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def read_until(self, pattern: str, *, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not re.search(pattern, self.text):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{pattern!r} not drawn within {timeout_s} s; screen:\n{self.text}")
            ready, _, _ = select.select([self._master], [], [], remaining)
            if ready:
                try:
                    self.raw += os.read(self._master, 65536)
                except OSError:  # The process ended and closed the terminal.
                    pytest.fail(f"{pattern!r} not drawn before exit; screen:\n{self.text}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self._master)


def test_status_watch_redraws_in_place_until_interrupted(ops: Ops) -> None:
    ops.send({"type": "ops.run", "id": "first"})
    terminal = Terminal(
        status_command("--watch", "--interval-s", "0.2", OPS_CHANNEL), ops.env(**WIDE)
    )
    try:
        queued = rf"│ {OPS_CHANNEL} +│ +{{}} │"
        terminal.read_until(queued.format(1))
        ops.send({"type": "ops.run", "id": "second"}, {"type": "ops.run", "id": "third"})
        terminal.read_until(queued.format(3))

        # Each refresh moves the cursor back up over the previous table and draws it again.
        assert terminal.text.count("channel-worker status at") >= 2
        assert b"\x1b[1A\x1b[2K" in terminal.raw
        terminal.process.send_signal(signal.SIGINT)
        assert terminal.process.wait(30) == 0
    finally:
        terminal.close()
