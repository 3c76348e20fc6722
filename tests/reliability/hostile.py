"""Shared pieces of the hostile-input and security tests: what "one sentence" means,
strategies for hostile text, a snapshot of the database file, and the checks that
nothing stored is half-valid.

One sentence (a refusal as the operator reads it), precisely:
- one line: no line break anywhere;
- 1 to MAX_SENTENCE characters once surrounding spaces are stripped;
- ends with "." or "?";
- no traceback and no Python internals (`Traceback`, `File "`, an exception class
  name such as `ValueError`, `<class `, ` object at 0x`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from hypothesis import strategies as st

from scheduler.models import Schedule
from scheduler.service import Limits
from scheduler.templates import check_template, load_template

__all__ = [
    "MAX_SENTENCE",
    "NASTY",
    "db_snapshot",
    "hostile_text",
    "hostile_word",
    "schedule_problems",
    "sentence_problem",
]

#: The longest refusal allowed: long enough for the longest sentence we write with a
#: clipped echo of the input, far below Telegram's 4096.
MAX_SENTENCE = 500

_INTERNALS = re.compile(
    r"Traceback|File \"|<class |object at 0x|\b[A-Z][A-Za-z]*(?:Error|Exception)\b"
)


def sentence_problem(text: str | None) -> str | None:
    """Why `text` is not one sentence, or None when it is."""
    if text is None:
        return "no text"
    stripped = text.strip()
    if not stripped:
        return "empty"
    if "\n" in stripped or "\r" in stripped:
        return "more than one line"
    if len(stripped) > MAX_SENTENCE:
        return f"{len(stripped)} characters, over {MAX_SENTENCE}"
    if not stripped.endswith((".", "?")):
        return "does not end with . or ?"
    found = _INTERNALS.search(stripped)
    if found:
        return f"shows Python internals ({found.group(0)!r})"
    return None


#: Fragments that have broken bots before: direction overrides, zero-width and
#: joiner characters, a BOM, combining marks, astral-plane letters, HTML and
#: format-string syntax, SQL, and the attribute walks a template engine must refuse.
NASTY = (
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte-order mark
    "\u0301",  # combining acute accent
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew
    "\u0645\u0631\u062d\u0628\u0627",  # Arabic
    "👍🏽",
    "👨‍👩‍👧",
    "𝔘𝔫𝔦",
    "<b>",
    "</i>",
    "&amp;",
    "<a href='x'>",
    "{",
    "}",
    "{{",
    "}}",
    "{date}",
    "{schedule.__class__}",
    "{0.__globals__}",
    "{date.__class__.__mro__}",
    "{last_output[0]}",
    "{date:>999999999}",
    "{date!r}",
    "{__import__}",
    "{}",
    "%s",
    "%(x)s",
    "${HOME}",
    "'; DROP TABLE schedules; --",
    '"',
    "'",
    "`",
    "\\",
    "../../etc/passwd",
    ":",
    "*",
    "/",
    "-1",
    "0",
    "99999999999999999999",
    "1e308",
    "NaN",
    "null",
    "@daily",
    "*/0",
    "Europe/Berlin",
    "Etc/GMT+14",
    "2026-11-23",
    "9999-12-31",
    "0001-01-01",
    "24:00",
    "23:59",
    "3d",
    "999w",
)

#: Characters that are not line breaks: Telegram's command arguments are words.
_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e")


def hostile_word(max_size: int = 40) -> st.SearchStrategy[str]:
    """One word (no whitespace) of hostile characters."""
    piece = st.one_of(
        st.sampled_from(NASTY),
        st.text(_CHARS, min_size=1, max_size=max_size),
    )
    return (
        st.lists(piece, min_size=1, max_size=4)
        .map("".join)
        .map(lambda s: "".join(s.split()) or "x")
        .map(lambda s: s[:max_size] if len(s) > max_size else s)
    )


def hostile_text(max_size: int = 10_240) -> st.SearchStrategy[str]:
    """Text of up to `max_size` characters: words, nasty fragments, long repeats."""
    short = st.lists(
        st.one_of(st.sampled_from(NASTY), st.text(_CHARS, max_size=30), st.just(" ")),
        max_size=12,
    ).map("".join)
    long = st.tuples(st.sampled_from((*NASTY, "x", "ab ", "é")), st.integers(1, max_size)).map(
        lambda t: (t[0] * t[1])[:max_size]
    )
    return st.one_of(short, short, long)


def db_snapshot(path: Path) -> list[str]:
    """Every row of the database file, as SQL text: equal snapshots, equal data (the
    engine's heartbeat row aside)."""
    with closing(sqlite3.connect(path)) as db:
        # The engine's own liveness row is not data anyone entered.
        return [line for line in db.iterdump() if "engine_instances" not in line]


def schedule_problems(schedules: Iterable[Schedule], limits: Limits | None = None) -> list[str]:
    """What is half-valid about stored schedules: each must be a schedule the service
    would create (name, prompt, trigger), scoped to one chat."""
    limits = limits or Limits()
    problems: list[str] = []
    for s in schedules:
        where = f"schedule {s.id!r}"
        name = " ".join(s.name.split())
        if not name or name != s.name or len(name) > limits.max_name_chars:
            problems.append(f"{where}: name {s.name!r}")
        text = load_template(s.action.template) if s.action.template else s.action.text
        if not text.strip():
            problems.append(f"{where}: empty prompt")
        if len(text) > limits.max_prompt_chars:
            problems.append(f"{where}: prompt of {len(text)} characters")
        try:
            check_template(text)
        except ValueError as exc:
            problems.append(f"{where}: prompt does not render ({exc})")
        if s.archived_at is None and s.enabled and s.next_run_at is None:
            problems.append(f"{where}: active with no next fire")
        describe = s.trigger.describe()
        if not describe:
            problems.append(f"{where}: trigger without description")
    return problems
