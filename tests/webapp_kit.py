"""The Mini App under test: the real bot (the `bot` harness) with its HTTP server on a
free port, and a client that signs in as Telegram would sign a launch (initData signed
with the test bot's token). Used by the HTTP tests and the browser tests alike."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Route, async_playwright

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.webapp.init_data import sign
from bot.webapp.server import INIT_DATA_HEADER
from tests.test_http_api import free_port

NAMES = {1001: "Alice", 1002: "Olga", 6666: "Mallory"}


@dataclass
class Answer:
    status: int
    text: str
    headers: Mapping[str, str]

    @property
    def error(self) -> str:
        return str(json.loads(self.text)["error"])

    @property
    def message(self) -> str | None:
        """The sentence an action answered with (X-Tickler-Message)."""
        raw = self.headers.get("X-Tickler-Message")
        return unquote(raw) if raw is not None else None


@dataclass
class MiniAppClient:
    bot: BotHarness
    http: aiohttp.ClientSession
    base_url: str

    @property
    def token(self) -> str:
        token = self.bot.services.settings.telegram_bot_token
        assert token is not None
        return token.get_secret_value()

    def init_data(
        self, user: int = ALICE, *, age: timedelta = timedelta(0), chat: int | None = None
    ) -> str:
        """initData as Telegram signs it for `user`, signed `age` ago by the bot clock."""
        when = self.bot.clock.now() - age
        fields = {
            "query_id": "AAH-test",
            "user": json.dumps({"id": user, "first_name": NAMES.get(user, "User")}),
            "auth_date": str(int(when.timestamp())),
        }
        if chat is not None:
            fields["chat"] = json.dumps({"id": chat, "type": "group", "title": "Team"})
        return sign(fields, self.token)

    async def call(
        self,
        method: str,
        path: str,
        form: Mapping[str, str] | None = None,
        *,
        user: int = ALICE,
        init_data: str | None = None,
    ) -> Answer:
        signed = self.init_data(user) if init_data is None else init_data
        headers = {INIT_DATA_HEADER: signed} if signed else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if form is not None:
            kwargs["data"] = dict(form)
        async with self.http.request(method, "/app/api" + path, **kwargs) as response:
            return Answer(response.status, await response.text(), response.headers)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, form: Mapping[str, str] | None = None, **kw: Any) -> Answer:
        return await self.call("POST", path, form or {}, **kw)


@asynccontextmanager
async def running_miniapp(
    telegram_server: TelegramServer, agent_stub: AgentStub, db_path: Path, **settings: Any
) -> AsyncIterator[MiniAppClient]:
    """The bot (bot.demo_kit.harness.start_bot, `settings` passed on) with its HTTP server
    on a free port, and a client for its Mini App; for a test (the `miniapp` fixture) or
    a script (tests/webapp_screenshots.py)."""
    port = free_port()
    harness = await start_bot(telegram_server, agent_stub, db_path, http_port=port, **settings)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(base_url=base) as http:
            yield MiniAppClient(harness, http, base)
    finally:
        await stop_bot(harness)


@pytest_asyncio.fixture
async def miniapp(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[MiniAppClient]:
    async with running_miniapp(telegram_server, agent_stub, tmp_path / "bot.db") as client:
        yield client


# --- the browser ----------------------------------------------------------------------------
#: What the page gets instead of https://telegram.org/js/telegram-web-app.js (no network
#: here): the same `window.Telegram.WebApp` surface the app uses, carrying the initData.
_TELEGRAM_JS = """
window.Telegram = { WebApp: {
  initData: %s, platform: "unknown", themeParams: {}, colorScheme: "light",
  ready() {}, expand() {}, showConfirm(text, done) { done(window.confirm(text)); },
} };
"""


def chromium_path() -> str | None:
    """Debian's chromium (what .ci/run installs), or TICKLER_CHROMIUM."""
    return os.environ.get("TICKLER_CHROMIUM") or shutil.which("chromium")


#: What to say when there is no browser.
NO_CHROMIUM = "no chromium here: `apt-get install chromium` (Debian) runs the browser tests"


@asynccontextmanager
async def chromium(path: str) -> AsyncIterator[Browser]:
    """Headless Chromium at `path`, driven by Playwright (nothing is downloaded)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium from the system (Playwright drives it; nothing is downloaded).
    Without it the test is skipped, and under CI it fails instead."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(NO_CHROMIUM, pytrace=False)
        pytest.skip(NO_CHROMIUM)
    async with chromium(path) as launched:
        yield launched


async def open_app(
    browser: Browser, miniapp: MiniAppClient, init_data: str, route: str = ""
) -> Page:
    """A 390×844 phone page with the Mini App open as Telegram would open it."""
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    script = _TELEGRAM_JS % json.dumps(init_data)

    async def telegram_js(route_: Route) -> None:
        await route_.fulfill(status=200, content_type="text/javascript", body=script)

    await context.route("https://telegram.org/js/telegram-web-app.js", telegram_js)
    page = await context.new_page()
    await page.goto(f"{miniapp.base_url}/app/{route}")
    return page
