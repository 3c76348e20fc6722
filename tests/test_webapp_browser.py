"""The Mini App in a real browser: Debian's headless Chromium driven by Playwright, at a
390×844 phone viewport, signed in with initData signed by the test bot's token."""

from __future__ import annotations

from typing import Any

from tests.webapp_kit import MiniAppClient, browser, miniapp, open_app

__all__ = ["browser", "miniapp"]


async def overflow(page: Any) -> int:
    """How far the page is wider than the phone's screen (0: no horizontal scroll)."""
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width - 390


async def test_home_opens_signed_in_at_phone_width(browser: Any, miniapp: MiniAppClient) -> None:
    page = await open_app(browser, miniapp, miniapp.init_data())
    await page.get_by_role("heading", name="Today", exact=True).wait_for()
    assert await overflow(page) <= 0


async def test_a_forged_launch_shows_why_and_no_data(browser: Any, miniapp: MiniAppClient) -> None:
    good = miniapp.init_data()
    page = await open_app(browser, miniapp, good[:-1] + ("0" if good[-1] != "0" else "1"))
    await page.get_by_text("not signed by this bot").wait_for()
    assert await page.locator("main h1").count() == 0


async def test_a_launch_with_telegrams_data_in_the_hash_opens_home(
    browser: Any, miniapp: MiniAppClient
) -> None:
    """Telegram opens the page with its launch data in the URL's hash."""
    page = await open_app(
        browser, miniapp, miniapp.init_data(), route="#tgWebAppData=x&tgWebAppVersion=8.0"
    )
    await page.get_by_role("heading", name="Today", exact=True).wait_for()
