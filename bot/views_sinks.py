"""What /sinks shows: a chat's notification sinks (scheduler/sinks.py), never a secret."""

from __future__ import annotations

from collections.abc import Sequence

from bot.render import esc
from scheduler.sinks import EVENTS, AddedSink, Sink, SinkKind, SinkStatus

__all__ = ["USAGE", "added_text", "sinks_screen"]

USAGE = (
    "Use /sinks to list this chat's sinks; /sinks add webhook URL [events] [secret], "
    "/sinks add slack URL [events], /sinks add email ADDRESS [events]; "
    "/sinks events ID failed,approval,...; /sinks remove ID. "
    f"The events: {', '.join(EVENTS)} (or all)."
)


def sink_line(sink: Sink) -> str:
    dead = " — <b>dead</b>" if sink.status is SinkStatus.DEAD else ""
    failing = (
        f" (failing: {esc(sink.last_error or '')})"
        if sink.failing_since is not None and sink.status is SinkStatus.ACTIVE
        else ""
    )
    return (
        f"<code>{esc(sink.id)}</code> {sink.kind.value} → {esc(sink.target)}\n"
        f"   events: {', '.join(sink.events)}{dead}{failing}"
    )


def sinks_screen(sinks: Sequence[Sink]) -> str:
    if not sinks:
        return "📮 This chat has no sinks: its notices come only here.\n" + esc(USAGE)
    lines = ["📮 <b>Sinks</b> (besides this chat):"] + [sink_line(s) for s in sinks]
    return "\n".join(lines)


def added_text(added: AddedSink) -> str:
    sink = added.sink
    text = (
        f"📮 Added the {sink.kind.value} sink <code>{esc(sink.id)}</code> → "
        f"{esc(sink.target)} for {', '.join(sink.events)}."
    )
    if added.new_secret is not None:
        text += (
            f"\nIts signing secret (shown this once): <code>{esc(added.new_secret)}</code>\n"
            "Verify X-Tickler-Signature with it (docs/notification-sinks.md)."
        )
    elif sink.kind is SinkKind.WEBHOOK:
        text += "\nIt signs with the secret you gave."
    return text
