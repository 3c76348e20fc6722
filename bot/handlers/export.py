"""/export: this chat's data (schedules, their runs and attempts, proposals, the chat's
preferences) as JSONL files in a zip, sent as a document."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

from bot.context import services
from bot.handlers.schedules import command_handler
from storage.database import open_database
from storage.export import export_chat_zip

__all__ = ["register"]

Context = ContextTypes.DEFAULT_TYPE


@command_handler
async def export(update: Update, context: Context, chat_id: int) -> None:
    """/export: only this chat's rows; runs and attempts through their schedule's chat."""
    message = update.effective_message
    if message is None:
        return
    # A connection of its own: one read snapshot, without holding the store's.
    db = await open_database(services(context).settings.database_path)
    try:
        await db.execute("BEGIN")
        try:
            data = await export_chat_zip(db, chat_id)
        finally:
            await db.execute("ROLLBACK")
    finally:
        await db.close()
    await message.reply_document(
        document=data,
        filename=f"tickler-export-{chat_id}.zip",
        caption="This chat's schedules, runs, proposals and settings as JSONL files.",
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    """Add this family's handlers."""
    app.add_handler(CommandHandler("export", export))
