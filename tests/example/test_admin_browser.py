"""The admin's worker pages in a real browser, on the running demo: log in, watch a channel's
counts change live while an upload is processed, open the dead letter a failing message made,
requeue it through the confirmation page, and see it handled.

Starts ``example/run_demo.py`` on the suite's redis-server (so the test can send the failing
message itself) and drives Debian's ``chromium`` with Playwright. Screenshots go to
``tests/example/output/``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from channels_redis.core import RedisChannelLayer
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.example.demo_process import DemoProcess
from tests.example.test_demo_browser import (
    READY_TIMEOUT_S,
    UI_TIMEOUT_MS,
    browser,
    demo_env,
    make_photo,
    screenshot,
    upload,
)
from tests.redis_server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

__all__ = ["browser"]  # the fixture, imported for this module's tests

GENERATE = "thumbnails-generate"
PASSWORD = "demo-admin-pw"
ADMIN_LINE = re.compile(r"Admin at (?P<url>http://\S+) as 'admin', password '(?P<password>[^']+)'")
HANDLED_TIMEOUT_S = 30.0
# The example's nightly schedule (example/settings.py) and the task it runs.
CLEANUP = "clean-orphaned-thumbnails"
CLEANUP_TASK = "example.thumbnails.tasks.clean_orphaned_thumbnails"


@pytest.fixture
def demo(tmp_path: Path, redis_url: str) -> Iterator[DemoProcess]:
    env = demo_env() | {"REDIS_URL": redis_url, "DEMO_ADMIN_PASSWORD": PASSWORD}
    process = DemoProcess(free_port(), tmp_path / "data", env)
    try:
        process.wait_ready(READY_TIMEOUT_S)
        yield process
    finally:
        process.close()


def log_in(page: Page, demo: DemoProcess) -> str:
    """Log in as the superuser the demo printed; the admin's URL."""
    printed = ADMIN_LINE.search(demo.output)
    assert printed is not None, demo.output
    assert printed["password"] == PASSWORD
    page.goto(f"{printed['url']}login/?next=/admin/channel_worker/channel/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", printed["password"])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#cw-live")).to_have_attribute("data-state", "live")
    return printed["url"]


def reload_until(page: Page, locator: Locator, text: str, timeout_s: float = 20.0) -> None:
    """Reload ``page`` until ``locator`` contains ``text``: for a page that is not live."""
    deadline = time.monotonic() + timeout_s
    while text not in locator.inner_text():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{text!r} not shown within {timeout_s} s: {locator.inner_text()!r}"
            )
        page.wait_for_timeout(200)
        page.reload()


def cell(page: Page, channel: str, field: str) -> Locator:
    return page.locator(f'tr[data-channel="{channel}"] [data-field="{field}"]')


def send_generate(redis_url: str, picture_id: str) -> None:
    """The message the gallery sends for a new upload, sent again for ``picture_id``."""

    async def send() -> None:
        layer = RedisChannelLayer(hosts=[redis_url], expiry=3600)
        await layer.send(GENERATE, {"type": "thumbnails.generate", "id": picture_id})
        await layer.close_pools()

    # Playwright's sync API runs an event loop in this thread: the send gets a thread of its own.
    with ThreadPoolExecutor(1) as executor:
        executor.submit(asyncio.run, send()).result()


def made(demo: DemoProcess, picture_id: str) -> int:
    """How many times the worker logged all thumbnails of ``picture_id`` made."""
    return demo.output.count(f"Picture {picture_id}: 4 thumbnails made")


def test_admin_shows_counts_live_and_requeues_a_dead_letter_that_is_then_handled(
    demo: DemoProcess, browser: BrowserContext, tmp_path: Path, redis_url: str
) -> None:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    admin = browser.new_page()
    admin.set_default_timeout(UI_TIMEOUT_MS)
    admin_url = log_in(admin, demo)
    expect(cell(admin, GENERATE, "live_workers")).to_have_text("1")
    expect(cell(admin, GENERATE, "completed_last_minute")).to_have_text("0")
    admin.evaluate("window.notReloaded = true")

    gallery = browser.new_page()
    gallery.goto(demo.url)
    upload(gallery, make_photo(tmp_path / "photo.png"))
    expect(gallery.locator(".picture").first).to_have_attribute("data-status", "ready")

    # Counted by the worker's next health report, pushed by the live feed: no reload.
    expect(cell(admin, GENERATE, "completed_last_minute")).to_have_text("1")
    assert admin.evaluate("window.notReloaded") is True
    screenshot(admin, "admin-channels.png")

    # The picture's original goes missing: generating it again fails on every attempt.
    [original] = (tmp_path / "data" / "media" / "originals").iterdir()
    kept = original.read_bytes()
    original.unlink()
    picture_id = original.stem
    send_generate(redis_url, picture_id)
    expect(cell(admin, GENERATE, "dead_letters")).to_have_text("1")

    cell(admin, GENERATE, "dead_letters").locator("a").click()
    admin.locator("#cw-dead-letters tbody a").first.click()
    expect(admin.locator("#cw-message")).to_contain_text(picture_id)
    expect(admin.locator("#cw-traceback")).to_contain_text("FileNotFoundError")
    screenshot(admin, "admin-dead-letter.png")

    original.write_bytes(kept)
    admin.get_by_role("button", name="Requeue").click()
    expect(admin.locator("#content-main")).to_contain_text("back on the channel")
    admin.emulate_media(color_scheme="dark")
    screenshot(admin, "admin-requeue-confirm-dark.png")
    admin.emulate_media(color_scheme="light")
    admin.get_by_role("button", name=re.compile("Yes, I.m sure")).click()
    expect(admin.locator(".messagelist")).to_contain_text("Requeued 1 dead letter(s)")
    expect(admin.locator("#cw-dead-letters")).to_contain_text("No dead letters")

    admin.goto(f"{admin_url}channel_worker/channel/")
    expect(cell(admin, GENERATE, "completed_last_minute")).to_have_text("2")
    expect(cell(admin, GENERATE, "dead_letters")).to_have_text("0")
    assert made(demo, picture_id) == 2, demo.output
    admin.goto(admin_url)
    expect(admin.locator("#recent-actions-module")).to_contain_text(f"dead letters of {GENERATE}")

    # The example's nightly schedule, run now from its row, fired by the example's worker.
    admin.goto(f"{admin_url}channel_worker/schedule/")
    row = admin.locator(f'#cw-schedules tr[data-schedule="{CLEANUP}"]')
    expect(row.locator('[data-field="runs"]')).to_have_text(f"task {CLEANUP_TASK}")
    expect(row.locator('[data-field="when"]')).to_contain_text("cron '0 3 * * *'")
    expect(row.locator('[data-field="timezone"]')).to_have_text("Europe/Paris")
    expect(row.locator('[data-field="due"]')).to_have_text("no")
    row.get_by_role("button", name="Run now").click()
    admin.get_by_role("button", name=re.compile("Yes, I.m sure")).click()
    outcome = admin.locator(f'#cw-schedules tr[data-schedule="{CLEANUP}"] [data-field="outcome"]')
    reload_until(admin, outcome, "SUCCESSFUL")
    screenshot(admin, "admin-schedules.png")

    # A phone-sized screen: the Workers page, live too; its wide table scrolls sideways.
    admin.set_viewport_size({"width": 400, "height": 800})
    admin.goto(f"{admin_url}channel_worker/worker/")
    expect(admin.locator("#cw-live")).to_have_attribute("data-state", "live")
    expect(admin.locator('#cw-workers [data-field="channels"]')).to_contain_text(GENERATE)
    expect(admin.locator('#cw-workers [data-field="healthy"]')).to_have_text("yes")
    screenshot(admin, "admin-workers-narrow.png")
