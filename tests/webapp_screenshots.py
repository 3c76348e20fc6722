"""The Mini App's screenshots in docs/, taken from the real bot with a week of demo data:

    ./dev python -m tests.webapp_screenshots            # every page
    ./dev python -m tests.webapp_screenshots stats      # only some (the names below)

The bot harness (the real bot against the project's own Bot API server and agent stub)
starts on a fake clock a week before Monday 23 November 2026, 08:00 in Berlin, with a
daily brief, an inbox check, a sponsor report that fails, two task schedules and a
newsletter workflow template; the clock then walks through every fire of the week, so
the ledger holds a week of runs (tokens and all) made the way the engine makes them.
At the end it has a pending proposal, a task due today and one overdue, a follow-up due
and a bundle with an overdue step. Each page is opened in the system's headless Chromium
at 390 px and saved as a full-page PNG. A page that does not render is named on stderr,
its file left as it was, and the exit status is 1.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.clocks import FakeClock
from bot.boot import install_core_sources
from bot.demo_kit.agent_stub import AgentStub, RecordedRequest, Reply, openai_completion
from bot.demo_kit.harness import ALICE, START
from bot.demo_kit.telegram_server import TelegramServer
from bot.logs import configure_logging
from scheduler.bundle_model import BundleStatus
from scheduler.models import (
    FINAL_STATUSES,
    Action,
    ActionKind,
    Owner,
    Policies,
    RetryPolicy,
    Schedule,
    Step,
    StepKind,
)
from scheduler.proposals import ProposalRequest
from scheduler.service import TriggerSpec
from tests.webapp_kit import MiniAppClient, chromium, chromium_path, open_app, running_miniapp

__all__ = ["PAGES", "main"]

ROOT = Path(__file__).resolve().parents[1]
#: A schedule's history: its own page, or `#/schedules/{id}/history` if it moves there.
HISTORY_ROUTE = "#/schedules/{id}"
#: The file under docs/ and the route of each page; `{id}` is the failing schedule's,
#: `{bundle}` the newsletter's bundle.
PAGES: dict[str, tuple[str, str]] = {
    "home": ("mini-app-home.png", "#/home"),
    "schedules": ("mini-app-schedules.png", "#/schedules"),
    "history": ("mini-app-history.png", HISTORY_ROUTE),
    "proposals": ("mini-app-proposals.png", "#/proposals"),
    "bundles": ("mini-app-bundles.png", "#/bundles"),
    "bundle": ("mini-app-bundle.png", "#/bundles/{bundle}"),
    "stats": ("mini-app-stats.png", "#/stats"),
}
#: How long a page may take to show its heading.
RENDER_TIMEOUT_MS = 10_000
ZONE = "Europe/Berlin"
#: The week of history ends at the harness's usual moment (Mon 23 Nov, 08:00 Berlin).
HISTORY_DAYS = 7

NEWSLETTER = Action(
    kind=ActionKind.BUNDLE,
    text="Weekly newsletter",
    lead_days=7,
    steps=(
        Step(kind=StepKind.TASK, title="Collect links", offset_days=-6, proof="note"),
        Step(
            kind=StepKind.TASK,
            title="Send the draft to the sponsor",
            instructions="The sponsor block goes first; ask Ada for the logo.",
            assignee="Ada",
            offset_days=-2,
            proof="link",
        ),
        Step(
            kind=StepKind.AGENT,
            title="Intro",
            text="Draft the newsletter's intro for {date}.",
            offset_days=-1,
        ),
        Step(kind=StepKind.TASK, title="Publish", offset_days=0, proof="link"),
    ),
)

BRIEF = (
    "Good morning! Today: stand-up at 10:00, the sponsor call at 15:00, and the invoice "
    "for ACME is due. Two emails need an answer before noon."
)
#: What the agent reports, later, for the sponsor report it accepted on its bad days.
SPONSOR_FAILURE = {
    "status": "failed",
    "summary": "The CRM export timed out twice; the pipeline report was not written.",
    "log_excerpt": (
        "10:02:11 GET https://crm.example.org/api/v2/deals?stage=negotiation&owner=ada%40"
        "example.org&limit=500\n10:02:41 timeout after 30 s (attempt 1 of 2)\n10:03:12 "
        "timeout after 30 s (attempt 2 of 2)\n10:03:12 giving up: upstream CRM unavailable"
    ),
}


@dataclass
class Demo:
    """What the pages are about: the schedules made, by short name."""

    schedules: dict[str, Schedule]


def _agent() -> Any:
    """The agent: briefs and inbox checks succeed with varying token use; on two days of
    the week it accepts the sponsor report (202) and later reports it failed."""
    counter = {"all": 0, "sponsor": 0}

    def answer(request: RecordedRequest) -> Reply:
        counter["all"] += 1
        n = counter["all"]
        body = request.json or {}
        prompt = str(body.get("messages", [{}])[-1].get("content", ""))
        if "sponsor pipeline" in prompt:
            counter["sponsor"] += 1
            if counter["sponsor"] in (3, 6):
                return Reply(status=202)
        tokens = 900 + (n * 7919) % 2600
        text = BRIEF if "brief" in prompt else f"Checked: {3 + n % 5} new messages, 1 flagged."
        usage = {"prompt_tokens": tokens - 200, "completion_tokens": 200, "total_tokens": tokens}
        return Reply(json=openai_completion(text, usage), delay=0.1 * (n % 6))

    return answer


async def _schedules(app: MiniAppClient) -> Demo:
    service = app.bot.services.service
    owner = Owner(id=ALICE, first_name="Alice")

    async def add(
        name: str, cron: str, action: Action, policies: Policies | None = None
    ) -> Schedule:
        return await service.create_schedule(
            ALICE,
            owner,
            name=name,
            trigger=TriggerSpec(kind="cron", cron=cron, timezone=ZONE),
            action=action,
            policies=policies,
        )

    once = Policies(retry=RetryPolicy(max_attempts=1))
    made = {
        "brief": await add(
            "Daily brief", "30 7 * * *", Action(text="Prepare my daily brief for {date}.")
        ),
        "inbox": await add(
            "Inbox check", "0 12,17 * * 1-5", Action(text="Check my inbox and flag what is urgent.")
        ),
        "sponsor": await add(
            "Sponsor pipeline report for the Thursday partner call",
            "0 8 * * *",
            Action(text="Export the sponsor pipeline and summarise what changed."),
            once,
        ),
        "timesheets": await add(
            "Approve timesheets",
            "30 7 * * 1",
            Action(kind=ActionKind.TASK, text="Approve last week's timesheets", assignee="Alice"),
        ),
        "invoice": await add(
            "Send the ACME invoice",
            "0 10 * * 4",
            Action(kind=ActionKind.TASK, text="Send the ACME invoice", proof="file"),
        ),
        "newsletter": await add("Weekly newsletter", "0 9 * * 1", NEWSLETTER),
    }
    return Demo(made)


async def _next_fire(app: MiniAppClient) -> datetime | None:
    """The chat's next fire: its schedules', and the one-time ones its bundles make."""
    schedules = await app.bot.services.store.schedules.list_for_chat(ALICE)
    due = [s.next_run_at for s in schedules if s.enabled and s.next_run_at is not None]
    return min(due, default=None)


async def _settled(app: MiniAppClient, fire: datetime) -> None:
    """Wait until every run of the fire at `fire` has ended (or 10 s have passed); a run
    the agent accepted gets its failure reported, as the agent would report it."""
    svc = app.bot.services
    for _ in range(500):
        runs = await svc.store.runs.list_for_chat(ALICE, limit=50)
        at_fire = [r for r in runs if r.scheduled_for == fire]
        for run in at_fire:
            if run.awaiting_result:
                await svc.service.report_result(ALICE, run.id, SPONSOR_FAILURE)
        if at_fire and all(r.status in FINAL_STATUSES for r in at_fire):
            # Give the bundle and work-item writes that follow a run a moment.
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.02)
    print(f"runs at {fire.isoformat()} did not end in time", file=sys.stderr)


async def make_history(app: MiniAppClient) -> Demo:
    """A week of fires, one by one, as the engine meets them; on Friday a follow-up is set
    for Sunday (so it is due now)."""
    bot = app.bot
    svc = bot.services
    demo = await _schedules(app)
    friday = START - timedelta(days=3)
    followup = False
    done: set[datetime] = set()
    for n in range(1, 500):  # a week holds about 40 fire instants
        fire = await _next_fire(app)
        if fire is None or fire > START:
            break
        if fire in done:  # the engine has not moved the schedule on yet
            await asyncio.sleep(0.02)
            continue
        done.add(fire)
        # Fires start a few seconds late, more on some days: the chart's lag line.
        await bot.clock.set(fire + timedelta(seconds=2 + (n * 13) % 40))
        await _settled(app, fire)
        if not followup and fire >= friday:
            followup = True
            await svc.work_items.add_followup(
                ALICE,
                "Sponsor X: the signed contract",
                bot.clock.now() + timedelta(days=2),
                actor=str(ALICE),
                waiting_for="Sponsor X",
            )
    await bot.clock.set(START)
    return demo


async def loose_ends(app: MiniAppClient) -> None:
    """The newsletter's draft waiting for Ada, and a proposal awaiting approval."""
    svc = app.bot.services
    [bundle] = await svc.store.bundles.list_bundles(ALICE, [BundleStatus.ACTIVE])
    await svc.bundles.wait_step(ALICE, bundle.id, 2, actor=str(ALICE))
    await svc.proposals.propose(
        ALICE,
        ProposalRequest(
            name="Inbox digest",
            trigger=TriggerSpec(kind="cron", cron="0 9,17 * * *", timezone=ZONE),
            action=Action(text="Summarise the inbox since the last digest."),
            reason="You asked me to check the inbox twice a day.",
            expected_tokens_per_run=1800,
        ),
        proposed_by="agent:chat",
    )


async def shoot(
    app: MiniAppClient, demo: Demo, names: Sequence[str], out: Path, browser: Any
) -> list[str]:
    """Each page's full-page PNG under `out`; the names of the pages that did not render."""
    failed = []
    [bundle] = await app.bot.services.store.bundles.list_bundles(ALICE, [BundleStatus.ACTIVE])
    routes = {"id": demo.schedules["sponsor"].id, "bundle": bundle.id}
    for name in names:
        filename, route = PAGES[name]
        page = await open_app(browser, app, app.init_data(), route=route.format(**routes))
        try:
            await page.locator("main h1").wait_for(timeout=RENDER_TIMEOUT_MS)
            await page.wait_for_load_state("networkidle")
            await page.screenshot(path=str(out / filename), full_page=True)
            print(f"{name}: {out / filename}")
        except Exception as exc:
            note = await page.locator("#message").inner_text()
            print(f"{name}: did not render ({note or type(exc).__name__})", file=sys.stderr)
            failed.append(name)
        finally:
            await page.context.close()
    return failed


async def run(names: Sequence[str], out: Path) -> int:
    path = chromium_path()
    if path is None:
        print("no chromium here: `apt-get install chromium` (Debian)", file=sys.stderr)
        return 1
    clock = FakeClock(START - timedelta(days=HISTORY_DAYS))
    with tempfile.TemporaryDirectory(prefix="tickler-shots-") as tmp:
        async with TelegramServer() as server, AgentStub() as agent:
            agent.respond_with(_agent())
            async with running_miniapp(
                server, agent, Path(tmp) / "demo.db", agent_mode="openai", clock=clock
            ) as app:
                demo = await make_history(app)
                await loose_ends(app)
                async with chromium(path) as browser:
                    failed = await shoot(app, demo, names, out, browser)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(PAGES)
    unknown = [n for n in names if n not in PAGES]
    if unknown:
        print(f"No page {', '.join(unknown)}; pick from {', '.join(PAGES)}.", file=sys.stderr)
        return 2
    install_core_sources()
    configure_logging("ERROR")
    return asyncio.run(run(names, ROOT / "docs"))


if __name__ == "__main__":
    sys.exit(main())
