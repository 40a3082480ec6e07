"""``WorkerOptions``: every flag has a typed field, and ``--processes`` children get them all."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from worker.cli.options import WorkerOptions
from worker.cli.runworker import build_parser
from worker.cli.supervisor import child_command


def test_every_flag_of_runworker_has_a_field() -> None:
    parsed = vars(build_parser().parse_args(["jobs"]))
    assert set(parsed) == {field.name for field in fields(WorkerOptions)}
    assert WorkerOptions.from_parsed(parsed) == WorkerOptions(channels=("jobs",))


def test_django_options_are_left_out() -> None:
    options = WorkerOptions.from_parsed({"channels": ["jobs"], "verbosity": 1, "traceback": False})
    assert options == WorkerOptions(channels=("jobs",))


def test_a_child_gets_every_option_about_the_worker() -> None:
    given = WorkerOptions(
        channels=("jobs", "mail"),
        concurrency=3,
        prefetch=7,
        delivery="at-most-once",
        max_attempts=2,
        message_timeout_s=9.5,
        max_message_bytes=4096,
        lease_s=12.0,
        layer="other",
        application="mysite.asgi.application",
        shutdown_timeout_s=4.0,
        processes=3,
        loop="asyncio",
        health_interval_s=2.5,
        metrics_port=9100,
        metrics_host="0.0.0.0",
        log_format="json",
        log_level="DEBUG",
        settings="mysite.settings",
        pythonpath=("/srv",),
    )
    command = child_command(given)
    assert command[1:3] == ["-m", "worker"]
    child = WorkerOptions.from_parsed(vars(build_parser().parse_args(command[3:])))
    # The supervisor keeps the metrics endpoint, the process count and the Django bootstrap
    # (children inherit DJANGO_SETTINGS_MODULE and PYTHONPATH); the rest reaches the child.
    assert child == replace(
        given, processes=1, metrics_port=None, metrics_host="127.0.0.1", settings=None,
        pythonpath=(),
    )  # fmt: skip


@pytest.mark.parametrize("flag", ["--reload", "--check"])
def test_switches_about_this_process_stay_here(flag: str) -> None:
    options = WorkerOptions.from_parsed(vars(build_parser().parse_args([flag, "jobs"])))
    assert flag not in options.child_arguments()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import worker

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"runworker {worker.__version__}"
