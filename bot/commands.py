"""The bot's commands as Telegram's menu and /help list them, in that order."""

from __future__ import annotations

__all__ = ["COMMANDS"]

#: The command menu, in the order /help shows it.
COMMANDS: list[tuple[str, str]] = [
    ("start", "Welcome and a short tour"),
    ("help", "Every command, with what it does"),
    ("today", "What needs you now: due, overdue, follow-ups, approvals, failures"),
    ("done", "Mark a work item done: /done ITEM [link]"),
    ("wait", "Park a work item: /wait ITEM WHO DATE NOTE"),
    ("followup", "Follow-ups: /followup ITEM sent 3d | ITEM received | 3d WHAT"),
    ("bundle", "Workflow bundles and their risk; one bundle's steps: /bundle [ID]"),
    ("proof", "Add a step's proof before completing it: /proof ITEM https://…"),
    ("new", "Create a schedule or a task for you (guided, with presets)"),
    ("template", "Create a workflow template: dated tasks and prompts per anchor date"),
    ("schedules", "List this chat's schedules"),
    ("show", "One schedule's card: /show ID"),
    ("edit", "Change a schedule or a policy: /edit ID field value"),
    ("pause", "Pause a schedule: /pause ID [reason]"),
    ("resume", "Resume a paused or tripped schedule: /resume ID"),
    ("delete", "Archive a schedule (history is kept): /delete ID"),
    ("runnow", "Run a schedule right now: /runnow ID"),
    ("history", "Recent runs: /history [ID]"),
    ("run", "One run in detail: attempts, output, error, tokens: /run RUN_ID"),
    ("approve", "What waits for your approval: /approve [ID]"),
    ("deadletters", "Runs that failed for good"),
    ("stats", "How the schedules are doing: /stats [24h|7d|30d]"),
    ("agent", "This chat's own agent (admins): /agent url|mode|secret|model VALUE, /agent reset"),
    (
        "sinks",
        "Where notices go besides this chat: webhooks, Slack, e-mail: /sinks [add|events|remove]",
    ),
    ("budget", "Runs and tokens used, and the weekly limits: /budget [runs N|tokens N|off]"),
    ("retry", "Send a dead run again: /retry RUN_ID"),
    ("backfill", "Run past windows explicitly: /backfill ID FROM TO"),
    ("tz", "Show or set this chat's time zone: /tz Europe/Berlin"),
    ("export", "Download this chat's data as JSONL files"),
]
