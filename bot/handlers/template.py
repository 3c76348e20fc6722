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
with nothing saved. Buttons carry `tm:<step>:<value>`. The When? questions are
when_form.py's and a task step's details task_details.py's, shared with /new.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import CommandHandler

from bot.context import Context
from bot.handlers.forms import (
    Form,
    FormParts,
    State,
    chat_id,
    chosen,
    confirm_answers,
    pressed,
    say,
    text,
    typed,
)
from bot.handlers.task_details import Detail, TaskDetails
from bot.handlers.when_form import WhenForm
from bot.render import esc
from bot.views_new import default_name, upcoming
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
from scheduler.models import Action, ActionKind, Step, StepKind
from scheduler.service import TriggerSpec
from scheduler.workflow_steps import MAX_STEPS, anchor_date, check_lead_days

__all__ = ["form"]

# State keys are strings so they cannot meet /new's numbers in the forms' conversation.
NAME = "tm_name"
LEAD = "tm_lead"
STEPS = "tm_steps"
TITLE = "tm_title"
PROMPT = "tm_prompt"
OFFSET = "tm_offset"
CONFIRM = "tm_confirm"

KIND = "tm"
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
_parts: FormParts[Draft] = FormParts(KIND, "template_drafts", Draft)
_draft, _forget = _parts.draft, _parts.forget
_button, _keyboard, _on = _parts.button, _parts.keyboard, _parts.on


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


async def _step_done(update: Update, context: Context, draft: Draft) -> str:
    """The step being written is complete: add it and show the steps so far."""
    draft.steps.append(draft.step)
    draft.step = Step()
    return await _show_steps(update, draft)


# --- entry and the template's own questions -------------------------------------------
async def template_command(update: Update, context: Context) -> State:
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


async def _name_given(update: Update, context: Context, name: str) -> State | None:
    draft = _draft(update, context)
    try:
        draft.name = context.services.service.check_name(name)
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await WHEN.ask(update, context, draft)


async def on_name_typed(update: Update, context: Context) -> State | None:
    return await _name_given(update, context, text(update))


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
    update: Update,
    context: Context,
    step: Step,
    ask_next: Callable[[], Coroutine[Any, Any, State | None]],
) -> State | None:
    """Keep `step` if the service takes it and ask the next question, or stay."""
    draft = _draft(update, context)
    try:
        draft.step = _check_step(context, draft, step)
    except TicklerError as error:
        await say(update, str(error))
        return None
    return await ask_next()


async def on_title_typed(update: Update, context: Context) -> State | None:
    draft = _draft(update, context)
    step = draft.step.model_copy(update={"title": " ".join(text(update).split())})
    return await _step_given(update, context, step, lambda: _ask_offset(update, draft))


async def on_prompt_typed(update: Update, context: Context) -> State | None:
    draft = _draft(update, context)
    prompt = text(update).strip()
    title = default_name(Action(text=prompt))
    step = draft.step.model_copy(update={"text": prompt, "title": title})
    return await _step_given(update, context, step, lambda: _ask_offset(update, draft))


async def _offset_given(update: Update, context: Context, days: int) -> State | None:
    draft = _draft(update, context)
    step = draft.step.model_copy(update={"offset_days": days})

    async def ask_next() -> State | None:
        if step.kind is StepKind.TASK:
            return await DETAILS.ask(update, context, draft)
        return await _step_done(update, context, draft)

    return await _step_given(update, context, step, ask_next)


async def on_offset(update: Update, context: Context) -> State | None:
    """An offset button: tm:off:-3."""
    query, args = await pressed(update)
    days = int(args[0]) if args and re.fullmatch(r"-?\d{1,3}", args[0]) else 0
    await chosen(query, offset_words(days))
    return await _offset_given(update, context, days)


async def on_offset_typed(update: Update, context: Context) -> State | None:
    try:
        days = parse_offset(text(update))
    except TicklerError:
        await say(update, OFFSET_HELP)
        return None
    return await _offset_given(update, context, days)


def _set_detail(context: Context, draft: Draft, detail: Detail, value: str) -> None:
    """Set a detail of the task step being written, checked with the steps so far."""
    if detail == "proof":
        change: dict[str, object] = {"proof": None if value == "none" else value}
    elif detail == "assignee":
        change = {"assignee": " ".join(value.split()) or None}
    else:
        change = {"instructions": value.strip()}
    draft.step = _check_step(context, draft, draft.step.model_copy(update=change))


# --- the questions shared with /new, and the form -------------------------------------
# (after the handlers they go on to, which they name)
WHEN: WhenForm[Draft] = WhenForm(
    parts=_parts,
    question="When does the template fire? Each fire makes one bundle of its steps.",
    typed_help=WHEN_TYPED_HELP,
    then=_ask_lead,
    calendar_only=True,
)
#: A task step's details, asked after its offset; the last one completes the step.
DETAILS: TaskDetails[Draft] = TaskDetails(
    parts=_parts,
    order=("proof", "assignee", "instructions"),
    proofs=PROOFS,
    nobody="Skip",
    set=_set_detail,
    then=_step_done,
)


def form() -> Form:
    """The /template form, joined with the other guided forms by bot/handlers/forms.py."""
    return Form(
        entry_points=[CommandHandler("template", template_command)],
        states={
            NAME: [typed(on_name_typed)],
            **WHEN.states(),
            LEAD: [_on("lead", on_lead), typed(on_lead_typed)],
            STEPS: [
                _on("add", on_add),
                _on("remove", on_remove),
                _on("done", on_done),
                typed(on_steps_typed),
            ],
            TITLE: [typed(on_title_typed)],
            PROMPT: [typed(on_prompt_typed)],
            OFFSET: [_on("off", on_offset), typed(on_offset_typed)],
            **DETAILS.states(),
            CONFIRM: confirm_answers(_parts, "template"),
        },
        kind=KIND,
        command="template",
        forget=_forget,
    )
