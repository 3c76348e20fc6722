"""/template: a workflow template, guided step by step.

    /template [NAME]   name -> When? (daily at, weekdays at, weekly on, monthly on, custom
                       cron, in the chat's zone) -> lead days -> steps, one at a time:
                         a task: title -> offset -> proof -> assignee [Skip] ->
                                 instructions [Skip]
                         an agent prompt: prompt -> offset
                       after each, the steps so far with [Add task] [Add agent prompt]
                       [Remove last] [Done] -> the template's card -> [Save]

Each fire of a template makes one bundle of its steps for the anchor date (the fire's
date plus the lead days); each step is due its offset in days from that date. The form
only parses: every value is checked by the service as it is given (the steps so far
with the new one, through ScheduleService.check_action), so bad input gets the
service's one sentence and the form stays at its question. /cancel or [Cancel] ends it
with nothing saved. Buttons carry `tm:<step>:<value>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ConversationHandler, MessageHandler
from telegram.ext import filters as tg_filters

from bot import callbacks
from bot.context import Context
from bot.handlers.forms import CANCELLED, Form, chat_id, chosen, drop_buttons, pressed, say, text
from bot.handlers.when_form import PRESETS, TIMES
from bot.render import esc
from bot.views_new import (
    CRON_HELP,
    WEEKDAYS,
    cron_spec,
    default_name,
    parse_day_of_month,
    parse_time,
    parse_weekdays,
    parse_when,
    preset_cron,
    saved_text,
    upcoming,
)
from bot.views_template import (
    LEAD_DAYS_HELP,
    OFFSET_HELP,
    confirm_text,
    offset_words,
    parse_lead_days,
    parse_offset,
    steps_summary,
)
from scheduler.cron import load_zone
from scheduler.errors import TicklerError
from scheduler.models import Action, ActionKind, Owner, Step, StepKind
from scheduler.service import TriggerSpec
from scheduler.workflow_steps import MAX_STEPS, anchor_date, check_lead_days

__all__ = ["form"]

# State keys are strings so they cannot meet /new's numbers in the forms' conversation.
NAME = "tm_name"
WHEN = "tm_when"
TIME = "tm_time"
WEEKDAY = "tm_weekday"
MONTHDAY = "tm_monthday"
CRON = "tm_cron"
LEAD = "tm_lead"
STEPS = "tm_steps"
TITLE = "tm_title"
PROMPT = "tm_prompt"
OFFSET = "tm_offset"
PROOF = "tm_proof"
ASSIGNEE = "tm_assignee"
INSTRUCTIONS = "tm_instructions"
CONFIRM = "tm_confirm"
END = ConversationHandler.END

KIND = "tm"
DRAFTS_KEY = "template_drafts"
#: A template fires on calendar days: /new's presets without intervals and one-time.
WHEN_PRESETS = tuple((key, label) for key, label in PRESETS if key not in ("every", "once"))
LEAD_CHOICES = (0, 1, 3, 7, 14, 30)
OFFSET_CHOICES: tuple[tuple[int, ...], ...] = ((-7, -3, -1), (0, 1, 3))
PROOFS: tuple[tuple[str, str], ...] = (
    ("none", "Nothing"),
    ("link", "A link"),
    ("file", "A file"),
    ("note", "A note"),
)
WHEN_TYPED_HELP = (
    "Press one of the buttons, or write it like weekly mon 09:00, monthly 1 09:00 or "
    "cron 0 9 * * 1; a template fires on calendar days, not every few hours or once."
)


@dataclass
class Draft:
    """The template as filled in so far; `step` is the step being written."""

    zone: str = "UTC"
    name: str = ""
    preset: str = ""
    weekdays: list[int] = field(default_factory=list)
    day: int = 1
    spec: TriggerSpec | None = None
    lead_days: int = 0
    steps: list[Step] = field(default_factory=list)
    step: Step = field(default_factory=Step)

    @property
    def action(self) -> Action:
        return Action(kind=ActionKind.BUNDLE, lead_days=self.lead_days, steps=tuple(self.steps))


# --- plumbing ------------------------------------------------------------------------
def _button(label: str, step: str, value: object = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=callbacks.make(KIND, step, value))


def _keyboard(*rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([*rows, [_button("Cancel", "cancel")]])


def _drafts(context: Context) -> dict[int, Draft]:
    assert context.user_data is not None
    drafts: dict[int, Draft] = context.user_data.setdefault(DRAFTS_KEY, {})
    return drafts


def _draft(update: Update, context: Context) -> Draft:
    return _drafts(context).setdefault(chat_id(update), Draft())


def _forget(update: Update, context: Context) -> None:
    _drafts(context).pop(chat_id(update), None)


def _check_step(context: Context, draft: Draft, step: Step) -> Step:
    """The step as the service would take it after the steps so far, or refused."""
    action = Action(kind=ActionKind.BUNDLE, lead_days=draft.lead_days, steps=(*draft.steps, step))
    context.services.service.check_action(action)
    return step


# --- questions -----------------------------------------------------------------------
async def _ask_name(update: Update) -> str:
    await say(
        update,
        "What is the template called? Write a name, like Monthly invoicing.",
        _keyboard(),
    )
    return NAME


async def _ask_when(update: Update, draft: Draft) -> str:
    rows = [
        [_button(label, "when", key) for key, label in WHEN_PRESETS[i : i + 2]]
        for i in range(0, len(WHEN_PRESETS), 2)
    ]
    await say(
        update,
        f"When does the template fire? Each fire makes one bundle of its steps. "
        f"(times are {draft.zone})",
        _keyboard(*rows),
    )
    return WHEN


async def _ask_time(update: Update) -> str:
    rows = [[_button(t, "time", t.replace(":", "")) for t in TIMES[i : i + 3]] for i in (0, 3)]
    await say(update, "At what time? Write it as HH:MM, like 09:00.", _keyboard(*rows))
    return TIME


async def _ask_detail(update: Update, draft: Draft) -> str:
    if draft.preset == "weekly":
        days = [_button(label, "dow", number) for label, number in WEEKDAYS]
        await say(update, "On which day?", _keyboard(days[:4], days[4:]))
        return WEEKDAY
    if draft.preset == "monthly":
        rows = [[_button(str(d), "dom", d) for d in range(r, r + 7)] for r in (1, 8, 15, 22)]
        await say(update, "On which day of the month? (1 to 28)", _keyboard(*rows))
        return MONTHDAY
    if draft.preset == "cron":
        await say(
            update,
            f"{CRON_HELP} The fields are minute, hour, day of month, month and day of week, "
            f"in {draft.zone} time.",
            _keyboard(),
        )
        return CRON
    return await _ask_time(update)


async def _ask_lead(update: Update, context: Context, draft: Draft) -> str:
    assert draft.spec is not None
    trigger = context.services.service.check_trigger(draft.spec)
    fires = upcoming(trigger, context.services.clock.now(), 1)
    example = ""
    if fires:
        zone = load_zone(trigger.timezone)
        fire, anchor = fires[0].astimezone(zone), anchor_date(fires[0], zone, 7)
        example = f" With 7, the fire on {fire:%a %d %b} makes the bundle for {anchor:%a %d %b}."
    await say(
        update,
        "How many days before its anchor date should each bundle be made (lead days)?"
        f"{example} Write a number from 0 to 366, or press one.",
        _keyboard([_button(str(n), "lead", n) for n in LEAD_CHOICES]),
    )
    return LEAD


async def _show_steps(update: Update, draft: Draft, note: str = "") -> str:
    rows = [[_button("Add task", "add", "task"), _button("Add agent prompt", "add", "agent")]]
    if draft.steps:
        rows.append([_button("Remove last", "remove"), _button("Done", "done")])
    summary = steps_summary(draft.steps)
    await say(update, f"{note}\n{summary}" if note else summary, _keyboard(*rows), html=True)
    return STEPS


async def _ask_offset(update: Update, draft: Draft) -> str:
    rows = [
        [_button(offset_words(days).capitalize(), "off", days) for days in row]
        for row in OFFSET_CHOICES
    ]
    await say(
        update,
        f"When is step {len(draft.steps) + 1} due, in days from the anchor date? Write -3 "
        "or 3 before, 2 after, or 0 for on the day, or press one.",
        _keyboard(*rows),
    )
    return OFFSET


async def _ask_proof(update: Update) -> str:
    await say(
        update,
        "What must marking it done include?",
        _keyboard([_button(label, "proof", value) for value, label in PROOFS]),
    )
    return PROOF


async def _ask_assignee(update: Update) -> str:
    await say(
        update, "Who is it for? Write a name, or press Skip.", _keyboard([_button("Skip", "who")])
    )
    return ASSIGNEE


async def _ask_instructions(update: Update) -> str:
    await say(
        update,
        "Any instructions to show with it? Write them, or press Skip.",
        _keyboard([_button("Skip", "instr")]),
    )
    return INSTRUCTIONS


async def _step_done(update: Update, draft: Draft) -> str:
    """The step being written is complete: add it and show the steps so far."""
    draft.steps.append(draft.step)
    draft.step = Step()
    return await _show_steps(update, draft)


# --- entry and the template's own questions -------------------------------------------
async def template_command(update: Update, context: Context) -> str:
    """/template [NAME]: the guided form for a workflow template."""
    _forget(update, context)
    draft = _draft(update, context)
    draft.zone = await context.services.service.chat_timezone(chat_id(update))
    match = re.match(r"/\S+\s*(.*)", text(update), re.DOTALL)
    name = match.group(1).strip() if match else ""
    if not name:
        return await _ask_name(update)
    # A name refused here was answered with its sentence; the form waits for another.
    return await _name_given(update, context, name) or NAME


async def _name_given(update: Update, context: Context, name: str) -> str | None:
    draft = _draft(update, context)
    try:
        draft.name = context.services.service.check_name(name)
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await _ask_when(update, draft)


async def on_name_typed(update: Update, context: Context) -> str | None:
    return await _name_given(update, context, text(update))


async def _when_done(update: Update, context: Context, spec: TriggerSpec) -> str | None:
    """Check the trigger; on success go on to the lead days, else stay with one sentence."""
    draft = _draft(update, context)
    try:
        context.services.service.check_trigger(spec)
    except TicklerError as error:
        await say(update, str(error))
        return None
    draft.spec = spec
    return await _ask_lead(update, context, draft)


async def on_preset(update: Update, context: Context) -> str:
    """One of the When? presets: tm:when:<daily|weekdays|weekly|monthly|cron>."""
    query, args = await pressed(update)
    draft = _draft(update, context)
    labels = dict(WHEN_PRESETS)
    draft.preset = args[0] if args and args[0] in labels else "daily"
    await chosen(query, labels[draft.preset])
    return await _ask_detail(update, draft)


async def on_when_typed(update: Update, context: Context) -> str | None:
    """A calendar schedule written out (`weekly mon 09:00`) instead of a preset."""
    draft = _draft(update, context)
    try:
        spec, rest = parse_when(text(update), context.services.clock.now(), draft.zone)
    except TicklerError:
        spec, rest = None, "?"
    if spec is None or spec.kind != "cron" or rest.strip():
        await say(update, WHEN_TYPED_HELP)
        return None
    return await _when_done(update, context, spec)


async def _time_chosen(update: Update, context: Context, hour: int, minute: int) -> str | None:
    draft = _draft(update, context)
    expr = preset_cron(draft.preset, hour, minute, weekdays=draft.weekdays, day=draft.day)
    return await _when_done(update, context, cron_spec(expr, draft.zone))


async def on_time(update: Update, context: Context) -> str | None:
    """A time button: tm:time:0900."""
    query, args = await pressed(update)
    # Our buttons carry HHMM; anything else is forged or stale: the default time.
    value = args[0] if args and re.fullmatch(r"([01][0-9]|2[0-3])[0-5][0-9]", args[0]) else "0900"
    hour, minute = int(value[:2]), int(value[2:])
    await chosen(query, f"{hour:02d}:{minute:02d}")
    return await _time_chosen(update, context, hour, minute)


async def on_time_typed(update: Update, context: Context) -> str | None:
    try:
        hour, minute = parse_time(text(update))
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await _time_chosen(update, context, hour, minute)


async def on_weekday(update: Update, context: Context) -> str:
    """A weekday button: tm:dow:1 (cron numbering, Sunday 0)."""
    query, args = await pressed(update)
    labels = {str(n): label for label, n in WEEKDAYS}
    number = args[0] if args and args[0] in labels else "1"
    _draft(update, context).weekdays = [int(number)]
    await chosen(query, labels[number])
    return await _ask_time(update)


async def on_weekday_typed(update: Update, context: Context) -> str | None:
    try:
        _draft(update, context).weekdays = parse_weekdays(text(update))
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await _ask_time(update)


async def on_monthday(update: Update, context: Context) -> str:
    """A day-of-month button: tm:dom:15."""
    query, args = await pressed(update)
    day = int(args[0]) if args and args[0].isdigit() and 1 <= int(args[0]) <= 28 else 1
    _draft(update, context).day = day
    await chosen(query, str(day))
    return await _ask_time(update)


async def on_monthday_typed(update: Update, context: Context) -> str | None:
    try:
        _draft(update, context).day = parse_day_of_month(text(update))
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await _ask_time(update)


async def on_cron_typed(update: Update, context: Context) -> str | None:
    """A cron expression; quotes around it are allowed."""
    expr = text(update).strip().strip("\"'“”‘’")
    return await _when_done(update, context, cron_spec(expr, _draft(update, context).zone))


async def _lead_given(update: Update, context: Context, lead_days: int) -> str | None:
    draft = _draft(update, context)
    try:
        draft.lead_days = check_lead_days(lead_days)
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await _show_steps(update, draft)


async def on_lead(update: Update, context: Context) -> str | None:
    """A lead-days button: tm:lead:7."""
    query, args = await pressed(update)
    days = int(args[0]) if args and args[0].isdigit() else 0
    await chosen(query, str(days))
    return await _lead_given(update, context, days)


async def on_lead_typed(update: Update, context: Context) -> str | None:
    try:
        days = parse_lead_days(text(update))
    except TicklerError:
        await say(update, LEAD_DAYS_HELP)
        return None
    return await _lead_given(update, context, days)


# --- steps ---------------------------------------------------------------------------
async def on_add(update: Update, context: Context) -> str | None:
    """[Add task] / [Add agent prompt]: tm:add:<task|agent>."""
    query, args = await pressed(update)
    draft = _draft(update, context)
    if len(draft.steps) >= MAX_STEPS:
        await say(update, f"The template has {MAX_STEPS} steps, the limit; press Done.")
        return None
    agent = bool(args) and args[0] == "agent"
    await chosen(query, "Add agent prompt" if agent else "Add task")
    number = len(draft.steps) + 1
    if agent:
        draft.step = Step(kind=StepKind.AGENT)
        await say(
            update,
            f"Step {number}, an agent prompt: what should the agent do? Write the prompt.",
            _keyboard(),
        )
        return PROMPT
    draft.step = Step(kind=StepKind.TASK)
    await say(
        update,
        f"Step {number}, a task: what is it? Write its title, like Collect the receipts.",
        _keyboard(),
    )
    return TITLE


async def on_remove(update: Update, context: Context) -> str:
    """[Remove last]."""
    query, _ = await pressed(update)
    await chosen(query, "Remove last")
    draft = _draft(update, context)
    if not draft.steps:
        return await _show_steps(update, draft)
    number, removed = len(draft.steps), draft.steps.pop()
    what = removed.title or "the agent prompt"
    return await _show_steps(update, draft, f"Removed step {number} ({esc(what)}).")


async def on_done(update: Update, context: Context) -> str | None:
    """[Done]: the template's card, once the service takes the whole template."""
    query, _ = await pressed(update)
    draft = _draft(update, context)
    assert draft.spec is not None
    try:
        context.services.service.check_action(draft.action)
        trigger = context.services.service.check_trigger(draft.spec)
    except TicklerError as error:
        await say(update, str(error))
        return None
    await chosen(query, "Done")
    card = confirm_text(
        name=draft.name, action=draft.action, trigger=trigger, now=context.services.clock.now()
    )
    markup = InlineKeyboardMarkup([[_button("Save", "save"), _button("Cancel", "cancel")]])
    await say(update, card, markup, html=True)
    return CONFIRM


async def on_steps_typed(update: Update, context: Context) -> None:
    await say(update, "Press Add task, Add agent prompt, Remove last or Done, or /cancel.")


async def _step_given(
    update: Update, context: Context, step: Step, ask_next: Callable[[], Coroutine[Any, Any, str]]
) -> str | None:
    """Keep `step` if the service takes it and ask the next question, or stay."""
    draft = _draft(update, context)
    try:
        draft.step = _check_step(context, draft, step)
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await ask_next()


async def on_title_typed(update: Update, context: Context) -> str | None:
    draft = _draft(update, context)
    step = draft.step.model_copy(update={"title": " ".join(text(update).split())})
    return await _step_given(update, context, step, lambda: _ask_offset(update, draft))


async def on_prompt_typed(update: Update, context: Context) -> str | None:
    draft = _draft(update, context)
    prompt = text(update).strip()
    title = default_name(Action(text=prompt))
    step = draft.step.model_copy(update={"text": prompt, "title": title})
    return await _step_given(update, context, step, lambda: _ask_offset(update, draft))


async def _offset_given(update: Update, context: Context, days: int) -> str | None:
    draft = _draft(update, context)
    step = draft.step.model_copy(update={"offset_days": days})

    async def ask_next() -> str:
        if step.kind is StepKind.TASK:
            return await _ask_proof(update)
        return await _step_done(update, draft)

    return await _step_given(update, context, step, ask_next)


async def on_offset(update: Update, context: Context) -> str | None:
    """An offset button: tm:off:-3."""
    query, args = await pressed(update)
    days = int(args[0]) if args and re.fullmatch(r"-?\d{1,3}", args[0]) else 0
    await chosen(query, offset_words(days))
    return await _offset_given(update, context, days)


async def on_offset_typed(update: Update, context: Context) -> str | None:
    try:
        days = parse_offset(text(update))
    except TicklerError:
        await say(update, OFFSET_HELP)
        return None
    return await _offset_given(update, context, days)


async def on_proof(update: Update, context: Context) -> str | None:
    """A proof button: tm:proof:<none|link|file|note>."""
    query, args = await pressed(update)
    labels = dict(PROOFS)
    value = args[0] if args and args[0] in labels else "none"
    await chosen(query, labels[value])
    draft = _draft(update, context)
    step = draft.step.model_copy(update={"proof": None if value == "none" else value})
    return await _step_given(update, context, step, lambda: _ask_assignee(update))


async def on_proof_typed(update: Update, context: Context) -> None:
    await say(update, "Press Nothing, A link, A file or A note, or /cancel.")


async def on_assignee_skip(update: Update, context: Context) -> str:
    """[Skip]: nobody named; the task is the operator's own."""
    query, _ = await pressed(update)
    await chosen(query, "Skip")
    return await _ask_instructions(update)


async def on_assignee_typed(update: Update, context: Context) -> str | None:
    draft = _draft(update, context)
    step = draft.step.model_copy(update={"assignee": " ".join(text(update).split()) or None})
    return await _step_given(update, context, step, lambda: _ask_instructions(update))


async def on_instructions_skip(update: Update, context: Context) -> str:
    """[Skip]: no instructions; the step is complete."""
    query, _ = await pressed(update)
    await chosen(query, "Skip")
    return await _step_done(update, _draft(update, context))


async def on_instructions_typed(update: Update, context: Context) -> str | None:
    draft = _draft(update, context)
    step = draft.step.model_copy(update={"instructions": text(update).strip()})
    return await _step_given(update, context, step, lambda: _step_done(update, draft))


# --- save ----------------------------------------------------------------------------
async def on_save(update: Update, context: Context) -> int:
    """[Save]: create the template's schedule; the service's refusal is its sentence."""
    query, _ = await pressed(update)
    draft = _draft(update, context)
    _forget(update, context)
    user = update.effective_user
    assert user is not None and draft.spec is not None
    await drop_buttons(query)
    try:
        schedule = await context.services.service.create_schedule(
            chat_id(update),
            Owner(id=user.id, first_name=user.first_name),
            name=draft.name,
            trigger=draft.spec,
            action=draft.action,
        )
    except TicklerError as error:
        await say(update, str(error))
        return END
    await say(
        update,
        saved_text(
            schedule.name, schedule.id, schedule.next_run_at, schedule.timezone, ref=schedule.ref
        ),
        html=True,
    )
    return END


async def on_confirm_typed(update: Update, context: Context) -> None:
    await say(update, "Press Save to create the template, or Cancel.")


async def cancel(update: Update, context: Context) -> int:
    """[Cancel], at any step (/cancel is the forms' own: bot/handlers/forms.py)."""
    query, _ = await pressed(update)
    await drop_buttons(query)
    _forget(update, context)
    await say(update, CANCELLED)
    return END


_Callback = Callable[[Update, Context], Coroutine[Any, Any, Any]]


def _typed(callback: _Callback) -> MessageHandler[Context, Any]:
    return MessageHandler(tg_filters.TEXT & ~tg_filters.COMMAND, callback)


def _on(step: str, callback: _Callback) -> CallbackQueryHandler[Context, Any]:
    return CallbackQueryHandler(callback, pattern=f"^{KIND}:{step}(:|$)")


def form() -> Form:
    """The /template form, joined with the other guided forms by bot/handlers/forms.py."""
    return Form(
        entry_points=[CommandHandler("template", template_command)],
        states={
            NAME: [_typed(on_name_typed)],
            WHEN: [_on("when", on_preset), _typed(on_when_typed)],
            TIME: [_on("time", on_time), _typed(on_time_typed)],
            WEEKDAY: [_on("dow", on_weekday), _typed(on_weekday_typed)],
            MONTHDAY: [_on("dom", on_monthday), _typed(on_monthday_typed)],
            CRON: [_typed(on_cron_typed)],
            LEAD: [_on("lead", on_lead), _typed(on_lead_typed)],
            STEPS: [
                _on("add", on_add),
                _on("remove", on_remove),
                _on("done", on_done),
                _typed(on_steps_typed),
            ],
            TITLE: [_typed(on_title_typed)],
            PROMPT: [_typed(on_prompt_typed)],
            OFFSET: [_on("off", on_offset), _typed(on_offset_typed)],
            PROOF: [_on("proof", on_proof), _typed(on_proof_typed)],
            ASSIGNEE: [_on("who", on_assignee_skip), _typed(on_assignee_typed)],
            INSTRUCTIONS: [_on("instr", on_instructions_skip), _typed(on_instructions_typed)],
            CONFIRM: [_on("save", on_save), _typed(on_confirm_typed)],
        },
        fallbacks=[_on("cancel", cancel)],
        kind=KIND,
        command="template",
        forget=_forget,
    )
