"""/new: a guided conversation with presets, and a one-line form for power users.

    /new                                   What? -> prompt -> When? -> detail -> name -> preview
                                           (a task: title -> instructions -> for whom ->
                                           proof -> When? ...)
    /new [remind] WHEN TEXT                straight to the preview (grammar in views_new)

Every step answers bad input with one sentence and stays where it is; /cancel or
[Cancel] ends it at any step. The draft lives in `user_data`, keyed by chat, so the
same operator can fill in forms in two chats at once. Buttons carry `n:<step>:<value>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import callbacks
from bot.context import Context
from bot.handlers.forms import CANCELLED, Form
from bot.handlers.forms import chat_id as _chat_id
from bot.handlers.forms import chosen as _chosen
from bot.handlers.forms import drop_buttons as _drop_buttons
from bot.handlers.forms import pressed as _pressed
from bot.handlers.forms import say as _say
from bot.handlers.forms import text as _text
from bot.views_new import (
    CRON_HELP,
    ONCE_HELP,
    WEEKDAYS,
    cron_spec,
    default_name,
    every_spec,
    once_spec,
    parse_day_of_month,
    parse_duration,
    parse_once,
    parse_one_line,
    parse_time,
    parse_weekdays,
    parse_when,
    preset_cron,
    preview_text,
    saved_text,
)
from scheduler.errors import TicklerError
from scheduler.models import Action, ActionKind, Owner
from scheduler.policy_edits import edit_action
from scheduler.service import TriggerSpec
from scheduler.triggers import Trigger

__all__ = ["PRESETS", "TIMES", "form"]

(
    KIND,
    TEXT,
    WHEN,
    TIME,
    WEEKDAY,
    MONTHDAY,
    HOURS,
    ONCE,
    CRON,
    NAME,
    CONFIRM,
    INSTRUCTIONS,
    ASSIGNEE,
    PROOF,
) = range(14)
END = ConversationHandler.END

DRAFTS_KEY = "new_drafts"
PRESETS: tuple[tuple[str, str], ...] = (
    ("daily", "Daily at…"),
    ("weekdays", "Weekdays at…"),
    ("weekly", "Weekly on…"),
    ("monthly", "Monthly on…"),
    ("every", "Every N hours"),
    ("once", "Once at/in…"),
    ("cron", "Custom cron"),
)
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("daily_brief", "Daily brief"),
    ("weekly_review", "Weekly review"),
)
TIMES = ("07:00", "08:00", "09:00", "12:00", "18:00", "21:00")
ONCE_CHOICES: tuple[tuple[str, str], ...] = (
    ("in 1 hour", "in 1 hour"),
    ("tomorrow 09:00", "tomorrow 09:00"),
    ("in 3 days", "in 3 days"),
)
PROOFS: tuple[tuple[str, str], ...] = (("none", "Nothing"), ("link", "A link"), ("file", "A file"))


@dataclass
class Draft:
    """The form as filled in so far."""

    kind: ActionKind = ActionKind.AGENT
    text: str = ""
    template: str | None = None
    preset: str = ""
    weekdays: list[int] = field(default_factory=list)
    day: int = 1
    spec: TriggerSpec | None = None
    zone: str = "UTC"
    name: str = ""
    #: A task's details (scheduler/policy_edits.py validates them).
    task: Action = field(default_factory=lambda: Action(kind=ActionKind.TASK))

    @property
    def action(self) -> Action:
        if self.template:
            return Action(kind=ActionKind.AGENT, template=self.template)
        if self.kind is ActionKind.TASK:
            return self.task.model_copy(update={"text": self.text})
        return Action(kind=self.kind, text=self.text)


# --- plumbing ------------------------------------------------------------------------
def _button(label: str, step: str, value: object = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=callbacks.make("n", step, value))


def _keyboard(*rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([*rows, [_button("Cancel", "cancel")]])


def _drafts(context: Context) -> dict[int, Draft]:
    assert context.user_data is not None
    drafts: dict[int, Draft] = context.user_data.setdefault(DRAFTS_KEY, {})
    return drafts


def _draft(update: Update, context: Context) -> Draft:
    return _drafts(context).setdefault(_chat_id(update), Draft())


def _forget(update: Update, context: Context) -> None:
    _drafts(context).pop(_chat_id(update), None)


def _check_trigger(context: Context, spec: TriggerSpec) -> Trigger:
    """The trigger as create_schedule will build it, refused when it never fires."""
    return context.services.service.check_trigger(spec)


# --- questions -----------------------------------------------------------------------
async def _ask_kind(update: Update) -> int:
    await _say(
        update,
        "What should it do?",
        _keyboard(
            [_button("Ask the agent", "kind", "agent"), _button("Remind me", "kind", "rem")],
            [_button("Add a task for me", "kind", "task")],
        ),
    )
    return KIND


async def _ask_text(update: Update, draft: Draft) -> int:
    if draft.kind is ActionKind.REMINDER:
        await _say(update, "What should the reminder say? Write it as a message.", _keyboard())
    elif draft.kind is ActionKind.TASK:
        await _say(update, "What is the task? Write its title, like Pay the rent.", _keyboard())
    else:
        await _say(
            update,
            "What should the agent do? Write the prompt as a message, or pick a template.",
            _keyboard([_button(label, "tpl", name) for name, label in TEMPLATES]),
        )
    return TEXT


async def _ask_instructions(update: Update) -> int:
    await _say(
        update,
        "Any instructions to show with it? Write them, or press Skip.",
        _keyboard([_button("Skip", "instr")]),
    )
    return INSTRUCTIONS


async def _ask_assignee(update: Update) -> int:
    await _say(
        update,
        "Who is it for? Write a name, or press Me.",
        _keyboard([_button("Me", "who")]),
    )
    return ASSIGNEE


async def _ask_proof(update: Update) -> int:
    await _say(
        update,
        "What must marking it done include?",
        _keyboard([_button(label, "proof", value) for value, label in PROOFS]),
    )
    return PROOF


async def _ask_when(update: Update, draft: Draft) -> int:
    rows = [
        [_button(label, "when", key) for key, label in PRESETS[i : i + 2]]
        for i in range(0, len(PRESETS), 2)
    ]
    await _say(update, f"When? (times are {draft.zone})", _keyboard(*rows))
    return WHEN


async def _ask_time(update: Update) -> int:
    rows = [[_button(t, "time", t.replace(":", "")) for t in TIMES[i : i + 3]] for i in (0, 3)]
    await _say(update, "At what time? Write it as HH:MM, like 09:00.", _keyboard(*rows))
    return TIME


async def _ask_detail(update: Update, draft: Draft) -> int:
    """The follow-up question for the chosen preset."""
    preset = draft.preset
    if preset in ("daily", "weekdays"):
        return await _ask_time(update)
    if preset == "weekly":
        days = [_button(label, "dow", number) for label, number in WEEKDAYS]
        await _say(update, "On which day?", _keyboard(days[:4], days[4:]))
        return WEEKDAY
    if preset == "monthly":
        rows = [[_button(str(d), "dom", d) for d in range(r, r + 7)] for r in (1, 8, 15, 22)]
        await _say(update, "On which day of the month? (1 to 28)", _keyboard(*rows))
        return MONTHDAY
    if preset == "every":
        rows = [[_button(str(h), "hours", h) for h in range(r, r + 6)] for r in (1, 7)]
        await _say(update, "Every how many hours?", _keyboard(*rows))
        return HOURS
    if preset == "once":
        choices = [_button(label, "once", i) for i, (label, _) in enumerate(ONCE_CHOICES)]
        await _say(update, f"When exactly? {ONCE_HELP}", _keyboard(choices))
        return ONCE
    await _say(
        update,
        f"{CRON_HELP} The fields are minute, hour, day of month, month and day of week, "
        f"in {draft.zone} time.",
        _keyboard(),
    )
    return CRON


async def _ask_name(update: Update, draft: Draft) -> int:
    suggestion = default_name(draft.action)
    await _say(
        update,
        "What should it be called? Write a name, or use the suggestion.",
        _keyboard([_button(f"Use “{suggestion}”", "name")]),
    )
    return NAME


async def _show_preview(update: Update, context: Context, draft: Draft) -> int | None:
    assert draft.spec is not None
    try:
        trigger = _check_trigger(context, draft.spec)
    except TicklerError as error:
        # Time moved on while the form was filled in (a one-time instant passed).
        await _say(update, str(error))
        return await _ask_when(update, draft)
    text = preview_text(
        name=draft.name,
        action=draft.action,
        trigger=trigger,
        now=context.services.clock.now(),
    )
    markup = InlineKeyboardMarkup([[_button("Save", "save"), _button("Cancel", "cancel")]])
    await _say(update, text, markup, html=True)
    return CONFIRM


async def _when_done(
    update: Update, context: Context, draft: Draft, spec: TriggerSpec
) -> int | None:
    """Validate the trigger; on success go on to the name, else stay with one sentence."""
    try:
        _check_trigger(context, spec)
    except TicklerError as error:
        await _say(update, str(error))
        return None
    draft.spec = spec
    return await _ask_name(update, draft)


# --- entry ---------------------------------------------------------------------------
async def new_command(update: Update, context: Context) -> int:
    """/new: the guided form, or with arguments the one-line form."""
    svc = context.services
    chat_id = _chat_id(update)
    zone = await svc.service.chat_timezone(chat_id)
    _forget(update, context)
    match = re.match(r"/\S+\s*(.*)", _text(update), re.DOTALL)
    rest = match.group(1).strip() if match else ""
    draft = _draft(update, context)
    draft.zone = zone
    if not rest:
        return await _ask_kind(update)
    try:
        line = parse_one_line(rest, svc.clock.now(), zone)
        svc.service.check_text(line.kind, line.text)
        _check_trigger(context, line.trigger)
    except TicklerError as error:
        _forget(update, context)
        await _say(update, str(error))
        return END
    draft.kind, draft.text, draft.spec = line.kind, line.text, line.trigger
    draft.name = default_name(draft.action)
    state = await _show_preview(update, context, draft)
    return CONFIRM if state == CONFIRM else END


# --- steps ---------------------------------------------------------------------------
async def on_kind(update: Update, context: Context) -> int:
    """[Ask the agent] / [Remind me]."""
    query, args = await _pressed(update)
    draft = _draft(update, context)
    kinds = {
        "rem": (ActionKind.REMINDER, "Remind me"),
        "task": (ActionKind.TASK, "Add a task for me"),
    }
    draft.kind, label = kinds.get(args[0] if args else "", (ActionKind.AGENT, "Ask the agent"))
    await _chosen(query, label)
    return await _ask_text(update, draft)


async def on_kind_typed(update: Update, context: Context) -> None:
    """Text where a button was expected."""
    await _say(update, "Press Ask the agent, Remind me or Add a task for me, or /cancel.")


async def on_text(update: Update, context: Context) -> int | None:
    """The prompt or the reminder text."""
    draft = _draft(update, context)
    try:
        draft.text = context.services.service.check_text(draft.kind, _text(update))
    except TicklerError as error:
        await _say(update, str(error))
        return None
    draft.template = None
    if draft.kind is ActionKind.TASK:
        return await _ask_instructions(update)
    return await _ask_when(update, draft)


def _task_detail(context: Context, draft: Draft, setting: str, text: str) -> None:
    """Set one of the task's details, validated by the service layer as /edit is."""
    limit = context.services.service.limits.max_prompt_chars
    draft.task = edit_action(draft.task, setting, text, max_instructions=limit)


async def _detail_typed(
    update: Update,
    context: Context,
    setting: str,
    ask_next: Callable[[Update], Coroutine[Any, Any, int]],
) -> int | None:
    """A detail written as a message: set it and ask the next question, or stay."""
    try:
        _task_detail(context, _draft(update, context), setting, _text(update))
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await ask_next(update)


async def on_instructions_skip(update: Update, context: Context) -> int:
    """[Skip]: no instructions."""
    query, _ = await _pressed(update)
    await _chosen(query, "Skip")
    return await _ask_assignee(update)


async def on_instructions_typed(update: Update, context: Context) -> int | None:
    return await _detail_typed(update, context, "instructions", _ask_assignee)


async def on_assignee_me(update: Update, context: Context) -> int:
    """[Me]: no assignee; the task is the operator's own."""
    query, _ = await _pressed(update)
    await _chosen(query, "Me")
    return await _ask_proof(update)


async def on_assignee_typed(update: Update, context: Context) -> int | None:
    return await _detail_typed(update, context, "assignee", _ask_proof)


async def on_proof(update: Update, context: Context) -> int:
    """[Nothing] / [A link] / [A file]: n:proof:<none|link|file>."""
    query, args = await _pressed(update)
    labels = dict(PROOFS)
    value = args[0] if args and args[0] in labels else "none"
    draft = _draft(update, context)
    _task_detail(context, draft, "proof", value)
    await _chosen(query, labels[value])
    return await _ask_when(update, draft)


async def on_proof_typed(update: Update, context: Context) -> None:
    await _say(update, "Press Nothing, A link or A file, or /cancel.")


async def on_template(update: Update, context: Context) -> int:
    """[Daily brief] / [Weekly review]."""
    query, args = await _pressed(update)
    draft = _draft(update, context)
    names = dict(TEMPLATES)
    template = args[0] if args and args[0] in names else TEMPLATES[0][0]
    draft.kind, draft.template, draft.text = ActionKind.AGENT, template, ""
    await _chosen(query, names[template])
    return await _ask_when(update, draft)


async def on_preset(update: Update, context: Context) -> int:
    """One of the When? presets."""
    query, args = await _pressed(update)
    draft = _draft(update, context)
    labels = dict(PRESETS)
    draft.preset = args[0] if args and args[0] in labels else "daily"
    await _chosen(query, labels[draft.preset])
    return await _ask_detail(update, draft)


async def on_when_typed(update: Update, context: Context) -> int | None:
    """A schedule written out (`daily 09:00`, `every 4h`) instead of a preset button."""
    draft = _draft(update, context)
    try:
        spec, rest = parse_when(_text(update), context.services.clock.now(), draft.zone)
    except TicklerError:
        rest = "?"
    if rest.strip():
        await _say(update, "Press one of the buttons, or write it like daily 09:00 or every 4h.")
        return None
    return await _when_done(update, context, draft, spec)


async def _time_chosen(update: Update, context: Context, hour: int, minute: int) -> int | None:
    draft = _draft(update, context)
    expr = preset_cron(draft.preset, hour, minute, weekdays=draft.weekdays, day=draft.day)
    return await _when_done(update, context, draft, cron_spec(expr, draft.zone))


async def on_time(update: Update, context: Context) -> int | None:
    """A time button: n:time:0900."""
    query, args = await _pressed(update)
    # Our buttons carry HHMM; anything else is forged or stale: the default time.
    value = args[0] if args and re.fullmatch(r"([01][0-9]|2[0-3])[0-5][0-9]", args[0]) else "0900"
    hour, minute = int(value[:2]), int(value[2:])
    await _chosen(query, f"{hour:02d}:{minute:02d}")
    return await _time_chosen(update, context, hour, minute)


async def on_time_typed(update: Update, context: Context) -> int | None:
    """A time written as HH:MM."""
    try:
        hour, minute = parse_time(_text(update))
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await _time_chosen(update, context, hour, minute)


async def on_weekday(update: Update, context: Context) -> int:
    """A weekday button: n:dow:1 (cron numbering, Sunday 0)."""
    query, args = await _pressed(update)
    labels = {str(n): label for label, n in WEEKDAYS}
    number = args[0] if args and args[0] in labels else "1"
    _draft(update, context).weekdays = [int(number)]
    await _chosen(query, labels[number])
    return await _ask_time(update)


async def on_weekday_typed(update: Update, context: Context) -> int | None:
    try:
        _draft(update, context).weekdays = parse_weekdays(_text(update))
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await _ask_time(update)


async def on_monthday(update: Update, context: Context) -> int:
    """A day-of-month button: n:dom:15."""
    query, args = await _pressed(update)
    day = int(args[0]) if args and args[0].isdigit() and 1 <= int(args[0]) <= 28 else 1
    _draft(update, context).day = day
    await _chosen(query, str(day))
    return await _ask_time(update)


async def on_monthday_typed(update: Update, context: Context) -> int | None:
    try:
        _draft(update, context).day = parse_day_of_month(_text(update))
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await _ask_time(update)


async def _every_chosen(update: Update, context: Context, seconds: int) -> int | None:
    draft = _draft(update, context)
    try:
        spec = every_spec(seconds, context.services.clock.now(), draft.zone)
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await _when_done(update, context, draft, spec)


async def on_hours(update: Update, context: Context) -> int | None:
    """An hours button: n:hours:4."""
    query, args = await _pressed(update)
    hours = int(args[0]) if args and args[0].isdigit() else 1
    await _chosen(query, f"every {hours} hour" + ("s" if hours != 1 else ""))
    return await _every_chosen(update, context, hours * 3600)


async def on_hours_typed(update: Update, context: Context) -> int | None:
    """`4` (hours), or with a unit: `30m`, `2d`."""
    try:
        seconds = parse_duration(_text(update), bare_unit=3600)
    except TicklerError:
        await _say(update, "Write a number of hours, like 4, or a unit, like 30m or 2d.")
        return None
    return await _every_chosen(update, context, seconds)


async def _once_chosen(update: Update, context: Context, text: str) -> int | None:
    draft = _draft(update, context)
    try:
        at = parse_once(text, context.services.clock.now(), draft.zone)
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await _when_done(update, context, draft, once_spec(at, draft.zone))


async def on_once(update: Update, context: Context) -> int | None:
    """A one-time choice button: n:once:<index>."""
    query, args = await _pressed(update)
    index = int(args[0]) if args and args[0].isdigit() else 0
    label, text = ONCE_CHOICES[min(index, len(ONCE_CHOICES) - 1)]
    await _chosen(query, label)
    return await _once_chosen(update, context, text)


async def on_once_typed(update: Update, context: Context) -> int | None:
    return await _once_chosen(update, context, _text(update))


async def on_cron_typed(update: Update, context: Context) -> int | None:
    """A cron expression; quotes around it are allowed."""
    draft = _draft(update, context)
    expr = _text(update).strip().strip("\"'“”‘’")
    return await _when_done(update, context, draft, cron_spec(expr, draft.zone))


async def _name_chosen(update: Update, context: Context, name: str) -> int | None:
    draft = _draft(update, context)
    try:
        draft.name = context.services.service.check_name(name)
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await _show_preview(update, context, draft)


async def on_name(update: Update, context: Context) -> int | None:
    """[Use "<suggestion>"]."""
    query, _ = await _pressed(update)
    name = default_name(_draft(update, context).action)
    await _chosen(query, name)
    return await _name_chosen(update, context, name)


async def on_name_typed(update: Update, context: Context) -> int | None:
    return await _name_chosen(update, context, _text(update))


async def on_save(update: Update, context: Context) -> int:
    """[Save]: create the schedule and confirm with its next fire."""
    query, _ = await _pressed(update)
    draft = _draft(update, context)
    _forget(update, context)
    user = update.effective_user
    assert user is not None and draft.spec is not None
    await _drop_buttons(query)
    try:
        schedule = await context.services.service.create_schedule(
            _chat_id(update),
            Owner(id=user.id, first_name=user.first_name),
            name=draft.name,
            trigger=draft.spec,
            action=draft.action,
        )
    except TicklerError as error:
        await _say(update, str(error))
        return END
    await _say(
        update,
        saved_text(
            schedule.name, schedule.id, schedule.next_run_at, schedule.timezone, ref=schedule.ref
        ),
        html=True,
    )
    return END


async def on_confirm_typed(update: Update, context: Context) -> None:
    await _say(update, "Press Save to create the schedule, or Cancel.")


async def cancel(update: Update, context: Context) -> int:
    """[Cancel], at any step (/cancel is the forms' own: bot/handlers/forms.py)."""
    query, _ = await _pressed(update)
    await _drop_buttons(query)
    _forget(update, context)
    await _say(update, CANCELLED)
    return END


_Callback = Callable[[Update, Context], Coroutine[Any, Any, Any]]


def _typed(callback: _Callback) -> MessageHandler[Context, Any]:
    return MessageHandler(filters.TEXT & ~filters.COMMAND, callback)


def _on(step: str, callback: _Callback) -> CallbackQueryHandler[Context, Any]:
    return CallbackQueryHandler(callback, pattern=f"^n:{step}(:|$)")


def form() -> Form:
    """The /new form, joined with the other guided forms by bot/handlers/forms.py."""
    return Form(
        entry_points=[CommandHandler("new", new_command)],
        states={
            KIND: [_on("kind", on_kind), _typed(on_kind_typed)],
            TEXT: [_on("tpl", on_template), _typed(on_text)],
            WHEN: [_on("when", on_preset), _typed(on_when_typed)],
            TIME: [_on("time", on_time), _typed(on_time_typed)],
            WEEKDAY: [_on("dow", on_weekday), _typed(on_weekday_typed)],
            MONTHDAY: [_on("dom", on_monthday), _typed(on_monthday_typed)],
            HOURS: [_on("hours", on_hours), _typed(on_hours_typed)],
            ONCE: [_on("once", on_once), _typed(on_once_typed)],
            CRON: [_typed(on_cron_typed)],
            NAME: [_on("name", on_name), _typed(on_name_typed)],
            INSTRUCTIONS: [_on("instr", on_instructions_skip), _typed(on_instructions_typed)],
            ASSIGNEE: [_on("who", on_assignee_me), _typed(on_assignee_typed)],
            PROOF: [_on("proof", on_proof), _typed(on_proof_typed)],
            CONFIRM: [_on("save", on_save), _typed(on_confirm_typed)],
        },
        fallbacks=[_on("cancel", cancel)],
        kind="n",
        command="new",
        forget=_forget,
    )
