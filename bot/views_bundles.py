"""How bundles read in chat: the risk lines of /today's "Active bundles" group and the
`/bundle ID` card with a row of buttons per open task step (callback data
`k:<action>:<bundle_id>:<step>`: open, proof, wait, fu (follow-up sent), done; and
`k:card:<bundle_id>` back to the card)."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks
from bot.render import esc, local
from scheduler.bundles import BundleCard, StepState
from scheduler.models import Action
from scheduler.work_item_model import WorkItemStatus
from scheduler.work_items import FILE_PROOF

__all__ = [
    "bundle_card",
    "bundle_keyboard",
    "bundle_list",
    "next_words",
    "proof_how",
    "risk_lines",
    "risk_summary",
    "step_actions",
    "step_detail",
    "step_keyboard",
    "step_mark",
    "step_phase",
    "step_toast",
    "step_words",
    "template_line",
]


def template_line(action: Action) -> str:
    """A workflow template's action in one line: its lead and its steps."""
    steps = "; ".join(
        f"{n}. {esc(s.title or s.kind.value)} ({s.offset_days:+d} d)"
        for n, s in enumerate(action.steps, start=1)
    )
    return (
        f"Makes a bundle for the day {action.lead_days} days after each fire "
        f"(/bundle lists them): {steps}"
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def next_words(card: BundleCard) -> str:
    """The step due next, in plain words (the Mini App escapes them its own way)."""
    step = card.next_due
    if step is None:
        return "nothing left to do"
    return f"next: step {step.number} {step.step.title}, due {local(step.due_at, card.zone)}"


def _next(card: BundleCard) -> str:
    return esc(next_words(card))


def risk_summary(card: BundleCard) -> str:
    """Overdue, waiting, follow-ups due and missing proof, in one line."""
    return (
        f"{_plural(len(card.overdue), 'overdue step')} · {len(card.waiting)} waiting · "
        f"{_plural(len(card.follow_ups_due), 'follow-up')} due · "
        f"{len(card.missing_proof)} missing proof"
    )


def risk_lines(card: BundleCard) -> str:
    """One bundle in /today: title, anchor date and id, then its risk and next step."""
    bundle = card.bundle
    return (
        f"• <b>{esc(bundle.title)}</b> for {bundle.anchor_date:%a %d %b} "
        f"(<code>{esc(bundle.id)}</code>): {card.done}/{len(card.steps)} done\n"
        f"  {risk_summary(card)}; {_next(card)}"
    )


def bundle_list(cards: list[BundleCard]) -> str:
    if not cards:
        return "No active bundles. A workflow template makes one at each of its fires."
    return "📦 <b>Active bundles</b>\n" + "\n".join(risk_lines(c) for c in cards)


def step_words(state: StepState, zone: str) -> str:
    """A step's state in plain words: its run's or item's status, waiting, proof, assignee."""
    if not state.is_task:
        if state.run is None:
            return "agent prompt, not sent yet"
        return f"agent prompt, {state.run.status.value}"
    item = state.item
    if item is None:
        return "not made yet"
    words = item.status.value
    if item.status is WorkItemStatus.WAITING:
        words = f"waiting for {item.waiting_for or '?'}"
        if item.follow_up_at is not None:
            words += f", follow up {local(item.follow_up_at, zone)}"
    if item.proof is not None:
        if item.proof_value is None:
            words += f" · needs a {item.proof.value} (missing)"
        else:
            words += f" · {item.proof.value} proof ✓"
    if item.assignee:
        words += f" · for {item.assignee}"
    return words


def _state(state: StepState, zone: str) -> str:
    return esc(step_words(state, zone))


def step_phase(state: StepState, card: BundleCard) -> str:
    """Where a step stands, in one or two words: done, prompt, follow-up due, waiting,
    overdue, to do (the first that holds)."""
    if state.settled:
        return "done"
    if not state.is_task:
        return "prompt"
    if state.follow_up_due(card.now):
        return "follow-up due"
    if state.waiting:
        return "waiting"
    if state.overdue(card.now):
        return "overdue"
    return "to do"


_MARKS = {
    "done": "✅",
    "prompt": "🤖",
    "follow-up due": "📨",
    "waiting": "⏳",
    "overdue": "⚠️",
    "to do": "⬜",
}


def step_mark(state: StepState, card: BundleCard) -> str:
    """The sign before a step in chat (its `step_phase`)."""
    return _MARKS[step_phase(state, card)]


def bundle_card(card: BundleCard) -> str:
    bundle = card.bundle
    lines = [
        f"📦 <b>{esc(bundle.title)}</b> for {bundle.anchor_date:%a %d %b %Y} "
        f"({bundle.status.value})",
        f"<code>{esc(bundle.id)}</code> · {card.done}/{len(card.steps)} steps done",
    ]
    if bundle.error:
        lines.append(f"Could not be made: {esc(bundle.error)}")
    lines.append(risk_summary(card) + ".")
    upcoming = _next(card)
    lines.append(upcoming[:1].upper() + upcoming[1:] + ".")
    lines.append("")
    for state in card.steps:
        lines.append(
            f"{step_mark(state, card)} {state.number}. {esc(state.step.title or 'prompt')} — due "
            f"{local(state.due_at, card.zone)} · {_state(state, card.zone)}"
        )
    return "\n".join(lines)


def _data(action: str, card: BundleCard, number: int) -> str:
    return callbacks.make("k", action, card.bundle.id, number)


def step_actions(state: StepState) -> tuple[str, ...]:
    """What can be done to a step (the card's buttons, the Mini App's forms): an open task
    step takes its missing proof, waiting (or, waiting, a follow-up sent) and done."""
    if not state.is_task or state.settled:
        return ()
    proof = ("proof",) if state.missing_proof is not None else ()
    return (*proof, "fu" if state.waiting else "wait", "done")


_BUTTONS = {"proof": "📎 Proof", "fu": "📨 Sent", "wait": "⏳ Wait", "done": "✅ Done"}


def step_toast(action: str, number: int) -> str:
    """What a step's action answers once done (`wait`, `fu`, `done`)."""
    return {
        "wait": f"Step {number} is waiting; follow up in 3 days.",
        "fu": f"Follow-up noted for step {number}; the next one in 3 days.",
        "done": f"Step {number} done.",
    }[action]


def _step_row(card: BundleCard, state: StepState) -> list[InlineKeyboardButton]:
    n = state.number
    row = [InlineKeyboardButton(f"{n} · Open", callback_data=_data("open", card, n))]
    for action in step_actions(state):
        row.append(InlineKeyboardButton(_BUTTONS[action], callback_data=_data(action, card, n)))
    return row


def bundle_keyboard(card: BundleCard) -> InlineKeyboardMarkup | None:
    rows = [_step_row(card, s) for s in card.steps]
    return InlineKeyboardMarkup(rows) if rows else None


def step_detail(card: BundleCard, number: int) -> str:
    state = card.step(number)
    step = state.step
    lines = [
        f"<b>Step {number}: {esc(step.title or 'prompt')}</b> of {esc(card.bundle.title)} "
        f"for {card.bundle.anchor_date:%a %d %b}",
        f"Due {local(state.due_at, card.zone)} · {_state(state, card.zone)}",
    ]
    if step.instructions:
        lines.append(esc(step.instructions))
    item = state.item
    if item is not None:
        lines.append(f"Item <code>{esc(item.id)}</code>")
        if item.proof_value and not item.proof_value.startswith(FILE_PROOF):
            lines.append(f"Proof: {esc(item.proof_value)}")
        if item.status.value in ("todo", "waiting"):
            if item.proof is not None and item.proof_value is None:
                lines.append(_proof_hint(item.id, item.proof.value))
            lines.append(f"/done {esc(item.id)} completes it; /wait {esc(item.id)} WHO DATE NOTE.")
    elif not state.is_task:
        lines.append(f"Prompt: {esc(step.text)}")
        if state.schedule_id:
            lines.append(f"Schedule <code>{esc(state.schedule_id)}</code>")
    return "\n".join(lines)


def proof_how(item_id: str, kind: str) -> str:
    """How to give an item its proof in chat, in plain words."""
    if kind == "link":
        return f"Add the link: /proof {item_id} https://…"
    if kind == "file":
        return f"Add the file: send it with the caption /proof {item_id}"
    return f"Add the note: /proof {item_id} what was done"


def _proof_hint(item_id: str, kind: str) -> str:
    return esc(proof_how(item_id, kind))


def proof_hint(card: BundleCard, number: int) -> str:
    state = card.step(number)
    item = state.item
    if item is None or item.proof is None:
        return f"Step {number} needs no proof."
    return _proof_hint(item.id, item.proof.value)


def step_keyboard(card: BundleCard, number: int) -> InlineKeyboardMarkup:
    state = card.step(number)
    row = _step_row(card, state)[1:]
    back = InlineKeyboardButton("↩ Card", callback_data=callbacks.make("k", "card", card.bundle.id))
    return InlineKeyboardMarkup([row, [back]] if row else [[back]])
