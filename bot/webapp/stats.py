"""The Mini App's Stats page: what /stats says, in the same words (bot/views_stats.py), and
its chart inline as a data: URI (the page's requests are signed in by a header, which an
<img src> could not send)."""

from __future__ import annotations

import base64
import logging

from bot.stats_chart import HEIGHT_PX, WIDTH_PX, render_png_async
from bot.views_stats import (
    chart_caption,
    chart_failed_text,
    more_schedules,
    schedule_lines,
    stats_heading,
    stats_lines,
)
from bot.webapp.pages import Page, PageRequest, Route
from scheduler.stats import chat_stats, parse_window

__all__ = ["ROUTES", "WINDOWS"]

log = logging.getLogger("tickler.webapp")

#: The windows the page links to, as /stats takes them (any other it accepts works too).
WINDOWS = (("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days"))


async def show(request: PageRequest) -> Page:
    """/stats [24h|7d|30d]; a window /stats refuses gets its sentence (409)."""
    svc = request.svc
    chat_id = request.viewer.chat_id
    window = request.form.get("window")
    span = parse_window(window)
    zone = await svc.service.chat_timezone(chat_id)
    store = svc.store
    figures = await chat_stats(store.runs, store.schedules, svc.clock, chat_id, window, zone)
    chart: str | None = None
    chart_error: str | None = None
    try:
        png = await render_png_async(figures)
        chart = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    except Exception as exc:
        # The figures are complete without it: say the picture is missing and why.
        log.exception("the Mini App's stats chart failed", extra={"chat_id": chat_id})
        chart_error = chart_failed_text(exc)
    return Page(
        "stats.html",
        {
            "heading": stats_heading(figures),
            "lines": stats_lines(figures),
            "schedules": schedule_lines(figures) if figures.total else [],
            "more": more_schedules(figures) if figures.total else None,
            "windows": [(key, words, parse_window(key) == span) for key, words in WINDOWS],
            "chart": chart,
            "chart_alt": chart_caption(figures),
            "chart_error": chart_error,
            "width": WIDTH_PX,
            "height": HEIGHT_PX,
        },
    )


ROUTES: tuple[Route, ...] = (Route("GET", "/stats", show),)
