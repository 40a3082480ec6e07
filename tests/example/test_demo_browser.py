"""The demo in a real browser: upload, live progress and thumbnails, delete, a rejected upload.

Also with JavaScript off: an upload shows after a reload, deletions ask on a page of their own.

Starts ``example/run_demo.py`` with no ``REDIS_URL`` (so it starts its embedded Redis) and drives
Debian's ``chromium`` with Playwright; never downloads a browser. Screenshots go to
``tests/example/output/``.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import (
    BrowserContext,
    Dialog,
    Page,
    Playwright,
    Request,
    WebSocket,
    expect,
    sync_playwright,
)

from tests.example.demo_process import DemoProcess, group_alive
from tests.redis_server import free_port
from worker.ops.health import pid_alive

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT_DIR = Path(__file__).resolve().parent / "output"
SIZES = (64, 160, 320, 640)
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0
UI_TIMEOUT_MS = 30_000
RELOAD_TIMEOUT_S = 30.0
# Lines the demo must not log: a favicon 404 on every page load, Django's warning for each file
# streamed from a sync iterator under ASGI, the embedded server's memory-overcommit warning.
NOISE = ("favicon.ico", "StreamingHttpResponse", "overcommit")


def require_chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def demo_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "EXAMPLE_DATA_DIR", "PORT")
    }
    # Slow enough that the page shows each size arriving, quick enough for a test.
    return env | {"THUMBNAILS_STEP_DELAY_S": "0.2", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    process = DemoProcess(free_port(), tmp_path / "data", demo_env())
    try:
        process.wait_ready(READY_TIMEOUT_S)
        yield process
    finally:
        process.close()


def launch(playwright: Playwright, tmp_path: Path, *, javascript: bool) -> BrowserContext:
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    return playwright.chromium.launch_persistent_context(
        profile,
        executable_path=require_chromium(),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1100, "height": 900},
        java_script_enabled=javascript,
    )


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path, javascript=True)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def browser_without_javascript(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path, javascript=False)
        try:
            yield context
        finally:
            context.close()


def make_photo(path: Path) -> Path:
    """A 1200x800 picture with shapes, so each thumbnail visibly shows the same image."""
    image = Image.new("RGB", (1200, 800), (35, 80, 160))
    draw = ImageDraw.Draw(image)
    for step in range(0, 800, 40):
        draw.rectangle((0, step, 1200, step + 20), fill=(40 + step // 8, 110, 200 - step // 5))
    draw.ellipse((380, 180, 820, 620), fill=(250, 200, 60), outline=(255, 255, 255), width=12)
    draw.rectangle((80, 560, 360, 760), fill=(230, 80, 70))
    image.save(path, format="PNG")
    return path


def progress_of(frames: list[dict[str, Any]], picture_id: str) -> list[int]:
    """The ``done`` counts the page heard for ``picture_id``, in order."""
    return [
        frame["progress"]["done"]
        for frame in frames
        if frame.get("event") == "picture"
        and frame.get("progress")
        and frame["picture"]["id"] == picture_id
    ]


def listen(page: Page) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []

    def on_websocket(websocket: WebSocket) -> None:
        websocket.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", on_websocket)
    return frames


def screenshot(page: Page, name: str) -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    path = OUTPUT_DIR / name
    page.screenshot(path=str(path), full_page=True)
    return path


def upload(page: Page, path: Path) -> None:
    page.set_input_files("#image", str(path))
    page.get_by_role("button", name="Upload").click()


def rendered_widths(card: Any) -> list[float]:
    """The width each thumbnail takes on the page, in CSS pixels."""
    widths: list[float] = card.locator("img.thumb").evaluate_all(
        "images => images.map(image => image.getBoundingClientRect().width)"
    )
    return widths


class Dialogs:
    """Answers the page's confirm() dialogs in turn (False dismisses) and records them."""

    def __init__(self, page: Page) -> None:
        self.answers: list[bool] = []
        self.asked: list[str] = []
        page.on("dialog", self._answer)

    def _answer(self, dialog: Dialog) -> None:
        self.asked.append(dialog.message)
        if self.answers.pop(0):
            dialog.accept()
        else:
            dialog.dismiss()


def posts_to(page: Page) -> list[str]:
    """The paths the page POSTs to, in order."""
    paths: list[str] = []

    def on_request(request: Request) -> None:
        if request.method == "POST":
            paths.append(request.url.split("/", 3)[3])

    page.on("request", on_request)
    return paths


def reload_until(page: Page, selector: str) -> None:
    """Reload the page (no JavaScript, so no live updates) until ``selector`` is on it."""
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while page.locator(selector).count() == 0:
        if time.monotonic() > deadline:
            pytest.fail(f"{selector} not on the page after {RELOAD_TIMEOUT_S:g} s of reloads")
        page.wait_for_timeout(200)
        page.reload()


def assert_quiet(output: str) -> None:
    noisy = [line for line in output.splitlines() if any(word in line for word in NOISE)]
    assert not noisy, output


def test_demo_shows_progress_and_thumbnails_live_then_deletes_and_rejects(
    demo: DemoProcess, browser: BrowserContext, tmp_path: Path
) -> None:
    started = time.monotonic()
    page = browser.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    frames = listen(page)
    dialogs = Dialogs(page)
    posts = posts_to(page)
    page.goto(demo.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    delete_all = page.get_by_role("button", name="Delete all")
    expect(delete_all).to_be_disabled()

    upload(page, make_photo(tmp_path / "photo.png"))
    card = page.locator(".picture").first
    expect(card).to_have_attribute("data-status", "ready")
    expect(card.locator("img.thumb")).to_have_count(len(SIZES))
    loaded = card.locator("img.thumb").evaluate_all(
        "images => images.map(image => image.complete && image.naturalWidth)"
    )
    assert loaded == [64, 160, 320, 640], "every thumbnail is served and decodes"
    assert rendered_widths(card) == [64, 160, 320, 640], "each size shows at its own size"
    expect(delete_all).to_be_enabled()
    picture_id = card.get_attribute("data-id")
    assert picture_id is not None
    assert progress_of(frames, picture_id) == [1, 2, 3, 4]
    media = tmp_path / "data" / "media"
    made = {path.name for path in (media / "thumbnails" / picture_id).iterdir()}
    assert made == {f"{size}.webp" for size in SIZES}
    screenshot(page, "gallery.png")

    dialogs.answers = [False, True]
    card.get_by_role("button", name="Delete").click()
    expect(card).to_have_attribute("data-status", "ready")
    card.get_by_role("button", name="Delete").click()
    expect(page.locator(".picture")).to_have_count(0)
    expect(delete_all).to_be_disabled()
    expect(page.locator("#empty")).to_be_visible()
    assert not (media / "thumbnails" / picture_id).exists()
    assert not list((media / "originals").iterdir())

    not_an_image = tmp_path / "holiday.png"
    not_an_image.write_text("these are notes, not pixels\n")
    upload(page, not_an_image)
    expect(page.locator("#upload-error")).to_contain_text("not an image")
    expect(page.locator(".picture")).to_have_count(0)
    screenshot(page, "rejected.png")

    upload(page, make_photo(tmp_path / "second.png"))
    expect(page.locator(".picture")).to_have_count(1)
    expect(page.locator("#upload-error")).to_be_hidden()
    dialogs.answers = [False, True]
    delete_all.click()
    expect(page.locator(".picture")).to_have_count(1)
    delete_all.click()
    expect(page.locator(".picture")).to_have_count(0)
    expect(delete_all).to_be_disabled()
    assert dialogs.asked == [
        *["Delete this picture and its thumbnails?"] * 2,
        *["Delete the only picture and its thumbnails?"] * 2,
    ]
    # Only the confirmed deletions reached the server.
    assert [post for post in posts if "delete" in post or "clear" in post] == [
        f"pictures/{picture_id}/delete/",
        "pictures/clear/",
    ]
    page.close()

    code = demo.interrupt(STOP_TIMEOUT_S)
    assert code == 0, demo.output
    assert "Demo stopped." in demo.output
    assert set(demo.children) == {"redis", "worker", "web"}
    left = {name: pid for name, pid in demo.children.items() if pid_alive(pid) or group_alive(pid)}
    assert not left, f"processes outlived the demo: {left}\n{demo.output}"
    assert "Worker stopped:" in demo.output
    assert_quiet(demo.output)
    print(f"browser test took {time.monotonic() - started:.1f} s; screenshots in {OUTPUT_DIR}")


def test_without_javascript_an_upload_shows_after_a_reload_and_deletions_ask_first(
    demo: DemoProcess, browser_without_javascript: BrowserContext, tmp_path: Path
) -> None:
    page = browser_without_javascript.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    page.goto(demo.url)
    expect(page.get_by_text("reload to see progress")).to_be_visible()
    expect(page.get_by_role("button", name="Delete all")).to_be_disabled()

    upload(page, make_photo(tmp_path / "photo.png"))
    expect(page.locator(".picture")).to_have_count(1)
    reload_until(page, '.picture[data-status="ready"]')
    card = page.locator(".picture").first
    expect(card.locator(".status")).to_have_text("Ready: 4 sizes")
    assert rendered_widths(card) == [64, 160, 320, 640]

    card.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Delete this picture and its thumbnails?")).to_be_visible()
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator('.picture[data-status="ready"]')).to_have_count(1)

    page.get_by_role("button", name="Delete all").click()
    expect(page.get_by_text("Delete every picture and its thumbnails?")).to_be_visible()
    page.get_by_role("button", name="Delete all").click()
    reload_until(page, "#empty:visible")
    expect(page.locator(".picture")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete all")).to_be_disabled()
    page.close()

    assert demo.interrupt(STOP_TIMEOUT_S) == 0, demo.output
    assert_quiet(demo.output)


def test_demo_stops_cleanly_on_sigterm(demo: DemoProcess) -> None:
    demo.process.send_signal(signal.SIGTERM)
    assert demo.process.wait(STOP_TIMEOUT_S) == 0, demo.output
    left = [pid for pid in demo.children.values() if pid_alive(pid) or group_alive(pid)]
    assert not left, demo.output
