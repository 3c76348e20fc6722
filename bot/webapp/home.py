"""Operations Home: what /today shows, with its actions."""

from __future__ import annotations

from bot.webapp.pages import Page, PageRequest, Route

__all__ = ["ROUTES"]


async def show(request: PageRequest) -> Page:
    return Page("home.html", {"viewer": request.viewer})


ROUTES: tuple[Route, ...] = (Route("GET", "/home", show),)
