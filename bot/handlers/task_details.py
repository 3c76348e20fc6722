"""A task's details in the guided forms (/new, /template), written once: what marking
it done must include (proof), who it is for (assignee), and instructions to show.

A form makes one `TaskDetails` with its parts (its drafts and the callback kind of its
buttons: forms.FormParts), the order it asks them in, its proof choices, the label of
the button that names nobody, how a detail is set on its draft (the service's check,
raising its one sentence) and what to ask after the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from telegram import Update

from bot.context import Context
from bot.handlers.forms import FormParts, Handler, Next, State, chosen, pressed, say, text
from scheduler.errors import TicklerError

__all__ = ["Detail", "TaskDetails"]

Detail = Literal["proof", "assignee", "instructions"]
D = TypeVar("D")


@dataclass(frozen=True)
class TaskDetails(Generic[D]):
    """The task-detail questions of one form, asked in `order`, then `then`.

    `set` puts one detail, from the button's value or the operator's text as given, on
    the draft; it raises TicklerError (one sentence) for a value the service refuses."""

    parts: FormParts[D]
    order: tuple[Detail, ...]
    proofs: tuple[tuple[str, str], ...]
    nobody: str
    set: Callable[[Context, D, Detail, str], None]
    then: Next[D]

    def states(self) -> dict[object, list[Handler]]:
        """The form's states for these questions, joined into its own."""
        p = self.parts
        return {
            p.state("proof"): p.answers("proof", self.on_proof, self.on_proof_typed),
            p.state("assignee"): p.answers("who", self.on_nobody, self.on_assignee_typed),
            p.state("instructions"): p.answers(
                "instr", self.on_instructions_skip, self.on_instructions_typed
            ),
        }

    # --- questions -------------------------------------------------------------------
    async def ask(self, update: Update, context: Context, draft: D) -> State | None:
        """The first detail of `order` (shaped as `Next`, so another question can go on
        to it as its `then`)."""
        return await self._ask(update, self.order[0])

    async def _ask(self, update: Update, detail: Detail) -> State:
        p = self.parts
        if detail == "proof":
            buttons = [p.button(label, "proof", value) for value, label in self.proofs]
            await say(update, "What must marking it done include?", p.keyboard(buttons))
        elif detail == "assignee":
            await say(
                update,
                f"Who is it for? Write a name, or press {self.nobody}.",
                p.keyboard([p.button(self.nobody, "who")]),
            )
        else:
            await say(
                update,
                "Any instructions to show with it? Write them, or press Skip.",
                p.keyboard([p.button("Skip", "instr")]),
            )
        return p.state(detail)

    async def _after(self, update: Update, context: Context, detail: Detail) -> State | None:
        """The question after `detail`, or what the form asks once they are all given."""
        index = self.order.index(detail) + 1
        if index < len(self.order):
            return await self._ask(update, self.order[index])
        return await self.then(update, context, self.parts.draft(update, context))

    async def _given(
        self, update: Update, context: Context, detail: Detail, value: str
    ) -> State | None:
        """Set the detail and ask the next question, or stay with the service's sentence."""
        try:
            self.set(context, self.parts.draft(update, context), detail, value)
        except TicklerError as error:
            await say(update, str(error))
            return None
        return await self._after(update, context, detail)

    # --- answers ---------------------------------------------------------------------
    async def on_proof(self, update: Update, context: Context) -> State | None:
        """A proof button: <kind>:proof:<none|link|file|note>."""
        query, args = await pressed(update)
        labels = dict(self.proofs)
        value = args[0] if args and args[0] in labels else "none"
        await chosen(query, labels[value])
        return await self._given(update, context, "proof", value)

    async def on_proof_typed(self, update: Update, context: Context) -> None:
        labels = [label for _, label in self.proofs]
        await say(update, f"Press {', '.join(labels[:-1])} or {labels[-1]}, or /cancel.")

    async def on_nobody(self, update: Update, context: Context) -> State | None:
        """[Me] / [Skip]: nobody named; the task is the operator's own."""
        query, _ = await pressed(update)
        await chosen(query, self.nobody)
        return await self._after(update, context, "assignee")

    async def on_assignee_typed(self, update: Update, context: Context) -> State | None:
        return await self._given(update, context, "assignee", text(update))

    async def on_instructions_skip(self, update: Update, context: Context) -> State | None:
        """[Skip]: no instructions."""
        query, _ = await pressed(update)
        await chosen(query, "Skip")
        return await self._after(update, context, "instructions")

    async def on_instructions_typed(self, update: Update, context: Context) -> State | None:
        return await self._given(update, context, "instructions", text(update))
