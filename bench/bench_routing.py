"""Dispatch throughput of our routers against Channels' on the same route tables.

Run from the repository root: ``python bench/bench_routing.py`` (no Django settings needed).
Each scenario dispatches to the last route of the table with a different captured value per
call, alternating the two implementations round by round in one process, and reports the best
round of each (and the median ratio within a round). Exits 1 when a target ratio is missed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import channels.routing
import django
from django.urls import URLPattern, path

import routing
from routing.types import Message, Receive, Scope, Send

# Many short rounds: on a shared machine, more chances for each side to run undisturbed.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "40"))
ROUND_S = float(os.environ.get("BENCH_ROUND_S", "0.05"))
TARGETS = {"10": 1.5, "100": 3.0, "dict": 0.9}

AnyRouter = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]


class Sink:
    """The leaf application: keeps the last ``url_route`` it saw, nothing else."""

    def __init__(self) -> None:
        self.url_route: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.url_route = scope.get("url_route")


async def _receive() -> Message:
    return {"type": "websocket.connect"}


async def _send(message: Message) -> None:
    return None


# Four route shapes, cycled through the table so every converter appears: the route for the
# n-th entry and the path to its i-th distinct match.
_SHAPES: tuple[tuple[str, Callable[[int, int], str]], ...] = (
    ("ws/room{n}/<int:room>/", lambda n, i: f"ws/room{n}/{i}/"),
    ("ws/slug{n}/<slug:name>/", lambda n, i: f"ws/slug{n}/item-{i}/"),
    ("ws/str{n}/<str:name>/<int:page>/", lambda n, i: f"ws/str{n}/user{i}/{i % 97}/"),
    ("ws/uuid{n}/<uuid:key>/", lambda n, i: f"ws/uuid{n}/{uuid.UUID(int=i)}/"),
)


def route(pattern: str, application: Any) -> URLPattern:
    """``path()`` for an ASGI application (django-stubs types the view as a Django view)."""
    url_pattern: URLPattern = path(pattern, application)
    return url_pattern


def flat_table(size: int, leaf: Sink) -> tuple[list[URLPattern], Callable[[int], str]]:
    """``size`` routes and a function giving the i-th path that hits the last one."""
    routes = [route(_SHAPES[n % 4][0].format(n=n), leaf) for n in range(size)]
    last = size - 1
    make = _SHAPES[last % 4][1]
    return routes, lambda i: "/" + make(last, i)


def nested_table(
    size: int, leaf: Sink, router: type[Any]
) -> tuple[list[URLPattern], Callable[[int], str]]:
    """``size`` routes: the first half flat, the second half in nested routers of five each.

    The last nested router holds the last route, so both routers walk past the flat half and the
    other nested prefixes first.
    """
    flat = size // 2
    groups = (size - flat) // 5
    routes = [route(_SHAPES[n % 4][0].format(n=n), leaf) for n in range(flat)]
    for group in range(groups):
        inner = [
            route(_SHAPES[n % 4][0].format(n=n).removeprefix("ws/"), leaf)
            for n in range(flat + group * 5, flat + group * 5 + 5)
        ]
        routes.append(route(f"ws/group{group}/<int:shard>/", router(inner)))
    last = size - 1
    make = _SHAPES[last % 4][1]

    def make_path(i: int) -> str:
        leaf_path = make(last, i).removeprefix("ws/")
        return f"/ws/group{groups - 1}/{i % 13}/{leaf_path}"

    return routes, make_path


@dataclass
class Scenario:
    name: str
    target: float
    channels_app: AnyRouter
    ours_app: AnyRouter
    channels_leaf: Sink
    ours_leaf: Sink
    make_scope: Callable[[int], Scope]
    check_url_route: bool = True


def url_scenario(name: str, size: int, nested: bool) -> Scenario:
    channels_leaf, ours_leaf = Sink(), Sink()
    if nested:
        channels_routes, make_path = nested_table(size, channels_leaf, channels.routing.URLRouter)
        ours_routes, _ = nested_table(size, ours_leaf, routing.URLRouter)
    else:
        channels_routes, make_path = flat_table(size, channels_leaf)
        ours_routes, _ = flat_table(size, ours_leaf)
    return Scenario(
        name=name,
        target=TARGETS["100" if size >= 100 else "10"],
        channels_app=channels.routing.URLRouter(channels_routes),
        ours_app=routing.URLRouter(ours_routes),
        channels_leaf=channels_leaf,
        ours_leaf=ours_leaf,
        make_scope=lambda i: {"type": "websocket", "path": make_path(i)},
    )


def dict_scenarios() -> list[Scenario]:
    protocol_leaves = (Sink(), Sink())
    channel_leaves = (Sink(), Sink())
    types = ["http", "websocket", "channel", "lifespan"]
    names = [f"task-{n}" for n in range(10)]
    return [
        Scenario(
            name="ProtocolTypeRouter (4 types)",
            target=TARGETS["dict"],
            channels_app=channels.routing.ProtocolTypeRouter(
                {kind: protocol_leaves[0] for kind in types}
            ),
            ours_app=routing.ProtocolTypeRouter({kind: protocol_leaves[1] for kind in types}),
            channels_leaf=protocol_leaves[0],
            ours_leaf=protocol_leaves[1],
            make_scope=lambda i: {"type": "websocket", "path": "/"},
            check_url_route=False,
        ),
        Scenario(
            name="ChannelNameRouter (10 channels)",
            target=TARGETS["dict"],
            channels_app=channels.routing.ChannelNameRouter(
                {name: channel_leaves[0] for name in names}
            ),
            ours_app=routing.ChannelNameRouter({name: channel_leaves[1] for name in names}),
            channels_leaf=channel_leaves[0],
            ours_leaf=channel_leaves[1],
            make_scope=lambda i: {"type": "channel", "channel": "task-9"},
            check_url_route=False,
        ),
    ]


def drive(app: AnyRouter, scope: Scope) -> None:
    """Run one call to completion without an event loop.

    Routers and leaves here never suspend, so ``send(None)`` finishes each call; an event loop's
    per-task cost would otherwise dominate both sides.
    """
    coroutine = app(scope, _receive, _send)
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a router suspended; the benchmark cannot drive it by hand")


def check_same_results(scenario: Scenario, calls: int) -> None:
    """Both routers must reach the leaf with identical ``url_route`` for every benchmarked path."""
    for i in range(calls):
        scenario.channels_leaf.url_route = scenario.ours_leaf.url_route = None
        drive(scenario.channels_app, scenario.make_scope(i))
        drive(scenario.ours_app, scenario.make_scope(i))
        theirs, ours = scenario.channels_leaf.url_route, scenario.ours_leaf.url_route
        if scenario.check_url_route and (theirs is None or theirs != ours):
            raise SystemExit(
                f"{scenario.name}: url_route differs for {scenario.make_scope(i)!r}: "
                f"channels {theirs!r}, ours {ours!r}"
            )


def one_round(app: AnyRouter, scopes: Sequence[Scope]) -> float:
    """Calls per second dispatching every scope once."""
    started = time.perf_counter()
    for scope in scopes:
        coroutine = app(scope, _receive, _send)
        # Not contextlib.suppress(): a context manager per call would be timed too.
        try:  # noqa: SIM105
            coroutine.send(None)
        except StopIteration:
            pass
    return len(scopes) / (time.perf_counter() - started)


def calibrate(app: AnyRouter, make_scope: Callable[[int], Scope]) -> int:
    """How many calls fill roughly ``ROUND_S`` seconds."""
    probe = [make_scope(i) for i in range(2000)]
    rate = one_round(app, probe)
    return max(2000, int(rate * ROUND_S))


def measure(scenario: Scenario) -> tuple[float, float, float]:
    """The best rate of each implementation over alternating rounds, and the median ratio.

    The median of the per-round ratios checks the best rates when the machine stays busy.
    """
    calls = calibrate(scenario.channels_app, scenario.make_scope)
    check_same_results(scenario, calls)
    channels_rates: list[float] = []
    ours_rates: list[float] = []
    for round_number in range(ROUNDS):
        # Fresh scopes each round: a router must not see a scope it already handled.
        channels_scopes = [scenario.make_scope(i) for i in range(calls)]
        ours_scopes = [scenario.make_scope(i) for i in range(calls)]
        # Alternate which goes first, so neither always runs on a warmer or quieter machine.
        if round_number % 2:
            ours_rates.append(one_round(scenario.ours_app, ours_scopes))
            channels_rates.append(one_round(scenario.channels_app, channels_scopes))
        else:
            channels_rates.append(one_round(scenario.channels_app, channels_scopes))
            ours_rates.append(one_round(scenario.ours_app, ours_scopes))
    ratios = [ours / theirs for ours, theirs in zip(ours_rates, channels_rates, strict=True)]
    return max(channels_rates), max(ours_rates), statistics.median(ratios)


def main() -> int:
    scenarios = [
        url_scenario("URLRouter flat 10", 10, nested=False),
        url_scenario("URLRouter flat 100", 100, nested=False),
        url_scenario("URLRouter nested 10", 10, nested=True),
        url_scenario("URLRouter nested 100", 100, nested=True),
        *dict_scenarios(),
    ]
    print(
        f"Python {sys.version.split()[0]}, Django {django.__version__}, "
        f"best of {ROUNDS} alternating rounds of ~{ROUND_S}s each"
    )
    rows = []
    missed = []
    for scenario in scenarios:
        theirs, ours, median_ratio = measure(scenario)
        ratio = ours / theirs
        verdict = "ok" if ratio >= scenario.target else f"MISSED (target {scenario.target}x)"
        if ratio < scenario.target:
            missed.append(scenario.name)
        print(
            f"{scenario.name}: channels {theirs:,.0f}/s, ours {ours:,.0f}/s, {ratio:.2f}x "
            f"(median round {median_ratio:.2f}x) {verdict}"
        )
        rows.append((scenario, theirs, ours, ratio, median_ratio))
    print()
    print("| scenario | channels calls/s | ours calls/s | ratio | median round ratio | target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for scenario, theirs, ours, ratio, median_ratio in rows:
        print(
            f"| {scenario.name} | {theirs:,.0f} | {ours:,.0f} | {ratio:.2f}x | "
            f"{median_ratio:.2f}x | >= {scenario.target}x |"
        )
    if missed:
        print(f"\nTargets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
