"""The demo in a real browser: upload, live progress and thumbnails, delete, a rejected upload.

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
from playwright.sync_api import BrowserContext, Page, WebSocket, expect, sync_playwright

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


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    executable = require_chromium()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900},
        )
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


def test_demo_shows_progress_and_thumbnails_live_then_deletes_and_rejects(
    demo: DemoProcess, browser: BrowserContext, tmp_path: Path
) -> None:
    started = time.monotonic()
    page = browser.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    frames = listen(page)
    page.goto(demo.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    upload(page, make_photo(tmp_path / "photo.png"))
    card = page.locator(".picture").first
    expect(card).to_have_attribute("data-status", "ready")
    expect(card.locator("img.thumb")).to_have_count(len(SIZES))
    loaded = card.locator("img.thumb").evaluate_all(
        "images => images.map(image => image.complete && image.naturalWidth)"
    )
    assert loaded == [64, 160, 320, 640], "every thumbnail is served and decodes"
    picture_id = card.get_attribute("data-id")
    assert picture_id is not None
    assert progress_of(frames, picture_id) == [1, 2, 3, 4]
    media = tmp_path / "data" / "media"
    made = {path.name for path in (media / "thumbnails" / picture_id).iterdir()}
    assert made == {f"{size}.webp" for size in SIZES}
    screenshot(page, "gallery.png")

    card.get_by_role("button", name="Delete").click()
    expect(page.locator(".picture")).to_have_count(0)
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
    page.get_by_role("button", name="Delete all").click()
    expect(page.locator(".picture")).to_have_count(0)
    page.close()

    code = demo.interrupt(STOP_TIMEOUT_S)
    assert code == 0, demo.output
    assert "Demo stopped." in demo.output
    assert set(demo.children) == {"redis", "worker", "web"}
    left = {name: pid for name, pid in demo.children.items() if pid_alive(pid) or group_alive(pid)}
    assert not left, f"processes outlived the demo: {left}\n{demo.output}"
    assert "Worker stopped:" in demo.output
    print(f"browser test took {time.monotonic() - started:.1f} s; screenshots in {OUTPUT_DIR}")


def test_demo_stops_cleanly_on_sigterm(demo: DemoProcess) -> None:
    demo.process.send_signal(signal.SIGTERM)
    assert demo.process.wait(STOP_TIMEOUT_S) == 0, demo.output
    left = [pid for pid in demo.children.values() if pid_alive(pid) or group_alive(pid)]
    assert not left, demo.output
