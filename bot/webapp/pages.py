"""What a Mini App page handler gets (`PageRequest`) and gives back: a `Page` to show, or,
for an action, `Done` (what it did, and which page to show next)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.context import Services

__all__ = ["Done", "Handler", "Page", "PageRequest", "Route", "Viewer"]


@dataclass(frozen=True, slots=True)
class Viewer:
    """The Telegram user initData names, in the chat it scopes them to."""

    user_id: int
    first_name: str
    #: The chat whose schedules, runs and tasks the pages show: the user's private chat
    #: with the bot, or the chat Telegram says the app was opened from.
    chat_id: int
    admin: bool


@dataclass(frozen=True, slots=True)
class PageRequest:
    svc: Services
    viewer: Viewer
    #: The path's parts (`{schedule_id}` of `/schedules/{schedule_id}`).
    params: Mapping[str, str]
    #: The query string (GET) or the submitted form (POST).
    form: Mapping[str, str]

    @property
    def actor(self) -> str:
        return str(self.viewer.user_id)


@dataclass(frozen=True, slots=True)
class Page:
    """A template of bot/webapp/templates and its values."""

    template: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Done:
    """An action's answer: one sentence for the viewer, and the page to show after it."""

    message: str
    then: str


Handler = Callable[[PageRequest], Awaitable[Page | Done]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # GET shows a page; POST is an action
    path: str  # "/schedules/{schedule_id}"
    handler: Handler
