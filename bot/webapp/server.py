"""The Mini App on the bot's HTTP server: the shell page and its static files under /app/,
and the pages' HTML under /app/api/, each request signed in by its initData.

The shell holds no data, so it is served to anyone; every /app/api/ request carries the
`X-Telegram-Init-Data` header, checked before anything is read (401 when missing, forged
or older than WEBAPP_AUTH_MAX_AGE), and is answered only for the chat that initData
scopes it to: an id of another chat is 404, as absent. Domain errors reach the HTTP
server's error middleware, which answers them as the JSON API does.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from bot.context import Services
from bot.render import local
from bot.webapp import bundles, home, proposals, schedules, stats
from bot.webapp.init_data import InitDataError, verify
from bot.webapp.pages import Done, Page, PageRequest, Route, Viewer
from scheduler.errors import AdminOnly

__all__ = ["APP_PREFIX", "INIT_DATA_HEADER", "MiniApp"]

log = logging.getLogger("tickler.webapp")

APP_PREFIX = "/app"
INIT_DATA_HEADER = "X-Telegram-Init-Data"
#: Every page and action, in the order they are matched.
ROUTES: tuple[Route, ...] = (
    *home.ROUTES,
    *schedules.ROUTES,
    *proposals.ROUTES,
    *bundles.ROUTES,
    *stats.ROUTES,
)
_HERE = Path(__file__).parent
#: An id in a path: the ids Tickler makes, never a path of its own.
_PART = r"(?P<{}>[A-Za-z0-9_-]{{1,64}})"
_MAX_FORM_BYTES = 16 * 1024


def _compile(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\}", lambda m: _PART.format(m.group(1)), path)
    return re.compile(f"^{pattern}$")


class MiniApp:
    """Routes /app/ on `router`; `services` gives the running bot's services."""

    def __init__(
        self,
        services: Callable[[], Services],
        bot_token: str,
        max_age: timedelta,
        bucket: Callable[[str], Any],
        routes: Sequence[Route] = ROUTES,
    ) -> None:
        self._services = services
        self._bot_token = bot_token
        self._max_age = max_age
        self._bucket = bucket
        self._routes = [(r.method, _compile(r.path), r) for r in routes]
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters["local"] = local

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get(APP_PREFIX, self._to_shell)
        router.add_get(APP_PREFIX + "/", self._shell)
        router.add_static(APP_PREFIX + "/static", _HERE / "static", append_version=False)
        router.add_route("*", APP_PREFIX + "/api/{tail:.*}", self._api)

    async def _to_shell(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(APP_PREFIX + "/")

    async def _shell(self, request: web.Request) -> web.Response:
        body = self._templates.get_template("shell.html").render(prefix=APP_PREFIX)
        return web.Response(
            text=body,
            content_type="text/html",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def _api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        viewer = self._sign_in(request)
        if isinstance(viewer, web.Response):
            return viewer
        wait = self._bucket(f"webapp:{viewer.user_id}").take()
        if wait > 0:
            return _error(
                429, "Too many requests; slow down.", {"Retry-After": str(math.ceil(wait))}
            )
        if request.method == "POST":
            if (request.content_length or 0) > _MAX_FORM_BYTES:
                return _error(413, "That form is too large.")
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        elif request.method == "GET":
            form = dict(request.query)
        else:
            return _error(405, "Only GET and POST are answered here.")
        try:
            answer = await self._dispatch(request.method, path, viewer, form)
            if isinstance(answer, Done):
                shown = await self._dispatch("GET", answer.then, viewer, {})
                assert isinstance(shown, Page), "an action's next page is a page"
                return self._page(shown, route=answer.then, message=answer.message)
            # The query is part of the page (Stats' window): a reload shows the same.
            query = request.query_string if request.method == "GET" else ""
            return self._page(answer, route=f"{path}?{query}" if query else path)
        except AdminOnly as exc:
            return _error(403, str(exc))
        except web.HTTPNotFound:
            return _error(404, "There is no such page here.")

    async def _dispatch(
        self, method: str, path: str, viewer: Viewer, form: dict[str, str]
    ) -> Page | Done:
        for want, pattern, route in self._routes:
            match = pattern.match(path)
            if match is not None and want == method:
                request = PageRequest(self._services(), viewer, match.groupdict(), form)
                return await route.handler(request)
        raise web.HTTPNotFound()

    def _sign_in(self, request: web.Request) -> Viewer | web.Response:
        """The viewer the request's initData names, or the refusal to answer with."""
        svc = self._services()
        try:
            launch = verify(
                request.headers.get(INIT_DATA_HEADER, ""),
                self._bot_token,
                svc.clock.now(),
                self._max_age,
            )
        except InitDataError as exc:
            # Failed sign-ins are limited per address, so a forger cannot try fast.
            if self._bucket(f"webapp-anon:{request.remote}").take() > 0:
                return _error(429, "Too many requests; slow down.")
            return _error(401, str(exc))
        if not svc.is_allowed(launch.user_id):
            return _error(403, "This bot is private: ask its owner to add your Telegram id.")
        chat = launch.chat_id if launch.chat_id is not None else launch.user_id
        return Viewer(launch.user_id, launch.first_name, chat, svc.is_admin(launch.user_id))

    def _page(self, page: Page, *, route: str, message: str | None = None) -> web.Response:
        html = self._templates.get_template(page.template).render(**page.values)
        headers = {"Cache-Control": "no-store", "X-Tickler-Route": route}
        if message:
            headers["X-Tickler-Message"] = quote(message)
        return web.Response(text=html, content_type="text/html", headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
