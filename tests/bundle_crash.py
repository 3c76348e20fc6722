"""A process that makes a template's bundle and is killed (SIGKILL, as kill -9) after
writing the bundle and before writing its steps: tests/test_bundles.py runs it.

    python -m tests.bundle_crash LOCATION CHAT_ID TEMPLATE_ID FIRE_ISO
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime

from adapters.clocks import FakeClock
from bot.boot import install_core_sources
from scheduler.bundle_model import Bundle
from scheduler.bundles import BundleService
from scheduler.work_items import WorkItemService
from storage.locations import open_store


async def _die(bundle: Bundle) -> None:
    print(f"bundle {bundle.id} written; killing myself", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


async def main(location: str, chat_id: int, template_id: str, fire: datetime) -> None:
    clock = FakeClock(fire)
    store = await open_store(location)
    try:
        template = await store.schedules.get(chat_id, template_id)
        assert template is not None
        work_items = WorkItemService(store.work_items, clock)
        bundles = BundleService(store, clock, work_items, between_phases=_die)
        await bundles.create_from_fire(template, fire)
    finally:
        await store.close()


if __name__ == "__main__":
    install_core_sources()
    where, chat, template_id, at = sys.argv[1:5]
    asyncio.run(main(where, int(chat), template_id, datetime.fromisoformat(at)))
    sys.exit("the fault hook did not kill the process")
