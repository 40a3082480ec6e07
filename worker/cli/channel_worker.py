"""``channel-worker``: status, dead letters and task results, apart from ``runworker`` so that
no subcommand can clash with a channel name."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

import worker
from worker.cli.exit_codes import EXIT_CONFIG, EXIT_CRASHED, EXIT_NOT_FOUND, EXIT_OK
from worker.constants import RECENT_TASK_RESULTS_PER_HOST
from worker.errors import CREDENTIALS, REFUSING, ConfigurationError, SendError, redis_fault


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
    _add_tasks(commands)
    _add_schedules(commands)
    return parser


def _add_schedules(commands: Any) -> None:
    schedules = commands.add_parser(
        "schedules", help="CHANNEL_WORKER['SCHEDULES']: next and last run, outcome, due"
    )
    schedules.add_argument("--json", action="store_true", help="print JSON for scripts")
    actions = schedules.add_subparsers(dest="action")
    trigger = actions.add_parser("run", help="fire a schedule now, once")
    trigger.add_argument("name")


# How many results `tasks list` prints unless --limit says.
DEFAULT_TASKS_LIMIT = 20
_TASK_STATUSES = ("READY", "RETRYING", "RUNNING", "SUCCESSFUL", "FAILED")
# The widest a status table printed to a pipe or a file may grow: every column at its full width.
_PIPED_MAX_WIDTH = 1000


def _add_tasks(commands: Any) -> None:
    tasks = commands.add_parser("tasks", help="django.tasks results of a TASKS backend")
    actions = tasks.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="one result: status, times, attempts, errors")
    show.add_argument("id")
    listing = actions.add_parser(
        "list",
        help=f"the most recently changed results (up to {RECENT_TASK_RESULTS_PER_HOST} a host)",
    )
    listing.add_argument("--status", type=str.upper, choices=_TASK_STATUSES)
    listing.add_argument("--queue", help="only results of this queue_name")
    listing.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_TASKS_LIMIT,
        help=f"at most this many, 1 to {RECENT_TASK_RESULTS_PER_HOST} "
        f"(default {DEFAULT_TASKS_LIMIT})",
    )
    for command in (show, listing):
        command.add_argument("--backend", default="default", help="TASKS alias")
        command.add_argument("--json", action="store_true", help="print JSON for scripts")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= RECENT_TASK_RESULTS_PER_HOST:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of results from 1 to {RECENT_TASK_RESULTS_PER_HOST}"
        )
    return value


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        from worker.project import load_layer, setup_django

        setup_django(options.settings, options.pythonpath)
        layer = load_layer(options.layer)
    except ConfigurationError as error:
        print(f"channel-worker: {error}", file=sys.stderr)
        return EXIT_CONFIG
    command = {"status": _status, "dead": _dead, "tasks": _tasks, "schedules": _schedules}[
        options.command
    ]
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
            view = table(await gather(layer, clients, options.channels))
            # Not rich's is_terminal, which FORCE_COLOR (set by many CI runners) makes true.
            if not console.file.isatty() and "COLUMNS" not in os.environ:
                # Piped or logged: the whole table, where rich would cut it to 80 columns.
                unbounded = console.options.update_width(_PIPED_MAX_WIDTH)
                console.width = max(console.width, console.measure(view, options=unbounded).maximum)
            console.print(view)
            return EXIT_OK
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(table(await gather(layer, clients, options.channels)), refresh=True)
                await asyncio.sleep(options.interval_s)
    finally:
        for client in clients:
            await client.aclose()


async def _schedules(layer: Any, options: argparse.Namespace) -> int:
    """``schedules [run NAME]``: each schedule's state, or one fired now."""
    import time

    from django.conf import settings

    from worker.schedules.setup import project_schedules
    from worker.schedules.status import gather, lines, on_layer, trigger
    from worker.transport.layer import connect

    try:
        schedules = project_schedules(getattr(settings, "CHANNEL_WORKER", None))
    except ConfigurationError as error:
        print(f"channel-worker: {error}", file=sys.stderr)
        return EXIT_CONFIG
    mine = on_layer(schedules.values(), options.layer)
    clients = connect(layer, 0.0)
    try:
        if options.action == "run":
            chosen = schedules.get(options.name)
            if chosen is None or chosen not in mine:
                known = ", ".join(repr(schedule.name) for schedule in mine) or "(none)"
                print(
                    f"channel-worker: no schedule {options.name!r} on layer {options.layer!r}; "
                    f"known schedules: {known}",
                    file=sys.stderr,
                )
                return EXIT_NOT_FOUND
            try:
                done = await trigger(layer, clients, chosen, time.time())
            except SendError as error:
                print(
                    f"channel-worker: schedule {chosen.name!r} not fired: {error}", file=sys.stderr
                )
                return EXIT_CRASHED
            print(f"Schedule {chosen.name!r} fired now: {done}")
            return EXIT_OK
        rows = await gather(layer, clients, mine, time.time())
        if options.json:
            print(json.dumps([row.as_dict() for row in rows], indent=2))
            return EXIT_OK
        print("\n".join(printable(line) for line in lines(rows)))
        return EXIT_OK
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


async def _tasks(layer: Any, options: argparse.Namespace) -> int:
    """``tasks show|list``: results of the TASKS backend ``--backend``, on its own layer."""
    try:
        backend = _task_backend(options.backend)
    except ConfigurationError as error:
        print(f"channel-worker: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if options.action == "show":
        return await _show_task(backend, options)
    return await _list_tasks(backend, options)


def _task_backend(alias: str) -> Any:
    try:
        from worker.tasks.backend import ChannelLayerBackend
        from worker.tasks.compat import task_backends

        backend = task_backends[alias]
    except ImportError as error:
        raise ConfigurationError(str(error)) from error
    except Exception as error:
        raise ConfigurationError(
            f"TASKS has no usable backend {alias!r} ({type(error).__name__}: {error}); pass "
            "--backend with an alias of TASKS"
        ) from error
    if not isinstance(backend, ChannelLayerBackend):
        raise ConfigurationError(
            f"TASKS[{alias!r}] is {type(backend).__name__}; `channel-worker tasks` reads the "
            "results of worker.tasks.ChannelLayerBackend only"
        )
    return backend


async def _show_task(backend: Any, options: argparse.Namespace) -> int:
    from worker.tasks.progress import Progress

    record = await backend.store.aload(options.id)
    if record is None:
        print(
            f"No result {options.id!r} on backend {backend.alias!r}: unknown id, or older than "
            f"RESULT_TTL_S={backend.result_ttl_s:g} s; see `channel-worker tasks list`.",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    progress = await Progress.alast(options.id, backend.layer_alias)
    if options.json:
        print(json.dumps(_task_json(record) | {"progress": progress}, indent=2))
        return EXIT_OK
    for line in _task_lines(record, progress):
        print(line)
    return EXIT_OK


async def _list_tasks(backend: Any, options: argparse.Namespace) -> int:
    records = await backend.store.arecent(options.limit, options.status, options.queue)
    if options.json:
        for record in records:
            print(json.dumps(_task_json(record)))
        return EXIT_OK
    if not records:
        print(f"No results on backend {backend.alias!r}{_filters(options)}.")
        return EXIT_OK
    print(f"{'ID':32}  {'STATUS':10}  {'QUEUE':12}  {'TRY':>7}  {'ENQUEUED AT':25}  TASK")
    for record in records:
        print(
            f"{printable(record.get('id')):32}  {_shown_status(record):10}  "
            f"{printable(record.get('queue_name')):12}  {_tries(record):>7}  "
            f"{_at(record.get('enqueued_at')):25}  {printable(record.get('task'))}"
        )
    return EXIT_OK


def _filters(options: argparse.Namespace) -> str:
    named = [f"status {options.status}"] if options.status else []
    named += [f"queue {options.queue!r}"] if options.queue is not None else []
    return f" with {' and '.join(named)}" if named else ""


def _shown_status(record: dict[str, Any]) -> str:
    from worker.tasks.results import shown_status

    return printable(shown_status(record))


def _task_json(record: dict[str, Any]) -> dict[str, Any]:
    return record | {"shown_status": _shown_status(record)}


def _tries(record: dict[str, Any]) -> str:
    attempt, most = record.get("attempt"), record.get("max_attempts")
    return printable(f"{attempt}/{most}") if attempt is not None else "-"


def _at(value: object) -> str:
    """A stored ISO time, to the second."""
    if not isinstance(value, str):
        return "-"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return printable(value)
    return moment.isoformat(timespec="seconds")


def _status_line(record: dict[str, Any]) -> str:
    """The status, and for a retry to come which attempt it is and when it starts."""
    from worker.tasks.results import RETRYING

    shown = _shown_status(record)
    attempt, most = record.get("attempt"), record.get("max_attempts")
    if shown == RETRYING and isinstance(attempt, int):
        when = _at(record.get("next_attempt_at"))
        return f"retrying, attempt {attempt + 1} of {printable(most)} at {when} (stored READY)"
    if attempt is not None:
        return f"{shown} (attempt {printable(attempt)} of {printable(most)})"
    return shown


def _task_lines(record: dict[str, Any], progress: dict[str, Any] | None) -> list[str]:
    lines = [f"{'id':18} {printable(record.get('id'))}"]
    lines.append(f"{'task':18} {printable(record.get('task'))}")
    lines.append(f"{'status':18} {_status_line(record)}")
    for key in ("queue_name", "priority", "backend"):
        lines.append(f"{key:18} {printable(record.get(key))}")
    for key in ("enqueued_at", "run_after", "started_at", "last_attempted_at", "finished_at"):
        lines.append(f"{key:18} {_at(record.get(key))}")
    workers = record.get("worker_ids") or []
    lines.append(f"{'worker_ids':18} {printable(', '.join(map(str, workers)) or '-')}")
    for key in ("args", "kwargs", "return_value"):
        lines.append(f"{key:18} {_value(record.get(key))}")
    lines.append(f"{'progress':18} {_progress(progress)}")
    errors = record.get("errors") or []
    for number, error in enumerate(errors, start=1):
        kind = printable(error.get("exception_class_path"))
        lines.append(f"error {number} of {len(errors)}: {kind}")
        lines.append(printable(error.get("traceback", ""), lines=True).rstrip("\n"))
    return lines


def _value(value: object) -> str:
    shown = printable(json.dumps(value, ensure_ascii=False, default=str))
    if len(shown) <= MAX_SHOWN_CHARS:
        return shown
    return f"{shown[:MAX_SHOWN_CHARS]}... (first {MAX_SHOWN_CHARS} of {len(shown)} characters)"


def _progress(report: dict[str, Any] | None) -> str:
    if report is None:
        return "-"
    from worker.tasks.progress import REPORTED_AT_KEY

    total = report.get("total")
    done = f"{report.get('done')} of {total}" if total is not None else f"{report.get('done')}"
    detail = f": {report['detail']}" if report.get("detail") else ""
    return printable(f"{done}{detail} (reported {_at(report.get(REPORTED_AT_KEY))})")
