"""The Mini App's Bundles and Stats pages over real HTTP and in Debian's Chromium: the
facts /bundle and /stats give, a bundle's steps with the card's actions (through the same
services, so the ledger changes as a press in chat would), another chat's bundle 404,
the chart a real PNG inline, a bad window one sentence, and no horizontal scroll at 390 px.
The bot's clock: Mon 2026-11-23 07:00 UTC (08:00 Berlin)."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from html import unescape
from typing import Any

from bot.demo_kit.harness import ALICE, OLGA
from bot.demo_kit.telegram_server import image_size
from bot.stats_chart import HEIGHT_PX, WIDTH_PX
from scheduler.bundle_model import Bundle
from scheduler.models import Action, Owner, Policies, RetryPolicy, RunStatus
from scheduler.service import TriggerSpec
from scheduler.work_item_model import WorkItemStatus
from tests.test_bot_bundles import made
from tests.test_bot_schedules import eventually, runs_of
from tests.test_bundles import NEWSLETTER
from tests.webapp_kit import MiniAppClient, browser, miniapp, open_app

__all__ = ["browser", "miniapp"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A long unbroken name, as an operator's paste can be: it must wrap at 390 px.
LONG = "Quarterly-sponsor-newsletter-for-the-European-partners-and-their-accountants"


def words(html: str) -> str:
    """The page's text, tags dropped and spaces squeezed, as a reader sees it."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


ALICE_OWNS = Owner(id=ALICE, first_name="Alice")


async def newsletter(
    miniapp: MiniAppClient,
    name: str = "Weekly newsletter",
    *,
    chat: int = ALICE,
    owner: Owner = ALICE_OWNS,
) -> Bundle:
    """The newsletter template of tests/test_bundles.py in `chat`, fired Monday 09:00
    Berlin: a bundle for Mon 30 Nov (collect links, send the draft to Ada, an agent's
    intro)."""
    bot = miniapp.bot
    await bot.services.service.create_schedule(
        chat,
        owner,
        name=name,
        trigger=TriggerSpec(kind="cron", cron="0 9 * * 1", timezone="Europe/Berlin"),
        action=NEWSLETTER,
    )
    await bot.clock.advance(timedelta(hours=1))
    return await made(bot, chat)


async def items_of(miniapp: MiniAppClient, bundle: Bundle) -> dict[int | None, Any]:
    items = await miniapp.bot.services.store.bundles.bundle_items(bundle.id)
    return {i.bundle_step: i for i in items}


# --- Bundles ---------------------------------------------------------------------------------
async def test_bundles_list_the_active_ones_with_their_risk(miniapp: MiniAppClient) -> None:
    empty = await miniapp.get("/bundles")
    assert empty.status == 200 and "No active bundles" in empty.text
    bundle = await newsletter(miniapp)
    await miniapp.bot.clock.advance(timedelta(days=2))  # step 1, due Tuesday, is overdue

    page = words((await miniapp.get("/bundles")).text)
    assert "Weekly newsletter For Mon 30 Nov · 0/3 steps done" in page
    assert "1 overdue step · 0 waiting · 0 follow-ups due · 2 missing proof" in page
    assert "Next: step 1 Collect links, due Tue 24 Nov 09:00 (+01:00)." in page
    assert f'href="#/bundles/{bundle.id}"' in (await miniapp.get("/bundles")).text


async def test_a_bundle_shows_each_step(miniapp: MiniAppClient) -> None:
    bundle = await newsletter(miniapp)
    items = await items_of(miniapp, bundle)
    answer = await miniapp.get(f"/bundles/{bundle.id}")
    assert answer.status == 200, answer.text
    page = words(answer.text)
    assert page.startswith("Weekly newsletter For Mon 30 Nov 2026 · active · 0/3 steps done")
    steps = page.split("Steps", 1)[1]
    first, second, third = re.split(r"\s(?=[23]\. \w)", steps, maxsplit=2)
    assert "1. Collect links to do Kind task Due Tue 24 Nov 09:00 (+01:00)" in first
    assert "Status todo · needs a note (missing)" in first
    assert f"Proof note needed; none given yet Item {items[1].id}" in first
    assert "2. Send draft to sponsor to do Kind task Assignee Ada Due Sat 28 Nov 09:00" in second
    assert "The sponsor block goes first." in second and "Wait for Ada" in second
    assert "3. Intro prompt Kind agent prompt Due Sun 29 Nov 09:00 (+01:00)" in third
    assert "Status agent prompt, not sent yet" in third and "Run sent at its due time" in third
    assert "Prompt: Draft the intro for {date}." in third and "Done" not in third


async def test_another_chats_bundle_is_404(miniapp: MiniAppClient) -> None:
    bundle = await newsletter(miniapp)
    items = await items_of(miniapp, bundle)
    for path in (f"/bundles/{bundle.id}", "/bundles/01NOSUCHBUNDLE"):
        answer = await miniapp.get(path, user=OLGA)
        assert answer.status == 404 and "No bundle" in answer.error, answer.text
    # Olga's actions on Alice's bundle change nothing.
    for path in (
        f"/bundles/{bundle.id}/steps/1/done",
        f"/bundles/{bundle.id}/steps/2/wait",
        f"/bundles/{bundle.id}/items/{items[2].id}/proof",
    ):
        answer = await miniapp.post(path, {"proof": "https://x.example"}, user=OLGA)
        assert answer.status == 404, (path, answer.text)
    assert await items_of(miniapp, bundle) == items
    assert "Weekly newsletter" not in (await miniapp.get("/bundles", user=OLGA)).text


async def test_a_launch_from_a_group_shows_that_groups_bundles(miniapp: MiniAppClient) -> None:
    """Opened from a group (Telegram signs its `chat`), the pages are that chat's."""
    group = -1001234567890
    bundle = await newsletter(miniapp, "Team newsletter", chat=group)
    in_group = miniapp.init_data(ALICE, chat=group)
    assert "Team newsletter" in (await miniapp.get("/bundles", init_data=in_group)).text
    assert "No active bundles" in (await miniapp.get("/bundles")).text  # Alice's own chat
    assert (await miniapp.get(f"/bundles/{bundle.id}", init_data=in_group)).status == 200
    assert (await miniapp.get(f"/bundles/{bundle.id}")).status == 404


async def test_a_steps_actions_change_the_ledger_as_the_chat_card(miniapp: MiniAppClient) -> None:
    bundle = await newsletter(miniapp)
    items = await items_of(miniapp, bundle)
    sponsor = items[2]
    path = f"/bundles/{bundle.id}"

    refused = await miniapp.post(f"{path}/steps/2/done")
    assert refused.status == 409
    assert refused.error == (
        f"Step 2 'Send draft to sponsor' needs a link as proof; send /done {sponsor.id} https://…"
    )
    wait = await miniapp.post(f"{path}/steps/2/wait")
    assert wait.status == 200 and wait.message == "Step 2 is waiting; follow up in 3 days."
    assert "waiting for Ada" in words(wait.text)
    sent = await miniapp.post(f"{path}/steps/2/followup")
    assert sent.message == "Follow-up noted for step 2; the next one in 3 days."
    bad = await miniapp.post(f"{path}/items/{sponsor.id}/proof", {"proof": "not-a-link"})
    assert bad.status == 409 and "needs a link" in bad.error
    assert (await items_of(miniapp, bundle))[2].proof_value is None
    added = await miniapp.post(f"{path}/items/{sponsor.id}/proof", {"proof": "https://d.example"})
    assert added.message == "Proof added to Send draft to sponsor; Done completes it."
    assert 'href="https://d.example"' in added.text
    done = await miniapp.post(f"{path}/steps/2/done")
    assert done.message == "Step 2 done." and done.headers["X-Tickler-Route"] == path
    after = (await items_of(miniapp, bundle))[2]
    assert after.status is WorkItemStatus.DONE and after.proof_value == "https://d.example"
    history = await miniapp.bot.services.work_items.history(after)
    assert [h.action for h in history] == [
        "created",
        "waiting for Ada",
        "follow-up sent",
        "proof added",
        "done",
    ]
    assert {h.actor for h in history[1:]} == {str(ALICE)}
    # A prompt step takes no action; a step that is not there is one sentence.
    prompt = await miniapp.post(f"{path}/steps/3/done")
    assert prompt.status == 409 and "agent prompt" in prompt.error
    missing = await miniapp.post(f"{path}/steps/9/done")
    assert missing.status == 409 and missing.error == f"Bundle {bundle.id} has no step 9."
    assert (await miniapp.post(f"{path}/steps/x/done")).status == 404


async def test_an_operator_works_a_bundle_in_her_own_chat(miniapp: MiniAppClient) -> None:
    """The card's actions are every member's, not only an admin's, as in chat."""
    bundle = await newsletter(
        miniapp, "Olga's newsletter", chat=OLGA, owner=Owner(id=OLGA, first_name="Olga")
    )
    answer = await miniapp.post(f"/bundles/{bundle.id}/steps/1/done", user=OLGA)
    assert answer.status == 409 and "needs a note" in answer.error
    item = (await items_of(miniapp, bundle))[1]
    added = await miniapp.post(
        f"/bundles/{bundle.id}/items/{item.id}/proof", {"proof": "six links"}, user=OLGA
    )
    assert added.status == 200
    assert (await miniapp.post(f"/bundles/{bundle.id}/steps/1/done", user=OLGA)).status == 200
    assert (await items_of(miniapp, bundle))[1].status is WorkItemStatus.DONE


# --- Stats -----------------------------------------------------------------------------------
async def three_days(miniapp: MiniAppClient) -> None:
    """A daily brief: Monday and Tuesday succeed, Wednesday's dies (one attempt)."""
    bot = miniapp.bot
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Daily brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
        action=Action(text="Prepare my daily brief."),
        policies=Policies(retry=RetryPolicy(max_attempts=1)),
    )
    monday_fire = bot.clock.now() + timedelta(hours=1)
    for day in range(3):
        if day == 2:
            bot.agent.respond_with(500)

        async def ended(n: int = day + 1) -> bool:
            runs = await runs_of(bot, schedule)
            return sum(r.status in (RunStatus.SUCCEEDED, RunStatus.DEAD) for r in runs) == n

        await bot.clock.set(monday_fire + timedelta(days=day, minutes=1))
        await eventually(ended)


def chart_of(html: str) -> bytes:
    """The inline chart's PNG (an <img class="chart"> with a data: URI and its alt text)."""
    pattern = r'<img class="chart" src="data:image/png;base64,([^"]+)" alt="[^"]+"'
    [data] = re.findall(pattern, html)
    return base64.b64decode(data, validate=True)


async def test_stats_show_the_figures_of_stats_and_its_chart(miniapp: MiniAppClient) -> None:
    empty = await miniapp.get("/stats")
    assert empty.status == 200
    assert "No runs in this window." in words(empty.text)
    await three_days(miniapp)

    week = await miniapp.get("/stats")
    page = words(week.text)
    assert "Stats for the last 7 days" in page
    assert "Schedules: 1 active, 0 paused, 0 tripped" in page
    assert "Runs: 3 (2 succeeded, 1 dead)" in page
    assert "Success rate: 67% of runs that ended" in page
    assert "Fire lag: median" in page and "Agent time: median" in page
    assert "Tokens: none reported by the agent" in page
    assert "Daily brief: 3 runs, 2 ok, 1 dead" in page
    assert 'alt="Runs per day by outcome, fire lag p95 and tokens per day, the last 7 days."' in (
        week.text
    )
    png = chart_of(week.text)
    assert png[:8] == PNG_SIGNATURE
    assert image_size(png) == (WIDTH_PX, HEIGHT_PX)
    assert png != chart_of(empty.text)
    # Each window links to the others; the one shown is marked.
    for key in ("24h", "7d", "30d"):
        assert f'href="#/stats?window={key}"' in week.text
    assert re.search(r'window=7d"\s+aria-current="true"', week.text)

    day = await miniapp.get("/stats?window=24h")
    assert "Stats for the last 24 hours" in words(day.text)
    assert "Runs: 1 (1 dead)" in words(day.text) and "Success rate: 0%" in words(day.text)
    assert "the last 24 hours." in day.text

    olga = words((await miniapp.get("/stats", user=OLGA)).text)
    assert "0 active" in olga and "No runs in this window." in olga


async def test_stats_with_a_bad_window_answer_one_sentence(miniapp: MiniAppClient) -> None:
    for window, expected in [
        ("0d", "'0d' is not a window; use 24h, 7d or 30d."),
        ("week", "'week' is not a window; use 24h, 7d or 30d."),
        ("365d", "Stats go back at most 90 days; use 90d or less."),
    ]:
        answer = await miniapp.get(f"/stats?window={window}")
        assert answer.status == 409 and answer.error == expected


# --- in the browser --------------------------------------------------------------------------
async def overflow(page: Any) -> int:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width - 390


async def test_bundles_in_the_browser(browser: Any, miniapp: MiniAppClient) -> None:
    bundle = await newsletter(miniapp, name=LONG)
    page = await open_app(browser, miniapp, miniapp.init_data(), route="#/bundles")
    await page.get_by_role("heading", name="Bundles").wait_for()
    assert await overflow(page) <= 0
    await page.get_by_role("link", name=LONG).click()
    # The list names the bundle in a heading too: wait for the bundle's own page.
    await page.locator("li.step h3").first.wait_for()
    assert await page.locator("li.step h3").all_inner_texts() == [
        "1. Collect links to do",
        "2. Send draft to sponsor to do",
        "3. Intro prompt",
    ]
    assert await overflow(page) <= 0
    # Step 1's note, then Done, through the page's own forms.
    step = page.locator("#step-1")
    await step.get_by_label("Note for step 1").fill("six links collected")
    await step.get_by_role("button", name="Add proof").click()
    await page.get_by_text("Proof added to Collect links").wait_for()
    await page.locator("#step-1").get_by_role("button", name="Done").click()
    await page.get_by_text("Step 1 done.").wait_for()
    item = (await items_of(miniapp, bundle))[1]
    assert item.status is WorkItemStatus.DONE and item.proof_value == "six links collected"
    assert await page.locator("#step-1 h3").inner_text() == "1. Collect links done"


async def test_stats_in_the_browser(browser: Any, miniapp: MiniAppClient) -> None:
    await three_days(miniapp)
    page = await open_app(browser, miniapp, miniapp.init_data(), route="#/stats")
    await page.get_by_role("heading", name="Stats", exact=True).wait_for()
    chart = page.get_by_role("img", name=re.compile("Runs per day by outcome"))
    await chart.wait_for()
    assert await chart.evaluate("img => img.naturalWidth") == WIDTH_PX
    shown = await chart.bounding_box()
    assert shown is not None and shown["width"] <= 390  # scaled down to the phone
    assert await overflow(page) <= 0
    await page.get_by_role("link", name="24 hours").click()
    await page.get_by_text("Stats for the last 24 hours").wait_for()
    assert await overflow(page) <= 0
