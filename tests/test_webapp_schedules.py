"""The Mini App's Schedules and Proposals pages over real HTTP and in a real browser: the
list with next fires and zones, a schedule's facts and policies, its history with each
run's attempts, output and error, and pause/resume/run now/edit and approve/reject
changing the ledger exactly as /pause, /resume, /runnow, /edit and the proposal card's
buttons do, with the chat's role rules; another chat's ids are 404 and change nothing."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, OLGA, BotHarness
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.models import (
    Action,
    OverlapPolicy,
    Policies,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
)
from scheduler.proposals import Proposal, ProposalRequest, ProposalService, ProposalStatus
from scheduler.service import TriggerSpec
from tests.test_bot_schedules import seed
from tests.webapp_kit import MiniAppClient, browser, miniapp, open_app, running_miniapp

__all__ = ["browser", "miniapp"]

LONG_NAME = "Quarterly-supplier-reconciliation-for-the-northern-warehouses-and-their-annexes"
LONG_OUTPUT = "All quiet today. " + "x" * 600 + " " + ("A long line of the agent's report. " * 80)


@pytest_asyncio.fixture
async def openai_miniapp(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[MiniAppClient]:
    """The Mini App of a bot whose agent answers chat completions, so runs keep output."""
    db = tmp_path / "bot.db"
    async with running_miniapp(telegram_server, agent_stub, db, agent_mode="openai") as client:
        yield client


async def stored(bot: BotHarness, schedule: Schedule) -> Schedule:
    found = await bot.services.store.schedules.get(schedule.chat_id, schedule.id)
    assert found is not None
    return found


async def runs_of(bot: BotHarness, schedule: Schedule) -> list[Run]:
    return await bot.services.store.runs.list_for_chat(schedule.chat_id, schedule_id=schedule.id)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def proposals_of(bot: BotHarness) -> ProposalService:
    service = bot.services.proposals
    assert service is not None
    return service


async def propose(bot: BotHarness, name: str = "Inbox pulse", chat: int = ALICE) -> Proposal:
    """A high-tier proposal (more often than hourly): nothing exists until approved."""
    request = ProposalRequest(
        name=name,
        trigger=TriggerSpec(kind="cron", cron="*/30 * * * *", timezone="Europe/Berlin"),
        action=Action(text=f"Check my inbox ({name})."),
        reason="You asked me to watch the inbox.",
        expected_tokens_per_run=1500,
    )
    return await proposals_of(bot).propose(chat, request, proposed_by="api")


async def overflow(page: Any) -> int:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width - 390


# --- the list and a schedule -----------------------------------------------------------------
async def test_the_list_shows_each_schedule_its_state_and_next_fire_in_its_zone(
    miniapp: MiniAppClient,
) -> None:
    bot = miniapp.bot
    await seed(bot)
    paused = await seed(bot, "Weekly review")
    await bot.services.service.pause(ALICE, paused.id, by=ALICE, reason="on holiday")
    gone = await seed(bot, "Old report")
    await bot.services.service.archive(ALICE, gone.id)
    await seed(bot, "Olga's own", chat=OLGA)

    answer = await miniapp.get("/schedules")
    assert answer.status == 200, answer.text
    page = answer.text
    assert "<h1>Schedules</h1>" in page
    assert "Daily brief" in page and "At 09:00 AM (Europe/Berlin)" in page
    assert "Mon 23 Nov 09:00 (+01:00), Europe/Berlin" in page
    assert "Weekly review" in page and "by Alice: on holiday" in page
    assert "Paused: no fires until resumed." in page
    assert "Old report" not in page and "Olga&#39;s own" not in page
    assert "Olga's own" not in page
    # Olga sees hers only.
    theirs = await miniapp.get("/schedules", user=OLGA)
    assert "Olga&#39;s own" in theirs.text and "Daily brief" not in theirs.text


async def test_a_schedule_shows_its_trigger_zone_prompt_policies_and_actions(
    miniapp: MiniAppClient,
) -> None:
    bot = miniapp.bot
    schedule = await seed(bot, policies=Policies(overlap=OverlapPolicy.QUEUE))
    answer = await miniapp.get(f"/schedules/{schedule.id}")
    assert answer.status == 200, answer.text
    page = answer.text
    assert "<h1>Daily brief</h1>" in page
    assert "At 09:00 AM (Europe/Berlin)" in page and "<dd>Europe/Berlin</dd>" in page
    for fire in ("Mon 23 Nov 09:00 (+01:00)", "Tue 24 Nov 09:00", "Wed 25 Nov 09:00"):
        assert fire in page
    assert "Prepare the brief." in page
    assert "Overlap: queue" in page and "Retries: 3 attempts" in page
    assert "Budget: none" in page
    assert f'data-post="/schedules/{schedule.id}/pause"' in page
    assert f'data-post="/schedules/{schedule.id}/run"' in page
    assert "No runs yet." in page
    # Its number names it too, as in the chat (/show 1).
    assert (await miniapp.get("/schedules/1")).status == 200
    # The admin's edit form offers budgets; the operator's does not.
    assert 'value="budget_runs"' in page
    olga = await seed(bot, "Olga's", chat=OLGA)
    theirs = await miniapp.get(f"/schedules/{olga.id}", user=OLGA)
    assert 'value="budget_runs"' not in theirs.text and 'value="overlap"' in theirs.text


# --- actions ---------------------------------------------------------------------------------
async def test_pause_resume_and_run_now_change_the_ledger_as_the_commands(
    miniapp: MiniAppClient,
) -> None:
    bot = miniapp.bot
    schedule = await seed(bot, "Olga's brief", chat=OLGA)

    # An operator may pause, resume and run, as in the chat.
    paused = await miniapp.post(f"/schedules/{schedule.id}/pause", {"reason": "away"}, user=OLGA)
    assert paused.status == 200, paused.text
    assert paused.message == "Paused 'Olga's brief'; its history is kept."
    assert paused.headers["X-Tickler-Route"] == f"/schedules/{schedule.id}"
    now = await stored(bot, schedule)
    assert not now.enabled and now.paused_by == OLGA and now.pause_reason == "away"
    assert f'data-post="/schedules/{schedule.id}/resume"' in paused.text

    again = await miniapp.post(f"/schedules/{schedule.id}/pause", user=OLGA)
    assert again.status == 409
    assert again.error == "'Olga's brief' is already paused; /resume starts it again."

    await bot.clock.advance(timedelta(days=2))
    resumed = await miniapp.post(f"/schedules/{schedule.id}/resume", user=OLGA)
    assert resumed.status == 200, resumed.text
    assert resumed.message == (
        "Resumed 'Olga's brief'. 2 passed windows recorded as skipped, not run."
    )
    assert (await stored(bot, schedule)).enabled
    skipped = await runs_of(bot, schedule)
    assert [r.status for r in skipped] == [RunStatus.SKIPPED] * 2

    ran = await miniapp.post(f"/schedules/{schedule.id}/run", user=OLGA)
    assert ran.status == 200, ran.text
    assert ran.message == "Sent to your agent."
    manual = [r for r in await runs_of(bot, schedule) if r.trigger.value == "manual"]
    assert len(manual) == 1
    await bot.agent.wait_for_requests(1)


async def test_edit_changes_one_field_as_edit_does_and_bad_input_changes_nothing(
    miniapp: MiniAppClient,
) -> None:
    bot = miniapp.bot
    schedule = await seed(bot, "Olga's brief", chat=OLGA)
    url = f"/schedules/{schedule.id}/edit"

    renamed = await miniapp.post(url, {"field": "name", "value": "Morning brief"}, user=OLGA)
    assert renamed.status == 200, renamed.text
    assert renamed.message == "Updated 'Morning brief'. Next run: Mon 23 Nov 09:00 (+01:00)."
    assert (await stored(bot, schedule)).name == "Morning brief"
    assert "<h1>Morning brief</h1>" in renamed.text

    policy = await miniapp.post(url, {"field": "overlap", "value": "queue"}, user=OLGA)
    assert policy.message == "Updated 'Morning brief': Overlap: queue."
    assert (await stored(bot, schedule)).policies.overlap is OverlapPolicy.QUEUE

    moved = await miniapp.post(url, {"field": "cron", "value": "30 7 * * 1-5"}, user=OLGA)
    assert moved.status == 200, moved.text
    assert (await stored(bot, schedule)).trigger.describe().startswith("At 07:30 AM")

    before = await stored(bot, schedule)
    bad = [
        ({"field": "cron", "value": "61 * * * *"}, 422),
        ({"field": "every", "value": "often"}, 422),
        ({"field": "overlap", "value": "sometimes"}, 422),
        ({"field": "colour", "value": "blue"}, 422),
        ({"field": "name", "value": "  "}, 422),
        ({"field": "tz", "value": "Mars/Olympus"}, 422),
    ]
    for form, status in bad:
        answer = await miniapp.post(url, form, user=OLGA)
        assert answer.status == status, (form, answer.text)
        sentence = answer.error
        assert sentence and sentence.endswith(".") and "\n" not in sentence, sentence
    assert (await stored(bot, schedule)) == before
    overlap = await miniapp.post(url, {"field": "overlap", "value": "sometimes"}, user=OLGA)
    assert overlap.error == "Overlap must be skip, queue or allow."

    # A budget is an admin's: the operator gets 403 and nothing changes.
    budget = await miniapp.post(url, {"field": "budget_runs", "value": "10"}, user=OLGA)
    assert budget.status == 403
    assert budget.error == "Only an admin can change a schedule's budget."
    assert (await stored(bot, schedule)) == before
    # Alice's own schedule: her budget edit goes through.
    mine = await seed(bot)
    raised = await miniapp.post(
        f"/schedules/{mine.id}/edit", {"field": "budget_runs", "value": "10"}
    )
    assert raised.status == 200, raised.text
    assert (await stored(bot, mine)).policies.budget_runs_per_week == 10


async def test_another_chats_schedule_is_404_and_nothing_changes(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    theirs = await seed(bot, "Olga's brief", chat=OLGA)
    before = await stored(bot, theirs)
    for path in ("", "/history", "/history/2"):
        answer = await miniapp.get(f"/schedules/{theirs.id}{path}")
        assert answer.status == 404, (path, answer.text)
        assert answer.error == f"There is no schedule '{theirs.id}' here; /schedules lists them."
    for action, form in (
        ("pause", {}),
        ("resume", {}),
        ("run", {}),
        ("edit", {"field": "name", "value": "Mine now"}),
    ):
        answer = await miniapp.post(f"/schedules/{theirs.id}/{action}", form)
        assert answer.status == 404, (action, answer.text)
    assert (await stored(bot, theirs)) == before
    assert await runs_of(bot, theirs) == []
    # Unknown ids and a page that is not a number are 404 too.
    assert (await miniapp.get("/schedules/NOPE")).status == 404
    mine = await seed(bot)
    assert (await miniapp.get(f"/schedules/{mine.id}/history/x")).status == 404


# --- history -----------------------------------------------------------------------------------
async def test_history_shows_each_runs_attempts_output_and_error(
    openai_miniapp: MiniAppClient,
) -> None:
    miniapp = openai_miniapp
    bot = miniapp.bot
    schedule = await seed(bot, policies=Policies(retry=RetryPolicy(max_attempts=2)))
    # The first attempt fails (HTTP 500), the second answers with a long output.
    bot.agent.script([500])
    bot.agent.openai_answer(LONG_OUTPUT, {"prompt_tokens": 10, "total_tokens": 14})
    run = await bot.services.service.run_now(ALICE, schedule.id)

    async def status_is(status: RunStatus) -> bool:
        return (await bot.services.service.get_run(ALICE, run.id)).status is status

    await eventually(lambda: status_is(RunStatus.FAILED))
    failed = await bot.services.service.get_run(ALICE, run.id)
    assert failed.next_attempt_at is not None
    await bot.clock.advance(failed.next_attempt_at - bot.clock.now())
    await eventually(lambda: status_is(RunStatus.SUCCEEDED))

    # A second run fails for good: dead, with its error.
    bot.agent.respond_with(500)
    dead = await bot.services.service.run_now(ALICE, schedule.id)
    await eventually(lambda: status_is(RunStatus.SUCCEEDED))
    await bot.clock.advance(timedelta(seconds=1))

    async def is_dead() -> bool:
        current = await bot.services.service.get_run(ALICE, dead.id)
        if current.status is RunStatus.FAILED and current.next_attempt_at is not None:
            await bot.clock.advance(current.next_attempt_at - bot.clock.now())
        return current.status is RunStatus.DEAD

    await eventually(is_dead)

    answer = await miniapp.get(f"/schedules/{schedule.id}/history")
    assert answer.status == 200, answer.text
    page = answer.text
    assert "<h1>History of Daily brief</h1>" in page
    # Newest first: the dead run, then the one that succeeded on its second attempt.
    assert page.index(dead.id) < page.index(run.id)
    assert ">dead</span>" in page and ">succeeded</span>" in page
    assert page.count('<li value="1">') == 2 and page.count('<li value="2">') == 2
    assert "The agent answered HTTP 500" in page and "<dt>Trigger</dt><dd>manual</dd>" in page
    assert 'class="error">The agent answered HTTP 500' in page
    assert "All quiet today." in page and "Tokens</dt><dd>prompt 10, total 14" in page
    # A long output is cut on the page, with a link to the whole of it.
    assert "more characters" in page
    whole = await miniapp.get(f"/schedules/{schedule.id}/runs/{run.id}")
    assert whole.status == 200 and LONG_OUTPUT.strip()[-40:] in html.unescape(whole.text)
    assert "more characters" not in whole.text
    # The schedule's own page shows its recent runs the same way.
    detail = await miniapp.get(f"/schedules/{schedule.id}")
    assert "The agent answered HTTP 500" in detail.text and "All quiet today." in detail.text


async def test_history_pages_ten_runs_at_a_time(miniapp: MiniAppClient) -> None:
    bot = miniapp.bot
    schedule = await seed(bot)
    await bot.services.service.pause(ALICE, schedule.id, by=ALICE)
    await bot.clock.advance(timedelta(days=12))
    await bot.services.service.resume(ALICE, schedule.id)

    first = await miniapp.get(f"/schedules/{schedule.id}/history")
    assert first.text.count(">skipped</span>") == 10 and "page 1" in first.text
    assert f'href="#/schedules/{schedule.id}/history/2">Older' in first.text
    second = await miniapp.get(f"/schedules/{schedule.id}/history/2")
    assert second.text.count(">skipped</span>") == 2 and "page 2" in second.text
    assert f'href="#/schedules/{schedule.id}/history/1">' in second.text
    third = await miniapp.get(f"/schedules/{schedule.id}/history/3")
    assert "No older runs." in third.text


# --- proposals --------------------------------------------------------------------------------
async def test_proposals_show_the_cards_facts_and_only_an_admin_decides(
    miniapp: MiniAppClient,
) -> None:
    bot = miniapp.bot
    proposal = await propose(bot)
    page = (await miniapp.get("/proposals")).text
    assert "<h1>Proposals</h1>" in page and "Inbox pulse" in page
    assert "When: Every 30 minutes (Europe/Berlin)" in page
    assert "Runs per week: 336" in page
    assert "Tokens (agent&#39;s estimate): 1,500 a run, about 504,000 a week" in page
    assert "Risk: 🔴 high — it fires more often than hourly" in page
    assert "Why: “You asked me to watch the inbox.”" in page
    assert f'data-post="/proposals/{proposal.id}/approve"' in page

    # Olga (an operator) sees it, without the buttons, and may not decide.
    olga_page = (await miniapp.get("/proposals", user=OLGA)).text
    assert "Inbox pulse" not in olga_page  # Alice's chat, not Olga's
    olga_chat = await propose(bot, "Olga's pulse", chat=OLGA)
    olga_page = (await miniapp.get("/proposals", user=OLGA)).text
    assert "Olga&#39;s pulse" in olga_page and "data-post" not in olga_page
    for action in ("approve", "reject"):
        refused = await miniapp.post(f"/proposals/{olga_chat.id}/{action}", user=OLGA)
        assert refused.status == 403, refused.text
        assert refused.error == f"Only an admin can {action} a proposal."
    assert (await proposals_of(bot).get(OLGA, olga_chat.id)).status is ProposalStatus.PENDING
    assert await bot.services.service.list_schedules(OLGA) == []

    # Another chat's proposal is 404 for Alice, and stays pending.
    for action in ("approve", "reject", "undo"):
        answer = await miniapp.post(f"/proposals/{olga_chat.id}/{action}")
        assert answer.status == 404, answer.text
        assert answer.error == "That proposal does not exist here."
    assert (await proposals_of(bot).get(OLGA, olga_chat.id)).status is ProposalStatus.PENDING

    # Alice approves: the schedule is created, as the card's Approve does.
    approved = await miniapp.post(f"/proposals/{proposal.id}/approve")
    assert approved.status == 200, approved.text
    assert approved.message == "Approved; 'Inbox pulse' is active."
    decided = await proposals_of(bot).get(ALICE, proposal.id)
    assert decided.status is ProposalStatus.ACTIVE and decided.decided_by == ALICE
    [schedule] = await bot.services.service.list_schedules(ALICE)
    assert schedule.id == decided.schedule_id and schedule.enabled
    assert "Nothing is waiting for approval." in approved.text
    assert "Recently decided" in approved.text and ">active</span>" in approved.text
    # A second press is answered with what it already is, and applies nothing.
    twice = await miniapp.post(f"/proposals/{proposal.id}/approve")
    assert twice.status == 409 and twice.error == "That proposal is already approved."
    assert len(await bot.services.service.list_schedules(ALICE)) == 1

    # Reject and undo, as the card's buttons.
    other = await propose(bot, "Feed pulse")
    rejected = await miniapp.post(f"/proposals/{other.id}/reject")
    assert rejected.message == "Rejected 'Feed pulse'; nothing will run."
    assert (await proposals_of(bot).get(ALICE, other.id)).status is ProposalStatus.REJECTED
    undone = await miniapp.post(f"/proposals/{proposal.id}/undo")
    assert undone.status == 200, undone.text
    assert await bot.services.service.list_schedules(ALICE) == []


# --- in the browser ------------------------------------------------------------------------------
async def test_the_list_and_a_history_fit_a_phone_and_pause_is_a_click(
    browser: Any, openai_miniapp: MiniAppClient
) -> None:
    miniapp = openai_miniapp
    bot = miniapp.bot
    schedule = await seed(bot, LONG_NAME, policies=Policies(retry=RetryPolicy(max_attempts=1)))
    await seed(bot, "Daily brief")
    bot.agent.script([500])
    run = await bot.services.service.run_now(ALICE, schedule.id)

    async def dead() -> bool:
        return (await bot.services.service.get_run(ALICE, run.id)).status is RunStatus.DEAD

    await eventually(dead)
    await bot.clock.advance(timedelta(seconds=1))
    bot.agent.openai_answer(LONG_OUTPUT + "https://example.com/" + "a" * 300)
    second = await bot.services.service.run_now(ALICE, schedule.id)

    async def done() -> bool:
        current = await bot.services.service.get_run(ALICE, second.id)
        return current.status is RunStatus.SUCCEEDED

    await eventually(done)

    page = await open_app(browser, miniapp, miniapp.init_data(), route="#/schedules")
    await page.get_by_role("heading", name="Schedules").wait_for()
    await page.get_by_text("Daily brief").wait_for()
    assert await overflow(page) <= 0

    await page.get_by_role("link", name=LONG_NAME).click()
    await page.get_by_role("heading", name=LONG_NAME, exact=True).wait_for()
    assert await overflow(page) <= 0
    await page.get_by_role("link", name="The whole history").click()
    await page.get_by_role("heading", name=f"History of {LONG_NAME}").wait_for()
    await page.get_by_text("All quiet today.").first.wait_for()
    assert await page.get_by_text("The agent answered HTTP 500").count() >= 1
    assert await overflow(page) <= 0

    await page.get_by_role("link", name=f"Back to {LONG_NAME}").click()
    await page.get_by_role("heading", name=LONG_NAME, exact=True).wait_for()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_label("Reason (optional)").fill("moving house")
    await page.get_by_role("button", name="Pause").click()
    await page.get_by_text(f"Paused '{LONG_NAME}'; its history is kept.").wait_for()
    await page.get_by_role("button", name="Resume").wait_for()
    paused = await stored(bot, schedule)
    assert not paused.enabled and paused.pause_reason == "moving house"
    assert paused.paused_by == ALICE
    assert await overflow(page) <= 0


async def test_approving_a_proposal_by_click_creates_its_schedule(
    browser: Any, miniapp: MiniAppClient
) -> None:
    bot = miniapp.bot
    proposal = await propose(bot, LONG_NAME)
    page = await open_app(browser, miniapp, miniapp.init_data(), route="#/proposals")
    await page.get_by_role("heading", name="Proposals").wait_for()
    await page.get_by_text("Runs per week: 336").wait_for()
    assert await overflow(page) <= 0
    await page.get_by_role("button", name="Approve").click()
    await page.get_by_text(f"Approved; '{LONG_NAME}' is active.").wait_for()
    decided = await proposals_of(bot).get(ALICE, proposal.id)
    assert decided.status is ProposalStatus.ACTIVE
    [schedule] = await bot.services.service.list_schedules(ALICE)
    assert schedule.id == decided.schedule_id and schedule.name == LONG_NAME
    assert await overflow(page) <= 0


async def test_a_schedule_awaiting_approval_says_so_and_only_approval_resumes_it(
    miniapp: MiniAppClient,
) -> None:
    bot = miniapp.bot
    request = ProposalRequest(
        name="Inbox check",
        trigger=TriggerSpec(kind="cron", cron="0 9,17 * * *", timezone="Europe/Berlin"),
        action=Action(text="Check my inbox."),
    )
    proposal = await proposals_of(bot).propose(ALICE, request, proposed_by="api")
    assert proposal.schedule_id is not None  # medium: added paused
    listed = (await miniapp.get("/schedules")).text
    assert "Inbox check" in listed and "awaiting approval" in listed
    page = (await miniapp.get(f"/schedules/{proposal.schedule_id}")).text
    assert "/resume" not in page and "/run" not in page and 'href="#/proposals"' in page
    for action in ("resume", "run"):
        answer = await miniapp.post(f"/schedules/{proposal.schedule_id}/{action}")
        assert answer.status == 409 and "approv" in answer.error, answer.text
    schedule = await bot.services.store.schedules.get(ALICE, proposal.schedule_id)
    assert schedule is not None and not schedule.enabled
    assert await bot.services.store.runs.list_for_chat(ALICE, schedule_id=schedule.id) == []
