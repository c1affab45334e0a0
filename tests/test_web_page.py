"""The playground page in a real browser: Debian's Chromium driven by Playwright (no downloaded
browser), against a real server on loopback with the tiny pair."""
import os
import shutil

import pytest

import biglittle as bl
from biglittle.server import Engine, create_app
from live import LiveServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (make install-test installs it)")


@pytest.fixture(scope="module")
def page_url(text_pair):
    small, big = text_pair
    live = LiveServer(create_app(Engine(small, big, bl.BiLD(fallback=0.5, rollback=1.0)), model_name="tiny-pair"))
    yield live.url
    live.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_playground_generates_with_coloured_tokens_and_stats(browser, page_url, text_pair, tmp_path):
    small, big = text_pair
    page = browser.new_page(viewport={"width": 1200, "height": 760})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_url + "/")
    assert page.title() == "biglittle playground"
    page.fill("#prompt", "Hello")
    page.uncheck("#chat")
    page.fill("#max_tokens", "40")
    page.fill("#fallback", "0.5")
    page.fill("#rollback", "1")
    page.click("#run")
    page.wait_for_selector("#stats-big-calls", timeout=30000)
    page.wait_for_function("document.querySelector('#stats').textContent.includes('small share')", timeout=30000)

    spans = page.locator("#out span.tok")
    assert spans.count() == 40
    reasons = page.eval_on_selector_all("#out span.tok", "els => els.map(e => e.className.replace('tok tok-', ''))")
    assert "small" in reasons and any(r in ("correction", "fallback", "big") for r in reasons)
    ref = bl.generate(small, big, "Hello", policy=bl.BiLD(fallback=0.5, rollback=1.0), max_new_tokens=40)
    assert page.inner_text("#out") == ref.text.replace("\r", "")
    assert reasons == ref.reasons
    colours = set(page.eval_on_selector_all("#out span.tok", "els => els.map(e => getComputedStyle(e).color)"))
    assert len(colours) >= 2  # small and big tokens look different
    assert page.inner_text("#stats-big-calls") == str(ref.stats.big_calls)

    page.click("#compare")
    page.wait_for_selector("#speedup-value", timeout=30000)
    assert page.locator("#out-big span.tok-big").count() == 40
    assert page.inner_text("#speedup-value").endswith("×")
    shot = tmp_path / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("BIGLITTLE_SCREENSHOT"):
        shutil.copy(shot, os.environ["BIGLITTLE_SCREENSHOT"])
    assert not errors, errors
