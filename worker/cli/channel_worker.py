"""``channel-worker``: status and dead letters, apart from ``runworker`` so that no subcommand
can clash with a channel name."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

import worker
from worker.cli.exit_codes import EXIT_CONFIG, EXIT_CRASHED, EXIT_NOT_FOUND, EXIT_OK
from worker.errors import CREDENTIALS, REFUSING, ConfigurationError, redis_fault


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channel-worker", description="Inspect and manage channel-worker queues."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {worker.__version__}")
    parser.add_argument("--settings", help="Django settings module (DJANGO_SETTINGS_MODULE)")
    parser.add_argument("--pythonpath", action="append", default=[], help="add to sys.path")
    parser.add_argument("--layer", default="default", help="CHANNEL_LAYERS alias")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="queues, in-flight work and workers per channel")
    status.add_argument("channels", nargs="*", metavar="CHANNEL", help="default: all served")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument("--watch", action="store_true", help="refresh in place")
    status.add_argument("--interval-s", type=float, default=2.0, help="--watch refresh interval")
    dead = commands.add_parser("dead", help="dead letters of a channel").add_subparsers(
        dest="action", required=True
    )
    listing = dead.add_parser("list", help="list dead letters, oldest first")
    listing.add_argument("channel")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    show = dead.add_parser("show", help="show one dead letter with its message and traceback")
    show.add_argument("channel")
    show.add_argument("id")
    requeue = dead.add_parser("requeue", help="put dead letters back on their channel")
    requeue.add_argument("channel")
    requeue.add_argument("id", nargs="?", help="one dead letter (default: all of them)")
    purge = dead.add_parser("purge", help="delete every dead letter of the channel")
    purge.add_argument("channel")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        from worker.project import load_layer, setup_django

        setup_django(options.settings, options.pythonpath)
        layer = load_layer(options.layer)
    except ConfigurationError as error:
        print(f"channel-worker: {error}", file=sys.stderr)
        return EXIT_CONFIG
    command = _status if options.command == "status" else _dead
    try:
        code: int = asyncio.run(command(layer, options))
    except KeyboardInterrupt:
        code = EXIT_OK
    except Exception as error:
        fault = redis_fault(error)
        if fault is None:
            raise
        print(f"channel-worker: {_redis_problem(layer, fault.kind, fault.reason)}", file=sys.stderr)
        return EXIT_CONFIG if fault.kind == CREDENTIALS else EXIT_CRASHED
    return code


def _redis_problem(layer: Any, kind: str, reason: str) -> str:
    """One line for an admin command Redis could not serve, credentials redacted."""
    from worker.transport.layer import describe_hosts

    where = f"Redis at {describe_hosts(layer)}"
    if kind == CREDENTIALS:
        return (
            f"{where} refused the credentials ({reason}); set the right password (and "
            "username) in the layer's host in CHANNEL_LAYERS"
        )
    if kind == REFUSING:
        return f"{where} refuses the command for now ({reason}); try again once it is healthy"
    return f"{where} is unreachable ({reason}); check that it runs and the address is right"


async def _status(layer: Any, options: argparse.Namespace) -> int:
    from worker.ops.status import gather, table
    from worker.transport.layer import connect

    clients = connect(layer, 0.0)
    try:
        if options.json:
            rows = await gather(layer, clients, options.channels)
            print(json.dumps([row.as_dict() for row in rows], indent=2))
            return EXIT_OK
        from rich.console import Console
        from rich.live import Live

        console = Console()
        if not options.watch:
            console.print(table(await gather(layer, clients, options.channels)))
            return EXIT_OK
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(table(await gather(layer, clients, options.channels)), refresh=True)
                await asyncio.sleep(options.interval_s)
    finally:
        for client in clients:
            await client.aclose()


async def _dead(layer: Any, options: argparse.Namespace) -> int:
    from worker.transport.dead_letters import DeadLetters

    store = DeadLetters(layer)
    try:
        if options.action == "list":
            return await _list(store, options)
        if options.action == "show":
            return await _show(store, options)
        if options.action == "requeue":
            count = await store.requeue(options.channel, options.id)
            print(f"Requeued {count} dead letter(s) on channel {options.channel!r}.")
            if options.id is not None and not count:
                await _why_not_requeued(store, options)
            return EXIT_OK if count or options.id is None else EXIT_NOT_FOUND
        count = await store.purge(options.channel)
        print(f"Purged {count} dead letter(s) of channel {options.channel!r}.")
        return EXIT_OK
    finally:
        await store.aclose()


# A dead letter's message is shown up to this many characters; the record says its full size.
MAX_SHOWN_CHARS = 10_000
# Control and format characters (ESC, CR, bidi overrides...): printed raw they would let a
# message rewrite the screen, retitle the window or hide text.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(value: object, *, lines: bool = False) -> str:
    """``value`` as text a terminal shows literally: control characters escaped (``\\x1b``).

    With ``lines``, newlines and tabs are kept (a traceback).
    """
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _CONTROL_CATEGORIES and not (lines and char in "\n\t")
        else char
        for char in str(value)
    )


async def _why_not_requeued(store: Any, options: argparse.Namespace) -> None:
    letter = await store.show(options.channel, options.id)
    if letter is not None and not letter.message_kept:
        print(
            f"Dead letter {options.id!r} keeps no message ({letter.size_bytes} bytes, undecoded "
            "and over the store's bound), so it cannot be requeued; send the message again from "
            f"its source, then `channel-worker dead purge {options.channel}`.",
            file=sys.stderr,
        )


def _time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds")


async def _list(store: Any, options: argparse.Namespace) -> int:
    letters = await store.list(options.channel)
    if options.json:
        for letter in letters:
            print(letter.to_json())
        return EXIT_OK
    if not letters:
        print(f"No dead letters on channel {options.channel!r}.")
        return EXIT_OK
    print(f"{'ID':32}  {'DEAD AT':25}  {'TYPE':24}  {'MESSAGE ID':12}  {'TRIES':>5}  REASON")
    for letter in letters:
        kind, shown_id = printable(letter.message_type or "-"), printable(letter.message_id or "-")
        print(
            f"{printable(letter.id):32}  {_time(letter.dead_at):25}  {kind:24}  "
            f"{shown_id:12}  {letter.attempts:>5}  {printable(letter.reason)}"
        )
    return EXIT_OK


async def _show(store: Any, options: argparse.Namespace) -> int:
    letter = await store.show(options.channel, options.id)
    if letter is None:
        print(
            f"No dead letter {options.id!r} on channel {options.channel!r}; "
            f"see `channel-worker dead list {options.channel}`.",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    record = json.loads(letter.to_json())
    trace = record.pop("traceback")
    for key, value in record.items():
        shown = _time(value) if key.endswith("_at") and value is not None else printable(value)
        print(f"{key:18} {shown}")
    print(f"{'message':18} {_message(letter)}")
    if trace:
        print(f"traceback:\n{printable(trace, lines=True)}")
    return EXIT_OK


def _message(letter: Any) -> str:
    if not letter.message_kept:
        return (
            f"(not kept: {letter.size_bytes} bytes, undecoded and over the dead-letter store's "
            "bound; it cannot be requeued)"
        )
    shown = printable(repr(letter.message))
    if len(shown) <= MAX_SHOWN_CHARS:
        return shown
    return (
        f"{shown[:MAX_SHOWN_CHARS]}... (first {MAX_SHOWN_CHARS} of {len(shown)} characters "
        f"shown; the message is {letter.size_bytes} bytes)"
    )
