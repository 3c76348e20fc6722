"""What the process hands the core before anything else runs: the id source and the
prompt templates (the core reads neither the system nor files itself)."""

from __future__ import annotations

from adapters.ids import install_system_ids
from bot.prompt_files import install_prompt_files

__all__ = ["install_core_sources"]


def install_core_sources() -> None:
    """Idempotent; every entry point (the CLI, `python -m bot`, the tests, the bench)
    calls it first."""
    install_system_ids()
    install_prompt_files()
