"""SQLite's SQL, as storage/ writes it, rewritten once per statement for PostgreSQL.

The SQL of storage/ is written once, in the subset both databases read alike (text
times in one fixed-width format, `->>` on JSON, `ON CONFLICT`, `RETURNING`, `UPDATE …
FROM`). What differs is mechanical and rewritten here: placeholders (`?` and `:name`
become `$n`), `INSERT OR IGNORE`, and the JSON lists passed as one parameter
(`json_each(?)`), which PostgreSQL reads with `json_array_elements`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Statement", "to_postgres"]

# A string literal, a quoted name, a `?` or `:name` placeholder, or a `::` cast (kept).
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:([A-Za-z_][A-Za-z0-9_]*)")
_OR_IGNORE = re.compile(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\sRETURNING\s", re.IGNORECASE)
# `SELECT value FROM json_each(X)`: the list's items as text.
_LIST_ITEMS = re.compile(r"SELECT\s+value\s+FROM\s+json_each\((\$\d+)\)", re.IGNORECASE)
# `json_each(X) AS f`: the items as JSON values (`f.value ->> 0`).
_JSON_ROWS = re.compile(r"json_each\((\$\d+)\)\s+AS\s+(\w+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement in PostgreSQL's dialect, and where its parameters go."""

    text: str
    #: For `:name` placeholders, the name of each `$n` in order; empty for `?`.
    names: tuple[str, ...]

    def arguments(self, parameters: Any) -> Sequence[Any]:
        if self.names:
            given: Mapping[str, Any] = parameters
            return [given[name] for name in self.names]
        return tuple(parameters) if parameters else ()


@functools.cache
def to_postgres(sql: str) -> Statement:
    names: list[str] = []
    positional = 0

    def placeholder(match: re.Match[str]) -> str:
        nonlocal positional
        token = match.group(0)
        if token == "?":
            positional += 1
            return f"${positional}"
        if match.group(1) is not None:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"
        return token

    text = _TOKENS.sub(placeholder, sql)
    if positional and names:
        raise ValueError(f"a statement mixes ? and :name placeholders: {sql}")
    if _OR_IGNORE.search(text):
        text = _OR_IGNORE.sub("INSERT INTO", text)
        returning = _RETURNING.search(text)
        if returning is None:
            text += " ON CONFLICT DO NOTHING"
        else:
            at = returning.start()
            text = f"{text[:at]} ON CONFLICT DO NOTHING{text[at:]}"
    text = _LIST_ITEMS.sub(r"SELECT json_array_elements_text(CAST(\1 AS json))", text)
    text = _JSON_ROWS.sub(r"json_array_elements(CAST(\1 AS json)) AS \2(value)", text)
    return Statement(text, tuple(names))
