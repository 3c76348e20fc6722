"""The guided forms (/new, /template) as one conversation per chat and user.

Each form brings its entry command, its states and its own fallbacks (its [Cancel]
button, the answer to an earlier step's button); `handlers()` joins them in one
ConversationHandler, so starting one form ends any other that was open and a typed
answer always reaches the form the operator sees last. /cancel ends whichever is open.

Also the plumbing the forms share: a form's drafts, its buttons and handlers, sending a
question, answering a pressed button, showing the choice under its question, and the
last step, [Save]. The questions two forms ask alike live in when_form.py (When?) and
task_details.py (a task's proof, assignee and instructions).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import callbacks
from bot.context import Context
from bot.views_new import saved_text
from scheduler.errors import TicklerError
from scheduler.models import Action, Owner
from scheduler.service import TriggerSpec

__all__ = [
    "CANCELLED",
    "END",
    "TIMEOUT",
    "Callback",
    "Form",
    "FormParts",
    "Handler",
    "Next",
    "State",
    "button",
    "button_handler",
    "chat_id",
    "chosen",
    "confirm_answers",
    "drop_buttons",
    "handlers",
    "keyboard",
    "pressed",
    "save_schedule",
    "say",
    "text",
    "typed",
]

CANCELLED = "Cancelled; nothing was saved."
#: An abandoned form stops capturing the chat's messages after this long.
TIMEOUT = timedelta(minutes=30)

END = ConversationHandler.END

Callback = Callable[[Update, Context], Coroutine[Any, Any, Any]]
Handler = BaseHandler[Any, Context, Any]

#: A form's state: /new's are numbers, the others' strings, so no two forms meet.
State = int | str
D = TypeVar("D")
#: What a form asks next once a question is answered (it returns the state to wait
#: in, or None to stay where it is after one sentence).
Next = Callable[[Update, Context, D], Coroutine[Any, Any, State | None]]


@dataclass(frozen=True)
class Form:
    """One guided form: its entry points, its states (keys unique across forms), the
    callback kind of its buttons (`n` for /new), the command that starts it, how to
    forget its draft, and the fallbacks of its own buttons other than [Cancel] (which
    `handlers()` answers for every form)."""

    entry_points: list[Handler]
    states: dict[object, list[Handler]]
    kind: str
    command: str
    forget: Callable[[Update, Context], None]
    fallbacks: list[Handler] = field(default_factory=list)


class FormParts(Generic[D]):
    """What a form's questions, its own and the shared ones (when_form.py,
    task_details.py), build on: the callback kind of its buttons (`<kind>:<step>:<value>`;
    the shared questions' states are `<kind>_<step>`, so two forms never meet) and its
    drafts in `user_data`, keyed by chat, so the same operator can fill in the form in
    two chats at once."""

    def __init__(self, kind: str, drafts_key: str, new: Callable[[], D]) -> None:
        self.kind = kind
        self._key = drafts_key
        self._new = new

    def _drafts(self, context: Context) -> dict[int, D]:
        assert context.user_data is not None
        drafts: dict[int, D] = context.user_data.setdefault(self._key, {})
        return drafts

    def draft(self, update: Update, context: Context) -> D:
        return self._drafts(context).setdefault(chat_id(update), self._new())

    def forget(self, update: Update, context: Context) -> None:
        self._drafts(context).pop(chat_id(update), None)

    def state(self, step: str) -> str:
        return f"{self.kind}_{step}"

    def button(self, label: str, step: str, value: object = "") -> InlineKeyboardButton:
        return button(self.kind, label, step, value)

    def keyboard(self, *rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
        return keyboard(self.kind, *rows)

    def on(self, step: str, callback: Callback) -> CallbackQueryHandler[Context, Any]:
        return button_handler(self.kind, step, callback)

    def answers(self, step: str, pressed: Callback, written: Callback) -> list[Handler]:
        """A question's answers: its buttons (`<kind>:<step>:…`), or a message."""
        return [self.on(step, pressed), typed(written)]


# --- plumbing ------------------------------------------------------------------------
def chat_id(update: Update) -> int:
    assert update.effective_chat is not None
    return update.effective_chat.id


def text(update: Update) -> str:
    assert update.effective_message is not None
    return update.effective_message.text or ""


async def say(
    update: Update, text: str, markup: InlineKeyboardMarkup | None = None, *, html: bool = False
) -> None:
    assert update.effective_chat is not None
    await update.effective_chat.send_message(
        text, reply_markup=markup, parse_mode=ParseMode.HTML if html else None
    )


async def pressed(update: Update) -> tuple[CallbackQuery, tuple[str, ...]]:
    """Answer the query first, as Telegram wants, and return its arguments."""
    query = update.callback_query
    assert query is not None
    await query.answer()
    parsed = callbacks.parse(query.data)
    return query, parsed.args if parsed else ()


async def chosen(query: CallbackQuery, label: str) -> None:
    """Show the choice under the question and take its buttons away."""
    message = query.message
    if not isinstance(message, Message) or not message.text:
        return
    # The question may be gone or unchanged; the next one follows anyway.
    with contextlib.suppress(BadRequest):
        await query.edit_message_text(f"{message.text}\n→ {label}")


async def drop_buttons(query: CallbackQuery) -> None:
    with contextlib.suppress(BadRequest):
        await query.edit_message_reply_markup(None)


def button(kind: str, label: str, step: str, value: object = "") -> InlineKeyboardButton:
    """A button of the form whose callbacks are `kind`: `<kind>:<step>:<value>`."""
    return InlineKeyboardButton(label, callback_data=callbacks.make(kind, step, value))


def keyboard(kind: str, *rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    """The rows, then [Cancel]: every question of a form can end it."""
    return InlineKeyboardMarkup([*rows, [button(kind, "Cancel", "cancel")]])


def typed(callback: Callback) -> MessageHandler[Context, Any]:
    """An answer written as a message; commands are left to the forms' fallbacks."""
    return MessageHandler(filters.TEXT & ~filters.COMMAND, callback)


def button_handler(kind: str, step: str, callback: Callback) -> CallbackQueryHandler[Context, Any]:
    return CallbackQueryHandler(callback, pattern=f"^{kind}:{step}(:|$)")


class Savable(Protocol):
    """A draft that [Save] can make a schedule of."""

    name: str
    spec: TriggerSpec | None

    @property
    def action(self) -> Action: ...


S = TypeVar("S", bound=Savable)


async def save_schedule(update: Update, context: Context, parts: FormParts[S]) -> int:
    """[Save]: create the schedule and confirm with its next fire; the service's
    refusal is its one sentence. Either way the form ends here, so its draft goes."""
    query, _ = await pressed(update)
    draft = parts.draft(update, context)
    parts.forget(update, context)
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


def confirm_answers(parts: FormParts[S], what: str) -> list[Handler]:
    """The last question's answers: [Save] makes the `what` (a schedule, a template),
    and a message gets a reminder to press it."""

    async def on_save(update: Update, context: Context) -> int:
        return await save_schedule(update, context, parts)

    async def on_confirm_typed(update: Update, context: Context) -> None:
        await say(update, f"Press Save to create the {what}, or Cancel.")

    return parts.answers("save", on_save, on_confirm_typed)


# --- the one conversation ------------------------------------------------------------
def handlers(*forms: Form) -> list[Handler]:
    """The forms' conversation, then an answer for buttons of forms already closed."""

    async def cancel(update: Update, context: Context) -> int:
        """/cancel, in whichever form is open."""
        for form in forms:
            form.forget(update, context)
        await say(update, CANCELLED)
        return ConversationHandler.END

    def cancel_button(form: Form) -> Handler:
        async def cancelled(update: Update, context: Context) -> int:
            """[Cancel], at any step of the form."""
            query, _ = await pressed(update)
            await drop_buttons(query)
            form.forget(update, context)
            await say(update, CANCELLED)
            return ConversationHandler.END

        return button_handler(form.kind, "cancel", cancelled)

    async def stale(update: Update, context: Context) -> None:
        """A button from an earlier step of a form still open."""
        assert update.callback_query is not None
        await update.callback_query.answer(
            "That button belongs to an earlier step; answer the latest question, or /cancel."
        )

    async def timed_out(update: Update, context: Context) -> None:
        """The form was left alone too long."""
        for form in forms:
            form.forget(update, context)

    states: dict[object, list[Handler]] = {}
    for form in forms:
        assert not states.keys() & form.states.keys(), "two forms share a state"
        states.update(form.states)
    states[ConversationHandler.TIMEOUT] = [TypeHandler(Update, timed_out)]
    stale_buttons: list[Handler] = [
        CallbackQueryHandler(stale, pattern=f"^{form.kind}:") for form in forms
    ]
    with warnings.catch_warnings():
        # per_message=False is deliberate: the text steps need per-chat tracking, and
        # stale buttons are answered by each form's fallbacks.
        warnings.filterwarnings("ignore", message=".*per_message.*", category=PTBUserWarning)
        conversation: ConversationHandler[Context] = ConversationHandler(
            entry_points=[handler for form in forms for handler in form.entry_points],
            states=states,
            fallbacks=[
                CommandHandler("cancel", cancel),
                *(cancel_button(form) for form in forms),
                *(handler for form in forms for handler in form.fallbacks),
                *stale_buttons,
            ],
            allow_reentry=True,
            per_chat=True,
            per_user=True,
            conversation_timeout=TIMEOUT,
        )
    return [conversation, *(_closed(form) for form in forms)]


def _closed(form: Form) -> Handler:
    async def expired(update: Update, context: Context) -> None:
        """A button of a form that has ended (saved, cancelled or timed out)."""
        assert update.callback_query is not None
        await update.callback_query.answer(
            f"This form is closed; start again with /{form.command}."
        )

    return CallbackQueryHandler(expired, pattern=f"^{form.kind}:")
