"""Text and buttons for a schedule's policies (and a task's details): the lines on its
card, the [Policies] menu and the answer to `/edit ID <setting> <value>`.

Pure functions of a Schedule, HTML parse mode. The menu's buttons carry
`o:set:<schedule_id>:<setting>:<value>` (bot/handlers/policies.py applies them).
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks
from bot.render import esc
from bot.views_budgets import limits_line
from scheduler.budgets import has_budget
from scheduler.models import ActionKind, MissedRunPolicy, Schedule, TimeoutPolicy
from scheduler.policy_edits import SETTINGS, format_seconds

__all__ = [
    "changed_text",
    "policies_menu",
    "policy_facts",
    "policy_lines",
    "setting_fact",
    "setting_line",
]

#: Labels of the menu's choices; the values are the settings' own.
_CHOICE_LABELS = {
    "missed": {"skip": "skip", "catch_up_once": "latest", "catch_up_all": "all"},
    "overlap": {"skip": "skip", "queue": "queue", "allow": "allow"},
    "on_timeout": {"retry": "retry", "ask": "ask"},
    "proof": {"none": "none", "link": "link", "file": "file"},
}
_MENU_TITLES = {"missed": "Missed", "overlap": "Overlap", "on_timeout": "On timeout"}


def _cut(text: str, limit: int = 200) -> str:
    """Instructions may be 4000 characters: the card shows their start."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lines(schedule: Schedule) -> list[tuple[tuple[str, ...], str]]:
    """Each card line (plain text) with the settings it shows."""
    p = schedule.policies
    missed = p.missed_run.value
    if p.missed_run is MissedRunPolicy.CATCH_UP_ALL:
        missed += f" (up to {p.catch_up_cap})"
    after = "then ask you" if p.timeout_policy is TimeoutPolicy.ASK else "then retry"
    lines = [
        (("missed", "catchup"), f"Missed runs: {missed}"),
        (("overlap",), f"Overlap: {p.overlap.value}"),
        (
            ("attempts", "backoff", "backoff_cap"),
            f"Retries: {p.retry.max_attempts} attempts, backoff "
            f"{format_seconds(p.retry.base_seconds)} doubling up to "
            f"{format_seconds(p.retry.cap_seconds)}",
        ),
        (("timeout", "on_timeout"), f"Timeout: {format_seconds(p.timeout_seconds)}, {after}"),
        (("approval",), f"Run approval: {'on' if p.requires_run_approval else 'off'}"),
        (
            ("budget_runs", "budget_tokens"),
            "Budget: "
            + limits_line(p.budget_runs_per_week, p.budget_tokens_per_week)
            + (" (last 7 days)" if has_budget(p) else ""),
        ),
    ]
    action = schedule.action
    if action.kind is ActionKind.TASK:
        lines += [
            (("proof",), f"Proof: {action.proof or 'none'}"),
            (("assignee",), f"Assignee: {action.assignee or 'none'}"),
            (("instructions",), f"Instructions: {_cut(action.instructions) or 'none'}"),
        ]
    return lines


def policy_facts(schedule: Schedule) -> list[str]:
    """The policies, and for a task its proof, assignee and instructions: one plain
    line each (the card shows them escaped; the Mini App as they are)."""
    return [line for _, line in _lines(schedule)]


def policy_lines(schedule: Schedule) -> list[str]:
    """The card's lines for the policies, and for a task its proof, assignee and
    instructions (HTML)."""
    return [esc(line) for line in policy_facts(schedule)]


def setting_fact(schedule: Schedule, setting: str) -> str:
    """The plain line that shows `setting`."""
    return next(text for names, text in _lines(schedule) if setting in names)


def setting_line(schedule: Schedule, setting: str) -> str:
    """The card's line that shows `setting` (HTML)."""
    return esc(setting_fact(schedule, setting))


def changed_text(schedule: Schedule, setting: str) -> str:
    """The answer to `/edit ID <setting> <value>`: the line that shows the setting."""
    return f"Updated: <b>{esc(schedule.name)}</b> — {setting_line(schedule, setting)}."


def _button(schedule: Schedule, setting: str, value: str, label: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        label, callback_data=callbacks.make("o", "set", schedule.id, setting, value)
    )


def _current(schedule: Schedule, setting: str) -> str:
    p = schedule.policies
    return {
        "missed": p.missed_run.value,
        "overlap": p.overlap.value,
        "on_timeout": p.timeout_policy.value,
        "proof": schedule.action.proof or "none",
    }[setting]


def policies_menu(schedule: Schedule) -> tuple[str, InlineKeyboardMarkup]:
    """The policies with a button for each choice of the enumerated ones (the current
    one ticked), and how to set the numbers with /edit."""
    ident = esc(schedule.id)
    numbers = ", ".join(
        f"<code>/edit {ident} {name} {SETTINGS[name].example}</code>"
        for name in ("attempts", "backoff", "backoff_cap", "timeout", "catchup", "budget_runs")
    )
    text = "\n".join(
        [
            f"<b>Policies of {esc(schedule.name)}</b>",
            *policy_lines(schedule),
            "",
            f"Tap a choice below; set the numbers with {numbers}.",
        ]
    )
    settings = ["missed", "overlap", "on_timeout"]
    if schedule.action.kind is ActionKind.TASK:
        settings.append("proof")
    rows = []
    for setting in settings:
        current = _current(schedule, setting)
        title = _MENU_TITLES.get(setting, setting.capitalize())
        rows.append(
            [
                _button(
                    schedule,
                    setting,
                    value,
                    f"{'✓ ' if value == current else ''}{title}: {label}",
                )
                for value, label in _CHOICE_LABELS[setting].items()
            ]
        )
    approval = schedule.policies.requires_run_approval
    rows.append(
        [
            _button(
                schedule,
                "approval",
                "off" if approval else "on",
                "Stop asking before each run" if approval else "Ask me before each run",
            )
        ]
    )
    return text, InlineKeyboardMarkup(rows)
