"""The Mini App's bundles pages."""

from __future__ import annotations

from bot.webapp.pages import Route

__all__ = ["ROUTES"]

ROUTES: tuple[Route, ...] = ()
