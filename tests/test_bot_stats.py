"""/stats end to end: the real bot, the Bot API test server, the agent stub and a fake
clock (Mon 2026-11-23 07:00 UTC = 08:00 Berlin). Two good days and one dead run; the
chart that follows the text, as a photo and over the HTTP API; the token sums."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image, ImageChops

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import BotMessage, TelegramServer, image_size
from bot.stats_chart import HEIGHT_PX, WIDTH_PX, render_png, sample_stats
from scheduler.models import (
    Action,
    Owner,
    Policies,
    RetryPolicy,
    RunFigure,
    RunStatus,
    RunTrigger,
    Schedule,
)
from scheduler.service import TriggerSpec
from scheduler.stats import summarise
from tests.test_bot_schedules import eventually, runs_of
from tests.test_http_api import AUTH, TOKEN, free_port

DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


def assert_chart(photo: BotMessage) -> bytes:
    """The photo is the chart: a PNG of the chart's size, of a plausible weight, that an
    image library opens."""
    data = photo.photo_data
    assert data is not None, f"not a photo: {photo.text!r}"
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert image_size(data) == photo.photo_size == (WIDTH_PX, HEIGHT_PX)
    assert 8_000 < len(data) < 400_000, len(data)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        assert image.format == "PNG" and image.size == (WIDTH_PX, HEIGHT_PX)
    # Telegram's sizes: the largest, last, is the upload itself.
    assert photo.raw["photo"][-1]["width"] == WIDTH_PX
    assert photo.raw["photo"][-1]["file_size"] == len(data)
    return data


async def test_stats_count_runs_by_outcome_over_a_window(bot: BotHarness) -> None:
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Daily brief",
        trigger=DAILY_9,
        action=Action(text="Prepare my daily brief."),
        policies=Policies(retry=RetryPolicy(max_attempts=1)),
    )
    await bot.alice.send("/stats")
    empty = await bot.alice.wait_reply(containing="Stats")
    assert "1 active, 0 paused, 0 tripped" in (empty.text or "")
    assert "No runs in this window." in (empty.text or "")
    # The picture follows the text, even for an empty window (it says "no runs").
    no_runs = await bot.alice.wait_reply()
    assert no_runs.text == (
        "Runs per day by outcome, fire lag p95 and tokens per day, the last 7 days."
    )
    assert_chart(no_runs)

    monday_fire = bot.clock.now() + timedelta(hours=1)  # 09:00 Berlin
    for day in range(2):  # Mon and Tue succeed

        async def finished(n: int = day + 1) -> bool:
            runs = await runs_of(bot, schedule)
            return sum(r.status is RunStatus.SUCCEEDED for r in runs) == n

        await bot.clock.set(monday_fire + timedelta(days=day, minutes=1))
        await eventually(finished)
    bot.agent.respond_with(500)  # Wed's brief fails for good (one attempt allowed)
    await bot.clock.set(monday_fire + timedelta(days=2, minutes=1))

    async def dead() -> bool:
        return any(r.status is RunStatus.DEAD for r in await runs_of(bot, schedule))

    await eventually(dead)

    await bot.alice.send("/stats")
    week = (await bot.alice.wait_reply(containing="Stats for the last 7 days")).text or ""
    assert "Runs: 3 (2 succeeded, 1 dead)" in week
    assert "Success rate: 67% of runs that ended" in week
    assert "• Daily brief: 3 runs, 2 ok, 1 dead" in week
    assert "Tokens: none reported by the agent" in week  # Telegram mode reports none
    chart = assert_chart(await bot.alice.wait_reply())
    assert chart != assert_chart(no_runs)

    await bot.alice.send("/stats 24h")
    last_day = (await bot.alice.wait_reply(containing="Stats for the last 24 hours")).text or ""
    assert "Runs: 1 (1 dead)" in last_day and "Success rate: 0%" in last_day

    # Another chat's stats show none of Alice's runs.
    await bot.olga.send("/stats")
    olga = (await bot.olga.wait_reply(containing="Stats")).text or ""
    assert "0 active" in olga and "No runs in this window." in olga


async def test_stats_with_a_bad_window_answer_one_sentence(bot: BotHarness) -> None:
    for text, expected in [
        ("/stats 0d", "'0d' is not a window; use 24h, 7d or 30d."),
        ("/stats week", "'week' is not a window; use 24h, 7d or 30d."),
        ("/stats 365d", "Stats go back at most 90 days; use 90d or less."),
    ]:
        await bot.alice.send(text)
        assert (await bot.alice.wait_reply()).text == expected


# --- tokens, the photo and the HTTP route ---------------------------------------------------
@pytest_asyncio.fixture
async def api_bot(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[tuple[BotHarness, aiohttp.ClientSession]]:
    """The bot in openai mode (the agent reports token use) with the HTTP API on."""
    port = free_port()
    harness = await start_bot(
        telegram_server,
        agent_stub,
        tmp_path / "bot.db",
        agent_mode="openai",
        http_port=port,
        api_token=TOKEN,
    )
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield harness, http
    finally:
        await stop_bot(harness)


async def _two_days_with_tokens(bot: BotHarness) -> Schedule:
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Daily brief",
        trigger=DAILY_9,
        action=Action(text="Prepare my daily brief."),
    )
    monday_fire = bot.clock.now() + timedelta(hours=1)
    usages = [
        {"prompt_tokens": 1000, "completion_tokens": 234, "total_tokens": 1234},
        {"prompt_tokens": 400, "completion_tokens": 100},  # no total: the parts are summed
    ]
    for day, usage in enumerate(usages):
        bot.agent.openai_answer(f"Brief {day}.", usage=usage)
        await bot.clock.set(monday_fire + timedelta(days=day, minutes=1))
        await bot.alice.wait_reply(containing=f"Brief {day}.")
    return schedule


async def test_stats_tells_the_tokens_and_sends_the_chart_as_a_photo(
    api_bot: tuple[BotHarness, aiohttp.ClientSession],
) -> None:
    bot, _ = api_bot
    await _two_days_with_tokens(bot)
    await bot.alice.send("/stats 30d")
    text = (await bot.alice.wait_reply(containing="Stats for the last 30 days")).text or ""
    assert "Runs: 2 (2 succeeded)" in text
    assert "Tokens: 1,734 over 2 runs, most on Mon 23 Nov (1,234)" in text
    photo = await bot.alice.wait_reply()
    assert photo.text == (
        "Runs per day by outcome, fire lag p95 and tokens per day, the last 30 days."
    )
    assert_chart(photo)
    # One photo per /stats, sent after the text, through sendPhoto as a multipart upload.
    uploads = [c for c in bot.server.calls if c.method.lower() == "sendphoto"]
    assert len(uploads) == 1


async def test_the_chart_over_http_is_a_png_of_the_chat_only_with_the_token(
    api_bot: tuple[BotHarness, aiohttp.ClientSession],
) -> None:
    bot, http = api_bot
    await _two_days_with_tokens(bot)
    path = f"/api/v1/chats/{ALICE}/stats.png"
    async with http.get(path, params={"window": "7d"}, headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        assert response.headers["Cache-Control"] == "no-store"
        png = await response.read()
    assert image_size(png) == (WIDTH_PX, HEIGHT_PX) and 8_000 < len(png) < 400_000
    async with http.get(path, headers=AUTH) as response:  # the window defaults to 7d
        assert response.status == 200 and (await response.read())[:4] == b"\x89PNG"

    async with http.get(path) as response:  # no token
        assert response.status == 401
    async with http.get(path, headers={"Authorization": "Bearer nope"}) as response:
        assert response.status == 401
    async with http.get("/api/v1/chats/424242/stats.png", headers=AUTH) as response:
        assert response.status == 404  # a chat the token may not address
        assert (await response.json())["error"] == "There is no chat 424242 here."
    async with http.get(path, params={"window": "week"}, headers=AUTH) as response:
        body = await response.json()
        assert response.status == 422 and body["field"] == "window"
        assert body["error"] == "'week' is not a window; use 24h, 7d or 30d."

    async with http.get("/api/v1/openapi.json") as response:
        doc = await response.json()
    route = doc["paths"]["/api/v1/chats/{chat_id}/stats.png"]["get"]
    assert "image/png" in route["responses"]["200"]["content"]
    assert {p["name"] for p in route["parameters"]} == {"chat_id", "window"}


# --- the figures -------------------------------------------------------------------------
def _run(fire: datetime, status: RunStatus, tokens: int | None, lag_s: float = 1) -> RunFigure:
    return RunFigure(
        schedule_id="s1",
        status=status,
        trigger=RunTrigger.SCHEDULE,
        scheduled_for=fire,
        started_at=fire + timedelta(seconds=lag_s),
        duration_ms=1000,
        tokens=tokens,
    )


def test_token_sums_per_day_and_in_total_count_only_runs_that_reported() -> None:
    until = datetime(2026, 11, 26, 12, tzinfo=UTC)
    since = until - timedelta(days=3)
    runs = [
        _run(datetime(2026, 11, 23, 23, 30, tzinfo=UTC), RunStatus.SUCCEEDED, 100),  # Tue, Berlin
        _run(datetime(2026, 11, 24, 8, tzinfo=UTC), RunStatus.SUCCEEDED, 250, lag_s=4),
        _run(datetime(2026, 11, 24, 9, tzinfo=UTC), RunStatus.DEAD, None, lag_s=2),
        _run(datetime(2026, 11, 25, 9, tzinfo=UTC), RunStatus.SKIPPED, 0),
        _run(datetime(2026, 11, 26, 9, tzinfo=UTC), RunStatus.UNKNOWN, 7),
    ]
    stats = summarise(runs, since, until, ZoneInfo("Europe/Berlin"))
    assert (stats.tokens, stats.token_runs) == (357, 4)
    by_day = {d.day.isoformat(): d for d in stats.days}
    assert list(by_day) == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    assert [d.tokens for d in stats.days] == [0, 350, 0, 7]
    tuesday = by_day["2026-11-24"]
    assert (tuesday.succeeded, tuesday.failed, tuesday.runs) == (2, 1, 3)
    assert tuesday.lag_p95 == timedelta(seconds=4)
    assert by_day["2026-11-23"].runs == 0 and by_day["2026-11-23"].lag_p95 is None
    assert by_day["2026-11-25"].skipped == 1 and by_day["2026-11-26"].unknown == 1
    # In UTC the first run falls on Monday instead.
    utc = summarise(runs, since, until)
    assert [d.tokens for d in utc.days] == [100, 250, 0, 7]


def test_the_committed_sample_is_the_chart_of_the_sample_figures() -> None:
    """docs/stats-sample.png (README, chat.md) is what `python -m bot.stats_chart --sample`
    draws today (redraw it with that command when the chart changes). Pixels, not bytes:
    another platform's build of the same matplotlib may antialias a little differently."""
    committed = (Path(__file__).resolve().parents[1] / "docs" / "stats-sample.png").read_bytes()
    assert image_size(committed) == (WIDTH_PX, HEIGHT_PX)
    with (
        Image.open(io.BytesIO(committed)) as old,
        Image.open(io.BytesIO(render_png(sample_stats()))) as new,
    ):
        diff = ImageChops.difference(old.convert("RGB"), new.convert("RGB")).convert("L")
        differing = WIDTH_PX * HEIGHT_PX - diff.histogram()[0]
    assert differing < 0.01 * WIDTH_PX * HEIGHT_PX, f"{differing} pixels differ"


async def test_a_chart_that_cannot_be_drawn_leaves_the_text_and_one_sentence(
    bot: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import stats_chart

    def broken(stats: object) -> bytes:
        raise RuntimeError("Could not find a font.")

    monkeypatch.setattr(stats_chart, "render_png", broken)
    await bot.alice.send("/stats")
    assert "No runs in this window." in ((await bot.alice.wait_reply()).text or "")
    assert (await bot.alice.wait_reply()).text == (
        "The chart could not be drawn (Could not find a font); the figures above are complete."
    )
    assert not [c for c in bot.server.calls if c.method.lower() == "sendphoto"]
