"""`python -m bot`: run Tickler in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.runtime import run_engine
from bot.settings import ConfigError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(run_engine(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
