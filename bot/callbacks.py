"""Callback data for inline buttons: short, parseable, at most 64 bytes.

    s:<action>:<schedule_id>[:<arg>]   a schedule: show, run, pause, resume, hist[:page],
                                       edit, del, arch, keep; a trailing :c edits the card
    r:<action>:<run_id>                a run: retry, done, drop, approve, skip
    p:<action>:<proposal_id>           an agent's proposal: approve, reject, undo (admins only)
    m:<choice>:<schedule_id>:<a>:<b>   missed fires between epoch seconds a and b
    o:menu:<schedule_id>               a schedule's policies menu
    o:set:<schedule_id>:<name>:<value> set one policy from that menu
    l:<page>                           /schedules page
    h:<page>                           /history page of the whole chat
    n:<step>:<value>                   the /new conversation
    tm:<step>:<value>                  the /template conversation
    k:<action>:<bundle_id>[:<step>]    a bundle's card: card, open, proof, wait, fu, done
    bg:<choice>:<schedule_id>:<stamp>:<[c]r|[c]t>  a budget notice: raise, once, keep
                                       (admins only; c: the chat's budget)

Handlers never trust the data: every id is looked up in the chat the button was
pressed in, so forged data for another chat's schedule finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STALE_BUTTON", "Callback", "make", "parse"]

#: The answer to a button whose data makes no sense (old, or forged) or that no handler
#: knows.
STALE_BUTTON = "That button is out of date; send the command again."


@dataclass(frozen=True)
class Callback:
    kind: str
    action: str
    args: tuple[str, ...]


def make(kind: str, action: str, *args: object) -> str:
    data = ":".join([kind, action, *(str(a) for a in args)])
    if len(data.encode()) > 64:
        raise ValueError(f"callback data too long: {data!r}")
    return data


def parse(data: str | None) -> Callback | None:
    if not data:
        return None
    parts = data.split(":")
    if len(parts) < 2:
        return None
    return Callback(parts[0], parts[1], tuple(parts[2:]))
