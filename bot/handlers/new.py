"""/new: a guided conversation with presets, and a one-line form for power users.

    /new                                   What? -> prompt -> When? -> detail -> name -> preview
                                           (a task: title -> instructions -> for whom ->
                                           proof -> When? ...)
    /new [remind] WHEN TEXT                straight to the preview (grammar in views_new)

Every step answers bad input with one sentence and stays where it is; /cancel or
[Cancel] ends it at any step. The draft lives in `user_data`, keyed by chat, so the
same operator can fill in forms in two chats at once. Buttons carry `n:<step>:<value>`.
The When? questions are when_form.py's and a task's details task_details.py's, shared
with /template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import CommandHandler

from bot.context import Context
from bot.handlers.forms import END, Form, FormParts, State, confirm_answers, typed
from bot.handlers.forms import chat_id as _chat_id
from bot.handlers.forms import chosen as _chosen
from bot.handlers.forms import pressed as _pressed
from bot.handlers.forms import say as _say
from bot.handlers.forms import text as _text
from bot.handlers.task_details import Detail, TaskDetails
from bot.handlers.when_form import WhenForm
from bot.views_new import default_name, parse_one_line, preview_text
from scheduler.errors import TicklerError
from scheduler.models import Action, ActionKind
from scheduler.policy_edits import edit_action
from scheduler.service import TriggerSpec
from scheduler.triggers import Trigger

__all__ = ["form"]

KIND, TEXT, NAME, CONFIRM = range(4)
#: The callback kind of /new's buttons.
CALLBACKS = "n"
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("daily_brief", "Daily brief"),
    ("weekly_review", "Weekly review"),
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
_parts: FormParts[Draft] = FormParts(CALLBACKS, "new_drafts", Draft)
_draft, _forget = _parts.draft, _parts.forget
_button, _keyboard, _on = _parts.button, _parts.keyboard, _parts.on


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


async def _ask_name(update: Update, context: Context, draft: Draft) -> int:
    suggestion = default_name(draft.action)
    await _say(
        update,
        "What should it be called? Write a name, or use the suggestion.",
        _keyboard([_button(f"Use “{suggestion}”", "name")]),
    )
    return NAME


async def _show_preview(update: Update, context: Context, draft: Draft) -> State | None:
    assert draft.spec is not None
    try:
        trigger = _check_trigger(context, draft.spec)
    except TicklerError as error:
        # Time moved on while the form was filled in (a one-time instant passed).
        await _say(update, str(error))
        return await WHEN.ask(update, context, draft)
    text = preview_text(
        name=draft.name,
        action=draft.action,
        trigger=trigger,
        now=context.services.clock.now(),
    )
    markup = InlineKeyboardMarkup([[_button("Save", "save"), _button("Cancel", "cancel")]])
    await _say(update, text, markup, html=True)
    return CONFIRM


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


async def on_text(update: Update, context: Context) -> State | None:
    """The prompt or the reminder text."""
    draft = _draft(update, context)
    try:
        draft.text = context.services.service.check_text(draft.kind, _text(update))
    except TicklerError as error:
        await _say(update, str(error))
        return None
    draft.template = None
    if draft.kind is ActionKind.TASK:
        return await DETAILS.ask(update, context, draft)
    return await WHEN.ask(update, context, draft)


def _task_detail(context: Context, draft: Draft, setting: Detail, text: str) -> None:
    """Set one of the task's details, validated by the service layer as /edit is."""
    limit = context.services.service.limits.max_prompt_chars
    draft.task = edit_action(draft.task, setting, text, max_instructions=limit)


async def on_template(update: Update, context: Context) -> State:
    """[Daily brief] / [Weekly review]."""
    query, args = await _pressed(update)
    draft = _draft(update, context)
    names = dict(TEMPLATES)
    template = args[0] if args and args[0] in names else TEMPLATES[0][0]
    draft.kind, draft.template, draft.text = ActionKind.AGENT, template, ""
    await _chosen(query, names[template])
    return await WHEN.ask(update, context, draft)


async def _name_chosen(update: Update, context: Context, name: str) -> State | None:
    draft = _draft(update, context)
    try:
        draft.name = context.services.service.check_name(name)
    except TicklerError as error:
        await _say(update, str(error))
        return None
    return await _show_preview(update, context, draft)


async def on_name(update: Update, context: Context) -> State | None:
    """[Use "<suggestion>"]."""
    query, _ = await _pressed(update)
    name = default_name(_draft(update, context).action)
    await _chosen(query, name)
    return await _name_chosen(update, context, name)


async def on_name_typed(update: Update, context: Context) -> State | None:
    return await _name_chosen(update, context, _text(update))


# --- the questions shared with /template, and the form -------------------------------
# (after the handlers they go on to, which they name)
WHEN: WhenForm[Draft] = WhenForm(
    parts=_parts,
    question="When?",
    typed_help="Press one of the buttons, or write it like daily 09:00 or every 4h.",
    then=_ask_name,
)
#: A task's details, asked after its title and before When?.
DETAILS: TaskDetails[Draft] = TaskDetails(
    parts=_parts,
    order=("instructions", "assignee", "proof"),
    proofs=PROOFS,
    nobody="Me",
    set=_task_detail,
    then=WHEN.ask,
)


def form() -> Form:
    """The /new form, joined with the other guided forms by bot/handlers/forms.py."""
    return Form(
        entry_points=[CommandHandler("new", new_command)],
        states={
            KIND: [_on("kind", on_kind), typed(on_kind_typed)],
            TEXT: [_on("tpl", on_template), typed(on_text)],
            **WHEN.states(),
            NAME: [_on("name", on_name), typed(on_name_typed)],
            **DETAILS.states(),
            CONFIRM: confirm_answers(_parts, "schedule"),
        },
        kind=CALLBACKS,
        command="new",
        forget=_forget,
    )
