"""/bundle [ID] (the active bundles, or one bundle's card), /proof ITEM VALUE (a step's
proof, without completing it), and the card's buttons (callback data
`k:<action>:<bundle_id>[:<step>]`; bot/views_bundles.py).

Every bundle and item id is looked up in the chat the command or button came from; the
step's rules (proof before completion, waiting, follow-ups) are the work-item service's.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot import callbacks
from bot.context import Context
from bot.handlers.schedules import (
    Outcome,
    StaleButton,
    arg,
    button_handler,
    command_handler,
    int_arg,
    reply,
)
from bot.render import esc
from bot.views_bundles import (
    bundle_card,
    bundle_keyboard,
    bundle_list,
    proof_hint,
    step_detail,
    step_keyboard,
    step_toast,
)
from scheduler.errors import InvalidState
from scheduler.work_items import FILE_PROOF

__all__ = ["handlers"]


def _actor(update: Update) -> str:
    user = update.effective_user
    return str(user.id) if user is not None else "operator"


@command_handler
async def bundle(update: Update, context: Context, chat_id: int) -> None:
    """/bundle: the active bundles and their risk; /bundle ID: one bundle's card."""
    bundles = context.services.bundles
    args = context.args or []
    if not args:
        await reply(update, bundle_list(await bundles.active(chat_id)))
        return
    card = await bundles.card(chat_id, args[0])
    await reply(update, bundle_card(card), bundle_keyboard(card))


@command_handler
async def proof(update: Update, context: Context, chat_id: int) -> None:
    """/proof ITEM VALUE: the link or note a step needs, kept until it is completed."""
    args = list(context.args or [])
    if len(args) < 2:
        raise InvalidState("Use /proof ITEM https://… (or a note); /bundle ID lists the items.")
    items = context.services.work_items
    item = await items.get(chat_id, args[0])
    item = await items.attach_proof(item, " ".join(args[1:]), actor=_actor(update))
    await reply(
        update,
        f"Proof added to {esc(item.title)}; /done {esc(item.id)} completes it.",
    )


@command_handler
async def proof_file(update: Update, context: Context, chat_id: int) -> None:
    """A file (document or photo) sent with the caption /proof ITEM."""
    message = update.effective_message
    assert message is not None
    words = (message.caption or "").split()
    if len(words) < 2:
        raise InvalidState("Which item? Put /proof ITEM in the file's caption.")
    attachment = message.document or (message.photo[-1] if message.photo else None)
    assert attachment is not None
    name = getattr(attachment, "file_name", None) or "photo"
    items = context.services.work_items
    item = await items.get(chat_id, words[1])
    item = await items.attach_proof(
        item, f"{FILE_PROOF}{attachment.file_id} {name}", actor=_actor(update)
    )
    await reply(update, f"Proof added to {esc(item.title)} ({esc(name)}).")


@button_handler
async def on_bundle_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    bundles = context.services.bundles
    bundle_id = arg(data, 0)
    actor = _actor(update)
    if data.action == "card":
        card = await bundles.card(chat_id, bundle_id)
        return Outcome(text=bundle_card(card), markup=bundle_keyboard(card), edit=True)
    number = int_arg(arg(data, 1))
    if data.action == "open":
        card = await bundles.card(chat_id, bundle_id)
        return Outcome(
            text=step_detail(card, number), markup=step_keyboard(card, number), edit=True
        )
    if data.action == "proof":
        card = await bundles.card(chat_id, bundle_id)
        return Outcome(toast=proof_hint(card, number), text=proof_hint(card, number))
    if data.action == "wait":
        card = await bundles.wait_step(chat_id, bundle_id, number, actor=actor)
    elif data.action == "fu":
        card = await bundles.follow_up_sent(chat_id, bundle_id, number, actor=actor)
    elif data.action == "done":
        card = await bundles.complete_step(chat_id, bundle_id, number, actor=actor)
    else:
        raise StaleButton
    toast = step_toast(data.action, number)
    return Outcome(toast=toast, text=bundle_card(card), markup=bundle_keyboard(card), edit=True)


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("bundle", bundle),
        CommandHandler("proof", proof),
        MessageHandler(
            (filters.Document.ALL | filters.PHOTO) & filters.CaptionRegex(r"^/proof(@\w+)?\s"),
            proof_file,
        ),
        CallbackQueryHandler(on_bundle_button, pattern=r"^k:"),
    ]
