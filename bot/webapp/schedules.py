"""The Mini App's schedules pages."""

from __future__ import annotations

from bot.webapp.pages import Route

__all__ = ["ROUTES"]

ROUTES: tuple[Route, ...] = ()
