"""Operations Home: what /today shows (scheduler/home.py gathers it for both), with the
actions of /today, /done, /wait, /followup, /approve and the run buttons.

Each action calls the service function the chat's command or button calls, with the
item, proposal or run looked up in the viewer's chat (another chat's id is 404); only
answering a proposal is an admin's, as in the chat.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.render import local
from bot.webapp import proposals
from bot.webapp.pages import Done, Handler, Page, PageRequest, Route
from scheduler.errors import InvalidState
from scheduler.home import parse_follow_up
from scheduler.models import RunStatus
from scheduler.work_item_model import Proof, WorkItem

__all__ = ["ROUTES"]

HOME = "/home"
#: The most items of one group the page lists (the chat's /today shows 15).
SHOWN = 50
#: The run buttons each status gets, as /deadletters and approval messages offer them.
RUN_ACTIONS: dict[RunStatus, tuple[str, ...]] = {
    RunStatus.UNKNOWN: ("retry", "done", "drop"),
    RunStatus.DEAD: ("retry",),
    RunStatus.AWAITING_APPROVAL: ("approve", "skip"),
}
_RUN_DONE = {
    "retry": "Sent again with the same idempotency key.",
    "done": "Marked done.",
    "drop": "Dropped; it will not run.",
    "approve": "Approved; it runs now.",
    "skip": "Skipped; it will not run.",
}


async def show(request: PageRequest) -> Page:
    svc = request.svc
    home = await svc.home.gather(request.viewer.chat_id, svc.clock.now())
    return Page(
        "home.html",
        {
            "viewer": request.viewer,
            "home": home,
            "day": f"{home.now.astimezone(ZoneInfo(home.zone)):%a %d %b}",
            "shown": SHOWN,
            "run_actions": RUN_ACTIONS,
            "Proof": Proof,
        },
    )


# --- work items ---------------------------------------------------------------------------
async def _item(request: PageRequest) -> WorkItem:
    return await request.svc.work_items.get(request.viewer.chat_id, request.params["item_id"])


def _field(request: PageRequest, name: str) -> str:
    return request.form.get(name, "").strip()


async def _when(request: PageRequest) -> tuple[datetime, str]:
    """The form's `when` (3d, 2w, 12h or a date) and the chat's zone it was read in."""
    svc = request.svc
    text = _field(request, "when")
    if not text:
        raise InvalidState("Give a follow-up date, like 3d, 2w or 2026-12-01.")
    zone = await svc.service.chat_timezone(request.viewer.chat_id)
    return parse_follow_up(text, svc.clock.now(), zone), zone


async def item_done(request: PageRequest) -> Done:
    """/done ITEM [proof]: a link or note as the proof its item needs."""
    items = request.svc.work_items
    item = await items.done(
        await _item(request), _field(request, "proof") or None, actor=request.actor
    )
    return Done(f"Done: {item.title}.", then=HOME)


async def item_wait(request: PageRequest) -> Done:
    """/wait ITEM WHO DATE NOTE."""
    item = await _item(request)
    when, zone = await _when(request)
    item = await request.svc.work_items.mark_waiting(
        item, _field(request, "who"), when, _field(request, "note"), actor=request.actor
    )
    return Done(f"{item.title} waits for {item.waiting_for}; follow up {local(when, zone)}.", HOME)


async def followup_sent(request: PageRequest) -> Done:
    """/followup ITEM sent DATE [note]."""
    item = await _item(request)
    when, zone = await _when(request)
    item = await request.svc.work_items.followup_sent(
        item, when, actor=request.actor, note=_field(request, "note")
    )
    return Done(f"Noted. {item.title} stays waiting; next follow-up {local(when, zone)}.", HOME)


async def response_received(request: PageRequest) -> Done:
    """/followup ITEM received [note]."""
    item = await request.svc.work_items.response_received(
        await _item(request), actor=request.actor, note=_field(request, "note")
    )
    return Done(f"{item.title} is back on your list (todo).", HOME)


# --- proposals and runs -------------------------------------------------------------------
def run_action(action: str) -> Handler:
    """r:<retry|done|drop|approve|skip>: the chat's run buttons (anyone allowed may)."""

    async def act(request: PageRequest) -> Done:
        service = request.svc.service
        do = {
            "retry": service.retry,
            "done": service.mark_done,
            "drop": service.drop,
            "approve": service.approve_run,
            "skip": service.skip_run,
        }[action]
        await do(request.viewer.chat_id, request.params["run_id"])
        return Done(_RUN_DONE[action], then=HOME)

    return act


ROUTES: tuple[Route, ...] = (
    Route("GET", HOME, show),
    Route("POST", "/home/items/{item_id}/done", item_done),
    Route("POST", "/home/items/{item_id}/wait", item_wait),
    Route("POST", "/home/items/{item_id}/sent", followup_sent),
    Route("POST", "/home/items/{item_id}/received", response_received),
    *(
        Route("POST", f"/home/proposals/{{proposal_id}}/{action}", proposals.decide(action, HOME))
        for action in ("approve", "reject")
    ),
    *(Route("POST", f"/home/runs/{{run_id}}/{action}", run_action(action)) for action in _RUN_DONE),
)
