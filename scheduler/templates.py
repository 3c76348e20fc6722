"""Prompt templates: safe rendering, and the loader of named templates the process
installs (the files of `prompts/` are read on the bot side, bot/prompt_files.py).

Templates come from operators and from the agent, so rendering allows plain named
placeholders only: no attribute access, no indexing, no format specs that could
expand to huge strings. Anything else is refused when the schedule is saved.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.errors import InvalidSchedule, shown

__all__ = [
    "PLACEHOLDERS",
    "TemplateLoader",
    "check_template",
    "load_template",
    "prompt_variables",
    "render",
    "use_template_loader",
]

#: The text of a named template (`daily_brief` for prompts/daily_brief.txt), or
#: InvalidSchedule naming the templates there are.
TemplateLoader = Callable[[str], str]

PLACEHOLDERS = (
    "date",
    "iso_date",
    "weekday",
    "time",
    "timezone",
    "schedule_name",
    "last_output",
    "event",
)
_HELP = ", ".join("{" + p + "}" for p in PLACEHOLDERS)


def _no_templates(name: str) -> str:
    raise InvalidSchedule(f"There is no prompt template '{shown(name)}'; none are installed.")


_loader: TemplateLoader = _no_templates


def use_template_loader(loader: TemplateLoader) -> None:
    """Make `loader` the one `load_template` asks, for the whole process."""
    global _loader
    _loader = loader


def load_template(name: str) -> str:
    """The text of the template `name`, from the installed loader."""
    return _loader(name)


class _SafeFormatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        if field_name not in PLACEHOLDERS:
            raise InvalidSchedule(
                f"Unknown placeholder {{{shown(field_name)}}} in the prompt: use {_HELP}, "
                "and write {{ and }} for literal braces."
            )
        return kwargs[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec:
            raise InvalidSchedule("Placeholders in a prompt take no format, like {date}.")
        return str(value)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion:
            raise InvalidSchedule("Placeholders in a prompt take no conversion, like {date}.")
        return value


_formatter = _SafeFormatter()


def render(template: str, variables: dict[str, str]) -> str:
    try:
        return _formatter.vformat(template, (), variables)
    except InvalidSchedule:
        raise
    except (ValueError, IndexError) as exc:
        raise InvalidSchedule(
            f"The prompt is not a valid template ({exc}); write {{{{ and }}}} for literal braces."
        ) from None


def prompt_variables(
    *, fire: datetime, timezone: str, schedule_name: str, last_output: str | None
) -> dict[str, str]:
    local = fire.astimezone(ZoneInfo(timezone))
    return {
        "date": f"{local.day} {local:%B}",
        "iso_date": local.date().isoformat(),
        "weekday": f"{local:%A}",
        "time": f"{local:%H:%M}",
        "timezone": timezone,
        "schedule_name": schedule_name,
        "last_output": last_output or "(no earlier output)",
        # An event's JSON payload, for a run an event fired (the engine fills it in).
        "event": "(no event)",
    }


def check_template(template: str) -> None:
    """Raise InvalidSchedule if `template` would not render."""
    render(template, dict.fromkeys(PLACEHOLDERS, "x"))
