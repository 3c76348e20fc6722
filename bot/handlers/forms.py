"""The guided forms (/new, /template) as one conversation per chat and user.

Each form brings its entry command, its states and its own fallbacks (its [Cancel]
button, the answer to an earlier step's button); `handlers()` joins them in one
ConversationHandler, so starting one form ends any other that was open and a typed
answer always reaches the form the operator sees last. /cancel ends whichever is open.

Also the plumbing the forms share: sending a question, answering a pressed button,
showing the choice under its question.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram import CallbackQuery, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    TypeHandler,
)
from telegram.warnings import PTBUserWarning

from bot import callbacks
from bot.context import Context

__all__ = [
    "CANCELLED",
    "TIMEOUT",
    "Form",
    "chat_id",
    "chosen",
    "drop_buttons",
    "handlers",
    "pressed",
    "say",
    "text",
]

CANCELLED = "Cancelled; nothing was saved."
#: An abandoned form stops capturing the chat's messages after this long.
TIMEOUT = timedelta(minutes=30)

_Callback = Callable[[Update, Context], Coroutine[Any, Any, Any]]
_Handler = BaseHandler[Any, Context, Any]


@dataclass(frozen=True)
class Form:
    """One guided form: its entry points, its states (keys unique across forms), the
    fallbacks of its own buttons, the callback kind of its buttons (`n` for /new), the
    command that starts it, and how to forget its draft."""

    entry_points: list[_Handler]
    states: dict[object, list[_Handler]]
    fallbacks: list[_Handler]
    kind: str
    command: str
    forget: Callable[[Update, Context], None]


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


# --- the one conversation ------------------------------------------------------------
def handlers(*forms: Form) -> list[_Handler]:
    """The forms' conversation, then an answer for buttons of forms already closed."""

    async def cancel(update: Update, context: Context) -> int:
        """/cancel, in whichever form is open."""
        for form in forms:
            form.forget(update, context)
        await say(update, CANCELLED)
        return ConversationHandler.END

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

    states: dict[object, list[_Handler]] = {}
    for form in forms:
        assert not states.keys() & form.states.keys(), "two forms share a state"
        states.update(form.states)
    states[ConversationHandler.TIMEOUT] = [TypeHandler(Update, timed_out)]
    stale_buttons: list[_Handler] = [
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
                *(handler for form in forms for handler in form.fallbacks),
                *stale_buttons,
            ],
            allow_reentry=True,
            per_chat=True,
            per_user=True,
            conversation_timeout=TIMEOUT,
        )
    return [conversation, *(_closed(form) for form in forms)]


def _closed(form: Form) -> _Handler:
    async def expired(update: Update, context: Context) -> None:
        """A button of a form that has ended (saved, cancelled or timed out)."""
        assert update.callback_query is not None
        await update.callback_query.answer(
            f"This form is closed; start again with /{form.command}."
        )

    return CallbackQueryHandler(expired, pattern=f"^{form.kind}:")
