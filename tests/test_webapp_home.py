"""The Mini App's Operations Home: /today's groups with their actions, over HTTP and in a
real browser, against the real bot on the fake clock (Mon 2026-11-23 07:00 UTC = 08:00
Berlin). Every action is checked in the ledger, through the services the chat uses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, OLGA, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.bundle_model import BundleStatus
from scheduler.models import (
    Action,
    ActionKind,
    Owner,
    Policies,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    Step,
    StepKind,
)
from scheduler.proposal_model import Proposal, ProposalRequest, ProposalStatus
from scheduler.service import TriggerSpec
from scheduler.work_item_model import WorkItem, WorkItemStatus
from tests.test_bot_schedules import eventually
from tests.webapp_kit import MiniAppClient, browser, open_app, running_miniapp

__all__ = ["browser"]

WEBAPP_URL = "https://tickler.example.org/app/"
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
MONDAY_9 = TriggerSpec(kind="cron", cron="0 9 * * 1", timezone="Europe/Berlin")
HALF_HOURLY = TriggerSpec(kind="cron", cron="*/30 * * * *", timezone="Europe/Berlin")
LONG = (
    "Reconcile the Q4 sponsorship invoices against the accounting export for the "
    "Donaudampfschifffahrtsgesellschaftskapitänsmützenfabrik"
)
NEWSLETTER = Action(
    kind=ActionKind.BUNDLE,
    lead_days=7,
    steps=(
        Step(kind=StepKind.TASK, title="Collect links", offset_days=-6, proof="note"),
        Step(kind=StepKind.TASK, title="Send draft to sponsor", offset_days=-2, proof="link"),
    ),
)


@pytest_asyncio.fixture
async def miniapp(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[MiniAppClient]:
    """webapp_kit's Mini App, with WEBAPP_URL set (the menu button, /today's button)."""
    db = tmp_path / "bot.db"
    async with running_miniapp(telegram_server, agent_stub, db, webapp_url=WEBAPP_URL) as client:
        yield client


def owner(chat: int) -> Owner:
    return Owner(id=chat, first_name="Alice" if chat == ALICE else "Olga")


async def schedule(
    bot: BotHarness,
    name: str,
    action: Action,
    *,
    chat: int = ALICE,
    trigger: TriggerSpec = DAILY_9,
    policies: Policies | None = None,
) -> Schedule:
    return await bot.services.service.create_schedule(
        chat, owner(chat), name=name, trigger=trigger, action=action, policies=policies
    )


def task(title: str, proof: str | None = None) -> Action:
    return Action(kind=ActionKind.TASK, text=title, proof=proof)


async def items(bot: BotHarness, chat: int = ALICE) -> list[WorkItem]:
    return await bot.services.store.work_items.list_work_items(chat, list(WorkItemStatus))


async def item_titled(bot: BotHarness, title: str, chat: int = ALICE) -> WorkItem:
    [item] = [i for i in await items(bot, chat) if i.title == title]
    return item


async def propose(bot: BotHarness, chat: int, name: str) -> Proposal:
    request = ProposalRequest(
        name=name,
        trigger=HALF_HOURLY,
        action=Action(text="Check my inbox."),
        reason="You asked me to watch the inbox.",
    )
    proposal = await bot.services.proposals.propose(chat, request, proposed_by="api")
    assert proposal.status is ProposalStatus.PENDING
    return proposal


async def run_status(bot: BotHarness, run: Run) -> RunStatus:
    return (await bot.services.service.get_run(run.chat_id, run.id)).status


async def uncertain_run(bot: BotHarness, of: Schedule) -> Run:
    """A run whose outcome Tickler cannot know (the agent's answer was lost)."""
    run = await bot.services.service.run_now(of.chat_id, of.id)
    await bot.services.store.runs.transition(
        of.chat_id,
        run.id,
        expected=[RunStatus.PENDING],
        changes={"status": RunStatus.UNKNOWN, "error": "timed out waiting for the agent"},
        now=bot.clock.now(),
    )
    await bot.clock.advance(timedelta(seconds=1))
    return run


@dataclass
class Ledger:
    """What the Home of Alice's chat holds after `seed`."""

    due: WorkItem  # due today, needs a link
    plain: WorkItem  # due today, needs nothing
    filed: WorkItem  # due today, needs a file
    overdue: WorkItem
    followup_due: WorkItem
    waiting: WorkItem
    proposal: Proposal
    olgas_proposal: Proposal
    awaiting: Run
    unknown: Run
    dead: Run
    tripped: Schedule


async def seed(bot: BotHarness) -> Ledger:
    """Realistic data for every group: the day's task fires, one of yesterday, follow-ups,
    a workflow bundle, an agent's proposals, a run waiting for approval, a schedule that
    tripped its breaker after three dead runs, and an uncertain run."""
    svc = bot.services
    backup = await schedule(bot, "Backup", task("Back up the mailing list", proof="link"))
    await schedule(bot, "Plants", task(LONG))
    await schedule(bot, "Receipts", task("Scan the receipts", proof="file"))
    report = await schedule(bot, "Report", task("Send the weekly report"))
    await schedule(bot, "Weekly newsletter", NEWSLETTER, trigger=MONDAY_9)
    careful = await schedule(
        bot, "Careful brief", Action(text="Prepare my brief."),
        policies=Policies(requires_run_approval=True),
    )  # fmt: skip
    # Yesterday's fire of the report, never done.
    yesterday = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    await svc.work_items.create_from_fire(report, yesterday, "Send the weekly report")
    sponsor = await svc.work_items.add_followup(
        ALICE, "Sponsor X about the invoice", bot.clock.now() + timedelta(minutes=30), actor="1001"
    )
    printer = await svc.work_items.add_followup(
        ALICE, "Printer about the quote", bot.clock.now() + timedelta(days=3), actor="1001"
    )
    await bot.clock.advance(timedelta(hours=1))  # 09:00 Berlin: the day's fires

    async def fired() -> bool:
        made = [i for i in await items(bot) if i.bundle_id is None]
        bundles = await svc.store.bundles.list_bundles(ALICE, [BundleStatus.ACTIVE])
        awaiting = await svc.store.runs.list_for_chat(ALICE, statuses=[RunStatus.AWAITING_APPROVAL])
        return len(made) == 7 and len(bundles) == 1 and len(awaiting) == 1

    await eventually(fired, timeout=5)
    [awaiting] = await svc.store.runs.list_for_chat(ALICE, schedule_id=careful.id)

    bot.agent.respond_with(500)
    flaky = await schedule(
        bot, "Nightly export of the sponsorship ledger to the accounting share",
        Action(text="Export the ledger."),
        policies=Policies(retry=RetryPolicy(max_attempts=1)),
    )  # fmt: skip
    dead: list[Run] = []
    for _ in range(3):  # the breaker trips after three failures in a row
        run = await svc.service.run_now(ALICE, flaky.id)

        async def died(run: Run = run) -> bool:
            return await run_status(bot, run) is RunStatus.DEAD

        await eventually(died, timeout=5)
        dead.append(run)
        await bot.clock.advance(timedelta(seconds=1))
    tripped = await svc.service.get_schedule(ALICE, flaky.id)
    assert tripped.tripped
    bot.agent.respond_with(200)
    unknown = await uncertain_run(bot, backup)
    return Ledger(
        due=await item_titled(bot, "Back up the mailing list"),
        plain=await item_titled(bot, LONG),
        filed=await item_titled(bot, "Scan the receipts"),
        overdue=next(i for i in await items(bot) if i.due_at == yesterday),
        followup_due=sponsor,
        waiting=printer,
        proposal=await propose(bot, ALICE, "Inbox pulse"),
        olgas_proposal=await propose(bot, OLGA, "Olga's inbox pulse"),
        awaiting=awaiting,
        unknown=unknown,
        dead=dead[-1],
        tripped=tripped,
    )


def group(html: str, title: str) -> str:
    """The section of the page under the heading `title`."""
    heading = re.search(rf">{re.escape(title)}( \(\d+\))?</h2>", html)
    assert heading is not None, title
    start = heading.end()
    end = html.find("<h2", start)
    return html[start : end if end >= 0 else len(html)]


async def item(bot: BotHarness, it: WorkItem) -> WorkItem:
    return await bot.services.work_items.get(it.chat_id, it.id)


# --- the page ---------------------------------------------------------------------------------
async def test_home_shows_every_group_with_its_actions(miniapp: MiniAppClient) -> None:
    empty = await miniapp.get("/home")
    assert empty.status == 200
    for sentence in ("Nothing due today", "No pending approvals", "No failed runs"):
        assert sentence in empty.text

    ledger = await seed(miniapp.bot)
    page = await miniapp.get("/home")
    assert page.status == 200
    html = page.text
    due = group(html, "Due on Mon 23 Nov")
    assert "Back up the mailing list" in due and "needs a link" in due
    assert "Donaudampfschifffahrts" in due
    assert "Mon 23 Nov 09:00 (+01:00)" in due  # the schedule's zone, as /today
    assert f'data-post="/home/items/{ledger.due.id}/done"' in due
    assert 'type="url"' in due  # the link the item needs
    assert "cannot upload" in due and f"/done {ledger.filed.id}" in due
    assert f'data-post="/home/items/{ledger.filed.id}/done"' not in due
    assert "Send the weekly report" in group(html, "Overdue")
    followups = group(html, "Follow-ups due")
    assert "Sponsor X about the invoice" in followups
    assert f"/home/items/{ledger.followup_due.id}/sent" in followups
    assert f"/home/items/{ledger.followup_due.id}/received" in followups
    assert "Printer about the quote" in group(html, "Waiting")
    bundles = group(html, "Active bundles")
    assert "Weekly newsletter" in bundles and "0/2 done" in bundles
    approvals = group(html, "Pending approvals")
    assert "Inbox pulse" in approvals
    assert f"/home/proposals/{ledger.proposal.id}/approve" in approvals
    assert "Olga" not in approvals  # another chat's proposal is not Alice's
    assert "Careful brief" in approvals and f"/home/runs/{ledger.awaiting.id}/skip" in approvals
    tripped = group(html, "Tripped schedules")
    assert "Nightly export of the sponsorship ledger" in tripped
    failed = group(html, "Failed runs (last 24 h)")
    assert f"{ledger.unknown.id}" in failed and "unknown" in failed and "dead" in failed
    for action in ("retry", "done", "drop"):
        assert f"/home/runs/{ledger.unknown.id}/{action}" in failed
    assert f"/home/runs/{ledger.dead.id}/done" not in failed  # only an uncertain run

    # Olga, an operator, sees her chat's proposal without the admin's buttons.
    olga = await miniapp.get("/home", user=OLGA)
    assert "Olga&#39;s inbox pulse" in olga.text and "Only an admin can" in olga.text
    assert "/approve" not in olga.text and "Back up the mailing list" not in olga.text


async def test_today_in_chat_and_home_are_the_same_groups(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    await seed(bot)
    await bot.alice.send("/today")
    chat = (await bot.alice.wait_reply(containing="Today")).text or ""
    html = (await miniapp.get("/home")).text
    for title in ("Back up the mailing list", "Sponsor X about the invoice", "Careful brief"):
        assert title in chat and title in html


# --- the actions ----------------------------------------------------------------------------
async def test_done_needs_the_items_proof_as_the_chat_does(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    refused = await miniapp.post(f"/home/items/{ledger.due.id}/done")
    assert refused.status == 409
    assert refused.error == (
        f"Item {ledger.due.id} needs a link as proof; send /done {ledger.due.id} https://…"
    )
    assert (await item(bot, ledger.due)).status is WorkItemStatus.TODO

    done = await miniapp.post(
        f"/home/items/{ledger.due.id}/done", {"proof": "https://lists.example.org/backup"}
    )
    assert done.status == 200 and done.message == "Done: Back up the mailing list."
    assert done.headers["X-Tickler-Route"] == "/home"
    after = await item(bot, ledger.due)
    assert after.status is WorkItemStatus.DONE
    assert after.proof_value == "https://lists.example.org/backup"
    history = await bot.services.work_items.history(after)
    assert history[-1].action == "done" and history[-1].actor == str(ALICE)
    assert "Back up the mailing list" not in group(done.text, "Due on Mon 23 Nov")

    # A file can only come through the chat; a text is no file.
    filed = await miniapp.post(f"/home/items/{ledger.filed.id}/done", {"proof": "scan.pdf"})
    assert filed.status == 409 and "needs a file as proof" in filed.error
    assert (await item(bot, ledger.filed)).status is WorkItemStatus.TODO


async def test_wait_then_follow_up_sent_then_received(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    now = bot.clock.now()
    parked = await miniapp.post(
        f"/home/items/{ledger.overdue.id}/wait",
        {"who": "Finance", "when": "2026-12-01", "note": "asked for the figures"},
    )
    assert parked.status == 200
    assert parked.message == (
        "Send the weekly report waits for Finance; follow up Tue 01 Dec 09:00 (+01:00)."
    )
    waiting = await item(bot, ledger.overdue)
    assert waiting.status is WorkItemStatus.WAITING and waiting.waiting_for == "Finance"
    assert "Send the weekly report" in group(parked.text, "Waiting")

    sent = await miniapp.post(f"/home/items/{ledger.followup_due.id}/sent", {"when": "3d"})
    assert sent.status == 200 and "stays waiting" in (sent.message or "")
    again = await item(bot, ledger.followup_due)
    assert again.status is WorkItemStatus.WAITING
    assert again.follow_up_at == now + timedelta(days=3)

    back = await miniapp.post(f"/home/items/{ledger.followup_due.id}/received")
    assert back.message == "Sponsor X about the invoice is back on your list (todo)."
    assert (await item(bot, ledger.followup_due)).status is WorkItemStatus.TODO
    actions = [h.action for h in await bot.services.work_items.history(again)]
    assert actions == ["follow-up created", "follow-up sent", "response received"]


async def test_a_bad_date_is_one_sentence_and_changes_nothing(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    before = await item(bot, ledger.overdue)
    bad = await miniapp.post(
        f"/home/items/{ledger.overdue.id}/wait",
        {"who": "Finance", "when": "next tuesday", "note": "figures"},
    )
    assert bad.status == 409
    assert bad.error == ("'next tuesday' is not a date; use 3d, 2w, 12h or a date like 2026-12-01.")
    past = await miniapp.post(f"/home/items/{ledger.waiting.id}/sent", {"when": "2026-01-01"})
    assert past.status == 409 and past.error == "Pick a next follow-up date in the future."
    no_date = await miniapp.post(f"/home/items/{ledger.waiting.id}/sent", {"when": " "})
    assert no_date.status == 409
    assert no_date.error == "Give a follow-up date, like 3d, 2w or 2026-12-01."
    missing = await miniapp.post(
        f"/home/items/{ledger.overdue.id}/wait", {"who": "", "when": "3d", "note": "x"}
    )
    assert missing.status == 409 and missing.error.startswith("Say whom you are waiting for")
    assert await item(bot, ledger.overdue) == before
    assert (await item(bot, ledger.waiting)).follow_up_at == ledger.waiting.follow_up_at


async def test_another_chats_ids_are_not_found_and_nothing_changes(
    miniapp: MiniAppClient,
) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    followup_before = await item(bot, ledger.followup_due)
    tries = [
        (f"/home/items/{ledger.plain.id}/done", {}),
        (f"/home/items/{ledger.overdue.id}/wait", {"who": "X", "when": "3d", "note": "n"}),
        (f"/home/items/{ledger.followup_due.id}/sent", {"when": "3d"}),
        (f"/home/items/{ledger.followup_due.id}/received", {}),
        (f"/home/runs/{ledger.unknown.id}/done", {}),
        (f"/home/runs/{ledger.awaiting.id}/approve", {}),
    ]
    for path, form in tries:
        answer = await miniapp.post(path, form, user=OLGA)
        assert answer.status == 404, path
    assert (await item(bot, ledger.plain)).status is WorkItemStatus.TODO
    assert (await item(bot, ledger.followup_due)) == followup_before
    assert await run_status(bot, ledger.unknown) is RunStatus.UNKNOWN
    assert await run_status(bot, ledger.awaiting) is RunStatus.AWAITING_APPROVAL
    # Alice (an admin) cannot answer Olga's chat's proposal from her own chat either.
    answer = await miniapp.post(f"/home/proposals/{ledger.olgas_proposal.id}/approve")
    assert answer.status == 404
    assert answer.error == "That proposal does not exist here."


async def test_only_an_admin_answers_a_proposal(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    proposals = bot.services.proposals
    for action in ("approve", "reject"):
        refused = await miniapp.post(
            f"/home/proposals/{ledger.olgas_proposal.id}/{action}", user=OLGA
        )
        assert refused.status == 403
        assert refused.error == f"Only an admin can {action} a proposal."
    still = await proposals.get(OLGA, ledger.olgas_proposal.id)
    assert still.status is ProposalStatus.PENDING

    approved = await miniapp.post(f"/home/proposals/{ledger.proposal.id}/approve")
    assert approved.status == 200 and approved.message == "Approved; 'Inbox pulse' is active."
    assert (await proposals.get(ALICE, ledger.proposal.id)).status is ProposalStatus.ACTIVE
    again = await miniapp.post(f"/home/proposals/{ledger.proposal.id}/reject")
    assert again.status == 409  # applied once, as the chat's buttons
    assert "Inbox pulse" not in group(approved.text, "Pending approvals")


async def test_run_actions_as_the_chats_buttons(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    # Olga, an operator, may approve a run in her chat as in the chat; here: Alice's.
    skipped = await miniapp.post(f"/home/runs/{ledger.awaiting.id}/skip")
    assert skipped.status == 200 and skipped.message == "Skipped; it will not run."
    assert await run_status(bot, ledger.awaiting) is RunStatus.SKIPPED

    done = await miniapp.post(f"/home/runs/{ledger.unknown.id}/done")
    assert done.message == "Marked done."
    assert await run_status(bot, ledger.unknown) is RunStatus.SUCCEEDED
    twice = await miniapp.post(f"/home/runs/{ledger.unknown.id}/drop")
    assert twice.status == 409 and twice.error == "That run is already succeeded."

    retried = await miniapp.post(f"/home/runs/{ledger.dead.id}/retry")
    assert retried.message == "Sent again with the same idempotency key."
    retry = await bot.services.service.get_run(ALICE, ledger.dead.id)
    assert retry.status is not RunStatus.DEAD and retry.trigger.value == "retry"


async def test_approving_a_run_sends_it_once(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    sent_before = len(bot.agent.requests)
    approved = await miniapp.post(f"/home/runs/{ledger.awaiting.id}/approve", user=ALICE)
    assert approved.message == "Approved; it runs now."

    async def ran() -> bool:
        return await run_status(bot, ledger.awaiting) is RunStatus.SUCCEEDED

    await eventually(ran, timeout=5)
    assert len(bot.agent.requests) == sent_before + 1


# --- Telegram's buttons ------------------------------------------------------------------------
async def test_the_menu_button_and_todays_button_open_the_app(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    server = bot.server
    assert server.menu_buttons[None] == {
        "type": "web_app",
        "text": "Tickler",
        "web_app": {"url": WEBAPP_URL},
    }
    await bot.alice.send("/today")
    today = await bot.alice.wait_reply(containing="Today")
    assert today.reply_markup is not None
    last = today.reply_markup["inline_keyboard"][-1]
    assert last == [{"text": "Open Operations Home", "web_app": {"url": WEBAPP_URL}}]
    # Telegram takes a web_app button in private chats only: a group's /today has none.
    team = bot.server.user(ALICE, "Alice", chat_id=-100300)
    await team.send("/today")
    group_today = await team.wait_reply(containing="Today")
    assert "web_app" not in str(group_today.reply_markup)


async def test_without_webapp_url_no_button(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> None:
    bot = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db")
    try:
        assert telegram_server.calls_to("setChatMenuButton") == []
        await bot.alice.send("/today")
        today = await bot.alice.wait_reply(containing="Today")
        assert "web_app" not in str(today.reply_markup)
    finally:
        await stop_bot(bot)


async def test_a_refused_menu_button_does_not_keep_the_bot_from_its_chats(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> None:
    telegram_server.fail_next("setChatMenuButton", 400, "Bad Request: WEBAPP_URL_INVALID")
    bot = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db", webapp_url=WEBAPP_URL)
    try:
        assert len(telegram_server.calls_to("setChatMenuButton")) == 1  # not retried
        assert None not in telegram_server.menu_buttons
        await bot.alice.send("/today")
        await bot.alice.wait_reply(containing="Today")
    finally:
        await stop_bot(bot)


async def test_the_test_server_checks_web_app_buttons_as_telegram(
    miniapp: MiniAppClient,
) -> None:
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MenuButtonWebApp, WebAppInfo
    from telegram.error import BadRequest

    bot = miniapp.bot
    tg = bot.app.bot
    group_user = bot.server.user(ALICE, "Alice", chat_id=-100200)

    def markup(url: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([[InlineKeyboardButton("Open", web_app=WebAppInfo(url))]])

    refusals = [
        (ALICE, markup("http://tickler.example.org/app/"), "only https links are allowed"),
        (group_user.chat_id, markup(WEBAPP_URL), "BUTTON_TYPE_INVALID"),
    ]
    for chat_id, keyboard, reason in refusals:
        try:
            await tg.send_message(chat_id, "x", reply_markup=keyboard)
        except BadRequest as exc:
            assert reason.lower() in str(exc).lower()
        else:
            raise AssertionError(f"sent: {reason}")
    try:
        await tg.set_chat_menu_button(
            menu_button=MenuButtonWebApp("Tickler", WebAppInfo("http://insecure.example.org/"))
        )
    except BadRequest as exc:
        assert "only https links are allowed" in str(exc).lower()
    else:
        raise AssertionError("an http:// menu button was taken")
    await tg.set_chat_menu_button(
        chat_id=ALICE, menu_button=MenuButtonWebApp("Mine", WebAppInfo(WEBAPP_URL))
    )
    mine = await tg.get_chat_menu_button(chat_id=ALICE)
    assert isinstance(mine, MenuButtonWebApp) and mine.text == "Mine"
    everyone = await tg.get_chat_menu_button()
    assert isinstance(everyone, MenuButtonWebApp) and everyone.text == "Tickler"


# --- in the browser ----------------------------------------------------------------------------
async def overflow(page: Any) -> int:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width - 390


async def test_home_in_a_phone_browser_and_done_by_a_click(
    browser: Any, miniapp: MiniAppClient
) -> None:
    bot = miniapp.bot
    ledger = await seed(bot)
    page = await open_app(browser, miniapp, miniapp.init_data(), route="#/home")
    await page.get_by_role("heading", name="Today", exact=True).wait_for()
    await page.get_by_text("Donaudampfschifffahrts", exact=False).first.wait_for()
    assert await overflow(page) <= 0
    # Every input has its label.
    unlabelled = await page.evaluate(
        "[...document.querySelectorAll('main input')]"
        ".filter(i => !document.querySelector(`label[for='${i.id}']`)).length"
    )
    assert unlabelled == 0

    card = page.locator("li.home-item", has_text="Donaudampfschifffahrts")
    await card.get_by_role("button", name="Done").click()
    await page.get_by_text(re.compile("^Done: Reconcile the Q4")).wait_for()
    assert (await item(bot, ledger.plain)).status is WorkItemStatus.DONE
    assert await page.locator("li.home-item", has_text="Donaudampfschifffahrts").count() == 0
    assert await overflow(page) <= 0
