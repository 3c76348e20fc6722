"""A schedule row that cannot be decoded (written straight into the SQLite file, past
every check) is quarantined: paused with the reason, the chat told once, while every
other schedule keeps firing and the chat's screens keep answering. The real bot against
the Bot API test server, with a fake clock."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from bot.demo_kit.harness import ALICE, BotHarness
from scheduler.models import Action, ActionKind, Owner
from scheduler.service import TriggerSpec
from storage.codec import to_db_time

#: The row of issue 24: a cron trigger with no valid expression and an unknown zone.
BAD_TRIGGER = '{"kind":"cron","expr":"not a cron","timezone":"Mars/X"}'
ADA = Owner(id=ALICE, first_name="Alice")


def corrupt(db_path: Path, schedule_id: str, trigger_json: str, due: str) -> None:
    """Write the trigger straight into the file, and make the schedule due."""
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE schedules SET trigger_json = ?, next_run_at = ? WHERE id = ?",
            (trigger_json, due, schedule_id),
        )


def row_of(db_path: Path, schedule_id: str) -> tuple[int, str | None]:
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT enabled, pause_reason FROM schedules WHERE id = ?", (schedule_id,)
        ).fetchone()
    return int(row[0]), row[1]


async def test_an_unreadable_schedule_is_paused_once_and_the_others_keep_firing(
    bot: BotHarness, tmp_path: Path
) -> None:
    service, clock = bot.services.service, bot.clock
    now = clock.now()
    brief = await service.create_schedule(
        ALICE,
        ADA,
        name="Daily brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Prepare the brief."),
    )
    await service.create_schedule(
        ALICE,
        ADA,
        name="Stand-up",
        trigger=TriggerSpec(kind="once", at=now + timedelta(seconds=10)),
        action=Action(kind=ActionKind.REMINDER, text="Stand-up in the big room."),
    )
    broken = await service.create_schedule(
        ALICE,
        ADA,
        name="Broken import",
        trigger=TriggerSpec(kind="cron", cron="30 8 * * *"),
        action=Action(text="Never sent."),
    )
    corrupt(tmp_path / "bot.db", broken.id, BAD_TRIGGER, to_db_time(now))
    bot.services.engine.wake()

    told = await bot.alice.wait_reply(containing="go on firing")
    assert "Broken import" in (told.text or "") and broken.id in (told.text or "")
    assert "not a cron" in (told.text or "")
    enabled, reason = row_of(tmp_path / "bot.db", broken.id)
    assert enabled == 0 and reason is not None and reason.startswith("cannot be read:")

    # The valid reminder due 10 s later fires.
    await clock.advance(timedelta(seconds=10))
    await bot.alice.wait_reply(containing="Stand-up in the big room.")

    # The chat's screens answer, without the unreadable schedule.
    await bot.alice.send("/schedules")
    listed = await bot.alice.wait_reply()
    assert "Daily brief" in (listed.text or "") and "Broken import" not in (listed.text or "")
    await bot.alice.send(f"/show {broken.id}")
    shown = await bot.alice.wait_reply()
    assert "cannot be read" in (shown.text or "") and "paused" in (shown.text or "")
    await bot.alice.send(f"/show {brief.id}")
    assert "Daily brief" in ((await bot.alice.wait_reply()).text or "")
    await bot.alice.send("/today")
    assert "Today" in ((await bot.alice.wait_reply()).text or "")
    await bot.alice.send("/stats")
    await bot.alice.wait_reply()

    # A day on, the daily brief fires too; the chat heard of the broken row once.
    await clock.advance(timedelta(days=1))
    await bot.agent.wait_for_requests(1)
    assert bot.services.engine.failing is None
    warnings = [m for m in bot.alice.messages if "go on firing" in (m.text or "")]
    assert len(warnings) == 1
