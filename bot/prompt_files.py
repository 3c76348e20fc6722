"""The named prompt templates: the `.txt` files shipped in the `prompts` package, read
once each and handed to the core as its template loader (scheduler/templates.py)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from scheduler.errors import InvalidSchedule, shown
from scheduler.templates import use_template_loader

__all__ = ["available_templates", "install_prompt_files", "read_template"]


def available_templates() -> list[str]:
    folder = resources.files("prompts")
    return sorted(e.name[:-4] for e in folder.iterdir() if e.name.endswith(".txt"))


@cache
def read_template(name: str) -> str:
    if name not in available_templates():
        raise InvalidSchedule(
            f"There is no prompt template '{shown(name)}'; available: "
            f"{', '.join(available_templates())}."
        )
    return (resources.files("prompts") / f"{name}.txt").read_text(encoding="utf-8").strip()


def install_prompt_files() -> None:
    """Make the shipped prompt files the templates `load_template` reads."""
    use_template_loader(read_template)
