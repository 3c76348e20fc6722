"""The Mini App's bundles pages: the chat's active bundles with their risk (what /bundle
lists), and one bundle's steps with the card's actions (add proof, wait, follow-up sent,
done), through the same BundleService and WorkItemService calls as the chat's card.

The step's state words, its phase and which actions it offers are bot/views_bundles.py's,
so the page and the chat card cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.views_bundles import (
    next_words,
    proof_how,
    risk_summary,
    step_actions,
    step_phase,
    step_toast,
    step_words,
)
from bot.webapp.pages import Done, Page, PageRequest, Route
from scheduler.bundles import BundleCard, StepState
from scheduler.work_item_model import Proof
from scheduler.work_items import FILE_PROOF

__all__ = ["ROUTES"]


@dataclass(frozen=True)
class StepView:
    """One step as the page lists it."""

    state: StepState
    #: done, prompt, follow-up due, waiting, overdue, to do (bot/views_bundles.py).
    phase: str
    words: str
    #: "proof", "wait" or "fu", "done": what the step's forms offer.
    actions: tuple[str, ...]
    #: The proof given: a link (shown as one when it is http(s)), a note, or a file's name.
    proof_text: str | None
    proof_link: bool
    #: How to give a file proof (only in chat: Telegram holds the file).
    proof_hint: str | None


def _step(card: BundleCard, state: StepState) -> StepView:
    item = state.item
    proof_text: str | None = None
    link = False
    hint: str | None = None
    if item is not None and item.proof_value is not None:
        if item.proof_value.startswith(FILE_PROOF):
            # `file:<telegram file id> <name>`: the name is what a person recognises.
            proof_text = "file " + item.proof_value.partition(" ")[2]
        else:
            proof_text = item.proof_value
            link = proof_text.startswith(("https://", "http://"))
    actions = step_actions(state)
    if item is not None and "proof" in actions and item.proof is Proof.FILE:
        # Telegram holds the files: a file proof is sent in the chat, as a caption.
        hint = proof_how(item.id, "file") + " in the chat."
        actions = tuple(a for a in actions if a != "proof")
    return StepView(
        state=state,
        phase=step_phase(state, card),
        words=step_words(state, card.zone),
        actions=actions,
        proof_text=proof_text,
        proof_link=link,
        proof_hint=hint,
    )


def _risk(card: BundleCard) -> dict[str, object]:
    return {"card": card, "summary": risk_summary(card), "next": next_words(card)}


async def active(request: PageRequest) -> Page:
    cards = await request.svc.bundles.active(request.viewer.chat_id)
    return Page("bundles.html", {"bundles": [_risk(c) for c in cards]})


async def show(request: PageRequest) -> Page:
    card = await request.svc.bundles.card(request.viewer.chat_id, request.params["bundle_id"])
    return Page(
        "bundle.html",
        {**_risk(card), "steps": [_step(card, s) for s in card.steps], "zone": card.zone},
    )


def _number(request: PageRequest) -> int:
    number = request.params["number"]
    if not number.isdigit() or len(number) > 3:
        raise web.HTTPNotFound()
    return int(number)


async def _step_action(request: PageRequest, action: str) -> Done:
    bundles = request.svc.bundles
    chat_id, bundle_id = request.viewer.chat_id, request.params["bundle_id"]
    number = _number(request)
    if action == "wait":
        await bundles.wait_step(chat_id, bundle_id, number, actor=request.actor)
    elif action == "fu":
        await bundles.follow_up_sent(chat_id, bundle_id, number, actor=request.actor)
    else:
        await bundles.complete_step(chat_id, bundle_id, number, actor=request.actor)
    return Done(step_toast(action, number), then=f"/bundles/{bundle_id}")


async def wait(request: PageRequest) -> Done:
    return await _step_action(request, "wait")


async def follow_up_sent(request: PageRequest) -> Done:
    return await _step_action(request, "fu")


async def done(request: PageRequest) -> Done:
    return await _step_action(request, "done")


async def proof(request: PageRequest) -> Done:
    """/proof ITEM VALUE: the step's link or note, kept until the step is completed."""
    bundle_id = request.params["bundle_id"]
    card = await request.svc.bundles.card(request.viewer.chat_id, bundle_id)
    # Only this bundle's items: another bundle's or chat's id is absent here.
    found = [s.item for s in card.steps if s.item is not None]
    item = next((i for i in found if i.id == request.params["item_id"]), None)
    if item is None:
        raise web.HTTPNotFound()
    items = request.svc.work_items
    item = await items.attach_proof(item, request.form.get("proof", ""), actor=request.actor)
    return Done(f"Proof added to {item.title}; Done completes it.", then=f"/bundles/{bundle_id}")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/bundles", active),
    Route("GET", "/bundles/{bundle_id}", show),
    Route("POST", "/bundles/{bundle_id}/steps/{number}/wait", wait),
    Route("POST", "/bundles/{bundle_id}/steps/{number}/followup", follow_up_sent),
    Route("POST", "/bundles/{bundle_id}/steps/{number}/done", done),
    Route("POST", "/bundles/{bundle_id}/items/{item_id}/proof", proof),
)
