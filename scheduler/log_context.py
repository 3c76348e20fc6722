"""Ids that every log line written inside a run carries.

The engine enters `log_context(run_id=..., schedule_id=..., chat_id=...)` around each
run; a context variable (not an argument) so that whatever logs during the run — the
dispatcher, httpx, the notifier's background sends, which copy the context when they
are created — is tagged without knowing about runs. `bot.logs` reads it when a line
is written. It lives here because `scheduler/` must not import the bot.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from types import MappingProxyType

__all__ = ["current_log_context", "log_context", "log_context_for"]

_EMPTY: Mapping[str, object] = MappingProxyType({})
_current: ContextVar[Mapping[str, object]] = ContextVar("tickler_log_context", default=_EMPTY)


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Tag every line logged inside the block (and in tasks it starts) with `ids`;
    ids given as None are left out. Nested blocks add to the outer ids."""
    merged = {**_current.get(), **{k: v for k, v in ids.items() if v is not None}}
    token = _current.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _current.reset(token)


def log_context_for(**ids: object) -> Context:
    """A copy of the current context with `ids` added, for `asyncio.create_task(...,
    context=...)`: what `with log_context(...)` around `create_task` gives, without the
    generator-based context manager (the engine starts one task per run)."""
    merged = {**_current.get(), **{k: v for k, v in ids.items() if v is not None}}
    context = copy_context()
    context.run(_current.set, MappingProxyType(merged))
    return context


def current_log_context() -> Mapping[str, object]:
    return _current.get()
