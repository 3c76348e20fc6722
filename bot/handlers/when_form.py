"""The "When?" questions of the guided forms (/new, /template), written once.

    When? [preset] -> daily, weekdays        -> time
                      weekly                 -> weekday -> time
                      monthly                -> day of the month -> time
                      every N hours          -> hours            (not calendar-only)
                      once at/in             -> the instant      (not calendar-only)
                      custom cron            -> the expression
    or a schedule written out (`daily 09:00`, `every 4h`) at the first question.

A form makes one `WhenForm` with its parts (its drafts and the callback kind of its
buttons: forms.FormParts), its own first question and what to ask once the trigger is
set.
Every value is checked by the service (check_trigger) before the form goes on; bad
input gets one sentence and the form stays at its question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from telegram import Update

from bot.context import Context
from bot.handlers.forms import FormParts, Handler, Next, State, chosen, pressed, say, text, typed
from bot.views_new import (
    CRON_HELP,
    ONCE_HELP,
    WEEKDAYS,
    cron_spec,
    every_spec,
    once_spec,
    parse_day_of_month,
    parse_duration,
    parse_once,
    parse_time,
    parse_weekdays,
    parse_when,
    preset_cron,
)
from scheduler.errors import TicklerError
from scheduler.service import TriggerSpec

__all__ = ["CALENDAR_PRESETS", "ONCE_CHOICES", "PRESETS", "TIMES", "WhenDraft", "WhenForm"]

PRESETS: tuple[tuple[str, str], ...] = (
    ("daily", "Daily at…"),
    ("weekdays", "Weekdays at…"),
    ("weekly", "Weekly on…"),
    ("monthly", "Monthly on…"),
    ("every", "Every N hours"),
    ("once", "Once at/in…"),
    ("cron", "Custom cron"),
)
#: A calendar-only form (a template fires on calendar days): no intervals, no one-time.
CALENDAR_PRESETS = tuple((key, label) for key, label in PRESETS if key not in ("every", "once"))
TIMES = ("07:00", "08:00", "09:00", "12:00", "18:00", "21:00")
ONCE_CHOICES: tuple[tuple[str, str], ...] = (
    ("in 1 hour", "in 1 hour"),
    ("tomorrow 09:00", "tomorrow 09:00"),
    ("in 3 days", "in 3 days"),
)


class WhenDraft(Protocol):
    """What the When? questions fill in on a form's draft."""

    zone: str
    preset: str
    weekdays: list[int]
    day: int
    spec: TriggerSpec | None


D = TypeVar("D", bound=WhenDraft)


@dataclass(frozen=True)
class WhenForm(Generic[D]):
    """The When? questions of one form.

    `question` opens them (the zone follows it); `typed_help` answers a first answer
    that is neither a button nor a schedule this form takes; `then` is asked once the
    trigger is set on the draft; `calendar_only` leaves out intervals and one-time."""

    parts: FormParts[D]
    question: str
    typed_help: str
    then: Next[D]
    calendar_only: bool = False

    @property
    def presets(self) -> tuple[tuple[str, str], ...]:
        return CALENDAR_PRESETS if self.calendar_only else PRESETS

    def states(self) -> dict[object, list[Handler]]:
        """The form's states for these questions, joined into its own."""
        p = self.parts
        states: dict[object, list[Handler]] = {
            p.state("when"): p.answers("when", self.on_preset, self.on_when_typed),
            p.state("time"): p.answers("time", self.on_time, self.on_time_typed),
            p.state("weekday"): p.answers("dow", self.on_weekday, self.on_weekday_typed),
            p.state("monthday"): p.answers("dom", self.on_monthday, self.on_monthday_typed),
            p.state("cron"): [typed(self.on_cron_typed)],
        }
        if not self.calendar_only:
            states[p.state("hours")] = p.answers("hours", self.on_hours, self.on_hours_typed)
            states[p.state("once")] = p.answers("once", self.on_once, self.on_once_typed)
        return states

    # --- questions -------------------------------------------------------------------
    async def ask(self, update: Update, context: Context, draft: D) -> State:
        """The first question: the presets, two to a row (shaped as `Next`, so another
        question can go on to it as its `then`)."""
        p, presets = self.parts, self.presets
        rows = [
            [p.button(label, "when", key) for key, label in presets[i : i + 2]]
            for i in range(0, len(presets), 2)
        ]
        await say(update, f"{self.question} (times are {draft.zone})", p.keyboard(*rows))
        return p.state("when")

    async def _ask_time(self, update: Update) -> State:
        p = self.parts
        rows = [[p.button(t, "time", t.replace(":", "")) for t in TIMES[i : i + 3]] for i in (0, 3)]
        await say(update, "At what time? Write it as HH:MM, like 09:00.", p.keyboard(*rows))
        return p.state("time")

    async def _ask_detail(self, update: Update, draft: D) -> State:
        """The follow-up question for the chosen preset."""
        p, preset = self.parts, draft.preset
        if preset in ("daily", "weekdays"):
            return await self._ask_time(update)
        if preset == "weekly":
            days = [p.button(label, "dow", number) for label, number in WEEKDAYS]
            await say(update, "On which day?", p.keyboard(days[:4], days[4:]))
            return p.state("weekday")
        if preset == "monthly":
            rows = [[p.button(str(d), "dom", d) for d in range(r, r + 7)] for r in (1, 8, 15, 22)]
            await say(update, "On which day of the month? (1 to 28)", p.keyboard(*rows))
            return p.state("monthday")
        if preset == "every":
            rows = [[p.button(str(h), "hours", h) for h in range(r, r + 6)] for r in (1, 7)]
            await say(update, "Every how many hours?", p.keyboard(*rows))
            return p.state("hours")
        if preset == "once":
            choices = [p.button(label, "once", i) for i, (label, _) in enumerate(ONCE_CHOICES)]
            await say(update, f"When exactly? {ONCE_HELP}", p.keyboard(choices))
            return p.state("once")
        await say(
            update,
            f"{CRON_HELP} The fields are minute, hour, day of month, month and day of week, "
            f"in {draft.zone} time.",
            p.keyboard(),
        )
        return p.state("cron")

    async def _done(
        self, update: Update, context: Context, draft: D, spec: TriggerSpec
    ) -> State | None:
        """Check the trigger; on success ask what comes next, else stay with one sentence."""
        try:
            context.services.service.check_trigger(spec)
        except TicklerError as error:
            await say(update, str(error))
            return None
        draft.spec = spec
        return await self.then(update, context, draft)

    # --- answers ---------------------------------------------------------------------
    async def on_preset(self, update: Update, context: Context) -> State:
        """One of the When? presets: <kind>:when:<preset>."""
        query, args = await pressed(update)
        draft = self.parts.draft(update, context)
        labels = dict(self.presets)
        draft.preset = args[0] if args and args[0] in labels else "daily"
        await chosen(query, labels[draft.preset])
        return await self._ask_detail(update, draft)

    async def on_when_typed(self, update: Update, context: Context) -> State | None:
        """A schedule written out (`daily 09:00`, `every 4h`) instead of a preset button;
        a calendar-only form takes only the ones that come out as cron."""
        draft = self.parts.draft(update, context)
        try:
            spec, rest = parse_when(text(update), context.services.clock.now(), draft.zone)
        except TicklerError:
            spec, rest = None, "?"
        if spec is None or rest.strip() or (self.calendar_only and spec.kind != "cron"):
            await say(update, self.typed_help)
            return None
        return await self._done(update, context, draft, spec)

    async def _time_chosen(
        self, update: Update, context: Context, hour: int, minute: int
    ) -> State | None:
        draft = self.parts.draft(update, context)
        expr = preset_cron(draft.preset, hour, minute, weekdays=draft.weekdays, day=draft.day)
        return await self._done(update, context, draft, cron_spec(expr, draft.zone))

    async def on_time(self, update: Update, context: Context) -> State | None:
        """A time button: <kind>:time:0900."""
        query, args = await pressed(update)
        # Our buttons carry HHMM; anything else is forged or stale: the default time.
        valid = bool(args) and re.fullmatch(r"([01][0-9]|2[0-3])[0-5][0-9]", args[0]) is not None
        value = args[0] if valid else "0900"
        hour, minute = int(value[:2]), int(value[2:])
        await chosen(query, f"{hour:02d}:{minute:02d}")
        return await self._time_chosen(update, context, hour, minute)

    async def on_time_typed(self, update: Update, context: Context) -> State | None:
        """A time written as HH:MM."""
        try:
            hour, minute = parse_time(text(update))
        except TicklerError as error:
            await say(update, str(error))
            return None
        return await self._time_chosen(update, context, hour, minute)

    async def on_weekday(self, update: Update, context: Context) -> State:
        """A weekday button: <kind>:dow:1 (cron numbering, Sunday 0)."""
        query, args = await pressed(update)
        labels = {str(n): label for label, n in WEEKDAYS}
        number = args[0] if args and args[0] in labels else "1"
        self.parts.draft(update, context).weekdays = [int(number)]
        await chosen(query, labels[number])
        return await self._ask_time(update)

    async def on_weekday_typed(self, update: Update, context: Context) -> State | None:
        try:
            self.parts.draft(update, context).weekdays = parse_weekdays(text(update))
        except TicklerError as error:
            await say(update, str(error))
            return None
        return await self._ask_time(update)

    async def on_monthday(self, update: Update, context: Context) -> State:
        """A day-of-month button: <kind>:dom:15."""
        query, args = await pressed(update)
        day = int(args[0]) if args and args[0].isdigit() and 1 <= int(args[0]) <= 28 else 1
        self.parts.draft(update, context).day = day
        await chosen(query, str(day))
        return await self._ask_time(update)

    async def on_monthday_typed(self, update: Update, context: Context) -> State | None:
        try:
            self.parts.draft(update, context).day = parse_day_of_month(text(update))
        except TicklerError as error:
            await say(update, str(error))
            return None
        return await self._ask_time(update)

    async def _every_chosen(self, update: Update, context: Context, seconds: int) -> State | None:
        draft = self.parts.draft(update, context)
        try:
            spec = every_spec(seconds, context.services.clock.now(), draft.zone)
        except TicklerError as error:
            await say(update, str(error))
            return None
        return await self._done(update, context, draft, spec)

    async def on_hours(self, update: Update, context: Context) -> State | None:
        """An hours button: <kind>:hours:4."""
        query, args = await pressed(update)
        hours = int(args[0]) if args and args[0].isdigit() else 1
        await chosen(query, f"every {hours} hour" + ("s" if hours != 1 else ""))
        return await self._every_chosen(update, context, hours * 3600)

    async def on_hours_typed(self, update: Update, context: Context) -> State | None:
        """`4` (hours), or with a unit: `30m`, `2d`."""
        try:
            seconds = parse_duration(text(update), bare_unit=3600)
        except TicklerError:
            await say(update, "Write a number of hours, like 4, or a unit, like 30m or 2d.")
            return None
        return await self._every_chosen(update, context, seconds)

    async def _once_chosen(self, update: Update, context: Context, when: str) -> State | None:
        draft = self.parts.draft(update, context)
        try:
            at = parse_once(when, context.services.clock.now(), draft.zone)
        except TicklerError as error:
            await say(update, str(error))
            return None
        return await self._done(update, context, draft, once_spec(at, draft.zone))

    async def on_once(self, update: Update, context: Context) -> State | None:
        """A one-time choice button: <kind>:once:<index>."""
        query, args = await pressed(update)
        index = int(args[0]) if args and args[0].isdigit() else 0
        label, when = ONCE_CHOICES[min(index, len(ONCE_CHOICES) - 1)]
        await chosen(query, label)
        return await self._once_chosen(update, context, when)

    async def on_once_typed(self, update: Update, context: Context) -> State | None:
        return await self._once_chosen(update, context, text(update))

    async def on_cron_typed(self, update: Update, context: Context) -> State | None:
        """A cron expression; quotes around it are allowed."""
        draft = self.parts.draft(update, context)
        expr = text(update).strip().strip("\"'“”‘’")
        return await self._done(update, context, draft, cron_spec(expr, draft.zone))
