"""Sync ``send()`` against ``async_to_sync(channel_layer.send)``, as a WSGI view calls them.

Run from the repository root: ``python bench/bench_send.py``. Starts its own redis-server, then
calls both from a thread without a running event loop, alternating rounds, and reports the best
round of each and their ratio. Both go through the same checked channel (ours also validates
the message and the channel name against the project's router on every call).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from bench._processes import redis_server
from routing import ChannelNameRouter, ProtocolTypeRouter
from routing.types import Receive, Scope, Send

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
ROUND_S = float(os.environ.get("BENCH_ROUND_S", "1.0"))
TARGET_RATIO = 10.0
CHANNEL = "thumbnails-generate"


async def _consumer(scope: Scope, receive: Receive, send: Send) -> None:
    return None


# The project's router, which send() reads to refuse unknown channels.
application = ProtocolTypeRouter({"channel": ChannelNameRouter({CHANNEL: _consumer})})


def _configure(url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench-only",
        USE_TZ=True,
        INSTALLED_APPS=["worker"],
        ASGI_APPLICATION="bench.bench_send.application",
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [url], "capacity": 10_000_000, "expiry": 3600},
            }
        },
    )
    django.setup()


def _rate(call: Callable[[int], None], seconds: float) -> float:
    """Calls per second of ``call`` over about ``seconds``, in a thread with no event loop."""
    result: list[float] = []

    def run() -> None:
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            call(count)
            count += 1
        result.append(count / (time.perf_counter() - start))

    thread = threading.Thread(target=run, name="wsgi-like request thread")
    thread.start()
    thread.join()
    return result[0]


def main() -> None:
    with redis_server() as url:
        _configure(url)
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        from worker import send
        from worker.sending.pools import close_connections

        layer: Any = get_channel_layer()

        def ours(number: int) -> None:
            send(CHANNEL, {"type": "thumbnails.generate", "id": number})

        def channels(number: int) -> None:
            async_to_sync(layer.send)(CHANNEL, {"type": "thumbnails.generate", "id": number})

        # Warm-up: imports, the router lookup, the first connections.
        _rate(ours, 0.2)
        _rate(channels, 0.2)
        rates: dict[str, list[float]] = {"send()": [], "async_to_sync(layer.send)": []}
        for _ in range(ROUNDS):
            rates["send()"].append(_rate(ours, ROUND_S))
            rates["async_to_sync(layer.send)"].append(_rate(channels, ROUND_S))
        close_connections()

    print(f"Sync send from a thread without an event loop: {ROUNDS} rounds of {ROUND_S:g} s")
    for name, values in rates.items():
        best = max(values)
        print(
            f"  {name:<27} best {best:8.0f} calls/s ({1000 / best:.3f} ms/call), "
            f"median {statistics.median(values):8.0f} calls/s"
        )
    ratio = max(rates["send()"]) / max(rates["async_to_sync(layer.send)"])
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"  ratio {ratio:.1f}x (target >= {TARGET_RATIO:g}x: {verdict})")


if __name__ == "__main__":
    main()
