"""The service layer: what the bot's handlers and the HTTP API call.

Each function validates its input, scopes everything by chat, and raises a
`TicklerError` whose message is the one sentence the operator sees. Nothing here
speaks Telegram or HTTP.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from scheduler.budgets import (
    LONGEST,
    BudgetKind,
    BudgetLimits,
    BudgetScope,
    UseReport,
    doubled,
    limits_of,
    use_report,
)
from scheduler.clock import Clock
from scheduler.cron import load_zone
from scheduler.engine_store import BudgetPause
from scheduler.errors import (
    InvalidSchedule,
    InvalidState,
    RunNotFound,
    ScheduleNotFound,
    about,
    shown,
)
from scheduler.ids import new_id
from scheduler.models import (
    AWAITING_APPROVAL_REASON,
    Action,
    ActionKind,
    Attempt,
    CreatedBy,
    EmittedEvent,
    Event,
    OverlapPolicy,
    Owner,
    PauseKind,
    Policies,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
    SkipReason,
)
from scheduler.planning import (
    APPROVAL_DEADLINE_REASON,
    MAX_RECORDED_MISSES,
    event_run,
    first_step,
    manual_run,
    skipped_run,
    walk_fires,
)
from scheduler.plans import plan_step
from scheduler.policy_edits import (
    POLICY_SETTINGS,
    SETTINGS,
    check_backoff,
    check_task_details,
    edit_action,
    edit_policies,
)
from scheduler.repositories import ChatPrefs, ScheduleChange
from scheduler.results import ResultReport, check_report
from scheduler.specs import (
    SCHEDULE_ID_PATTERN,
    Limits,
    TriggerSpec,
    check_schedule_id,
    first_fire,
    never_fires,
    never_fires_after,
    trigger_from_spec,
    with_zone,
)
from scheduler.stores import Stores
from scheduler.templates import check_template, load_template
from scheduler.triggers import (
    AfterTrigger,
    CronTrigger,
    EventTrigger,
    StartupTrigger,
    Trigger,
    check_event_name,
)
from scheduler.workflow_steps import check_steps

__all__ = [
    "MAX_BACKFILL",
    "MIN_ID_PREFIX",
    "SCHEDULE_ID_PATTERN",
    "BackfillPreview",
    "BudgetAnswered",
    "BudgetChoice",
    "LifecycleFires",
    "Limits",
    "Resumed",
    "RunDetail",
    "RunRequested",
    "ScheduleService",
    "TriggerSpec",
    "check_schedule_id",
    "first_fire",
    "trigger_from_spec",
    "with_zone",
]


class ScheduleService:
    def __init__(
        self,
        store: Stores,
        clock: Clock,
        *,
        default_timezone: str = "UTC",
        limits: Limits | None = None,
        on_change: Callable[[], None] | None = None,
        on_result: Callable[[int, str, ResultReport], Awaitable[Run]] | None = None,
        on_approval_asked: Callable[[list[Run]], Awaitable[None]] | None = None,
        on_over_budget: Callable[[list[BudgetPause]], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.default_timezone = default_timezone
        self.limits = limits or Limits()
        # The engine's wake(): a new or changed schedule is planned at once.
        self._on_change = on_change or (lambda: None)
        # The engine's report_result(): it ends the run as a synchronous answer would.
        self._on_result = on_result
        # The chat's Approve/Skip card for runs an event made that wait for approval.
        self._on_approval_asked = on_approval_asked
        self._on_over_budget = on_over_budget
        # Per chat: when it was read (monotonic) and which schedules its after schedules
        # follow. Every finished run asks; a read per run would scan the chat's
        # schedules each time. Cleared by this service's own changes; another replica's
        # new follower is seen within FOLLOWERS_TTL.
        self._followed: dict[int, tuple[float, frozenset[str]]] = {}

    # --- chats ----------------------------------------------------------------------------
    async def chat_timezone(self, chat_id: int) -> str:
        """The zone this chat's new schedules use."""
        prefs = await self.store.chats.get(chat_id)
        return prefs.timezone or self.default_timezone

    async def set_chat_timezone(self, chat_id: int, zone: str) -> str:
        name = load_zone(zone).key
        await self.store.chats.set_timezone(chat_id, name, self.clock.now())
        return name

    # --- validation ------------------------------------------------------------------
    # Every check of a definition, in one place: create, update, proposals, the guided
    # /new flow (one step at a time) and the API all call these. Each refusal is an
    # InvalidSchedule naming the field it is about.
    def build_trigger(self, spec: TriggerSpec, now: datetime) -> Trigger:
        """The trigger `spec` describes, within this service's limits."""
        if (
            spec.kind == "interval"
            and spec.every_seconds is not None
            and 0 < spec.every_seconds < self.limits.min_interval_seconds
        ):
            raise InvalidSchedule(
                f"The interval must be at least {_duration(self.limits.min_interval_seconds)}.",
                field="trigger.every_seconds",
            )
        return trigger_from_spec(spec, now, self.default_timezone)

    def check_trigger(self, spec: TriggerSpec, now: datetime | None = None) -> Trigger:
        """`build_trigger`, and refused when the trigger would never fire after `now`."""
        now = self.clock.now() if now is None else now
        trigger = self.build_trigger(spec, now)
        if never_fires_after(trigger, now):
            raise never_fires()
        return trigger

    def check_name(self, name: str) -> str:
        """The name as it is stored (whitespace folded), or refused."""
        name = " ".join(name.split())
        if not name:
            raise InvalidSchedule("Give the schedule a name.", field="name")
        if any(unicodedata.category(char) == "Cc" for char in name):
            # Whitespace controls are folded above; what is left (NUL, ESC, ...) would
            # corrupt log lines, terminals and exports.
            raise InvalidSchedule("The name may not contain control characters.", field="name")
        if len(name) > self.limits.max_name_chars:
            raise InvalidSchedule(
                f"The name is {len(name)} characters; the limit is {self.limits.max_name_chars}.",
                field="name",
            )
        return name

    def check_text(self, kind: ActionKind, text: str) -> str:
        """A typed prompt or reminder text: not empty, within the length limit, a
        template that renders."""
        if not text.strip():
            what = "prompt" if kind is ActionKind.AGENT else "reminder text"
            raise InvalidSchedule(
                f"The {what} is empty; write what should be sent.", field="action.text"
            )
        self._check_prompt(text, "action.text")
        return text

    def check_action(self, action: Action) -> Action:
        """The whole action: its text (or its template's) and a task's details."""
        check_steps(action, max_text=self.limits.max_prompt_chars, check_prompt=self._check_prompt)
        if action.kind in (ActionKind.PLAN, ActionKind.BUNDLE):
            # The steps hold the words; the action's own text is an optional heading.
            if action.template or len(action.text) > self.limits.max_name_chars:
                raise InvalidSchedule(
                    f"A {action.kind.value}'s text is a short heading of up to "
                    f"{self.limits.max_name_chars} characters; its steps hold the prompts.",
                    field="action.text",
                )
        elif action.template:
            with about("action.template"):
                text = load_template(action.template)
            self._check_prompt(text, "action.template")
        else:
            self.check_text(action.kind, action.text)
        check_task_details(action, max_instructions=self.limits.max_prompt_chars)
        return action

    def _check_prompt(self, text: str, field: str) -> None:
        if len(text) > self.limits.max_prompt_chars:
            raise InvalidSchedule(
                f"The prompt is {len(text)} characters; the limit is "
                f"{self.limits.max_prompt_chars}.",
                field=field,
            )
        with about(field):
            check_template(text)

    def validate(self, *, name: str, trigger: TriggerSpec, action: Action) -> None:
        """Raise InvalidSchedule if `create_schedule` would refuse this definition (the
        per-chat schedule count aside); changes nothing."""
        now = self.clock.now()
        self.check_name(name)
        built = self.build_trigger(trigger, now)
        self.check_action(action)
        if never_fires_after(built, now):
            raise never_fires()

    # --- schedules -------------------------------------------------------------------
    async def create_schedule(
        self,
        chat_id: int,
        owner: Owner,
        *,
        name: str,
        trigger: TriggerSpec,
        action: Action,
        policies: Policies | None = None,
        description: str = "",
        created_by: CreatedBy = CreatedBy.OPERATOR,
        schedule_id: str | None = None,
    ) -> Schedule:
        """Validate and add a schedule."""
        schedule = await self.new_schedule(
            chat_id,
            owner,
            name=name,
            trigger=trigger,
            action=action,
            policies=policies,
            description=description,
            created_by=created_by,
            schedule_id=schedule_id,
        )
        schedule = await self.store.schedules.add(schedule)
        self.changed()
        return schedule

    async def new_schedule(
        self,
        chat_id: int,
        owner: Owner,
        *,
        name: str,
        trigger: TriggerSpec,
        action: Action,
        policies: Policies | None = None,
        description: str = "",
        created_by: CreatedBy = CreatedBy.OPERATOR,
        schedule_id: str | None = None,
        awaiting_approval: bool = False,
    ) -> Schedule:
        """The schedule `create_schedule` would add, validated (the chat's limit too) but
        not stored: for a caller that stores it with something else in one transaction
        (a proposal). With `awaiting_approval` it is paused for an admin's approval, so it
        cannot fire before the approval resumes it."""
        now = self.clock.now()
        name = self.check_name(name)
        if schedule_id is not None:
            check_schedule_id(schedule_id)
        if trigger.timezone is None:
            # A schedule keeps the zone of the chat it was made in, whatever its kind.
            trigger = trigger.model_copy(update={"timezone": await self.chat_timezone(chat_id)})
        built = await self._with_upstream(chat_id, self.build_trigger(trigger, now), schedule_id)
        action = self.check_action(action)
        policies = check_backoff(policies or Policies())
        if await self.store.schedules.count_active(chat_id) >= self.limits.max_schedules_per_chat:
            raise InvalidSchedule(
                f"This chat already has {self.limits.max_schedules_per_chat} schedules, the "
                "limit; archive one with /delete first."
            )
        next_run = first_fire(built, now)
        if never_fires_after(built, now):
            raise never_fires()
        return Schedule(
            id=schedule_id or new_id(),
            chat_id=chat_id,
            name=name,
            description=description,
            trigger=built,
            action=action,
            policies=policies,
            owner=owner,
            enabled=not awaiting_approval,
            pause_reason=AWAITING_APPROVAL_REASON if awaiting_approval else None,
            pause_kind=PauseKind.AWAITING_APPROVAL if awaiting_approval else None,
            next_run_at=next_run,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )

    async def _with_upstream(self, chat_id: int, trigger: Trigger, own_id: str | None) -> Trigger:
        """An after trigger names a schedule of the chat as the operator typed it (`#3`,
        an id or its prefix): stored as that schedule's id, so renumbering never moves
        the chain; refused when no such schedule is active here, or it is the
        schedule itself (it would fire after its own runs, forever)."""
        if not isinstance(trigger, AfterTrigger):
            return trigger
        try:
            upstream = await self.get_schedule(chat_id, trigger.schedule)
        except ScheduleNotFound:
            raise InvalidSchedule(
                f"There is no schedule '{shown(trigger.schedule)}' in this chat to follow; "
                "/schedules lists them.",
                field="trigger.schedule",
            ) from None
        if upstream.id == own_id:
            raise InvalidSchedule(
                "A schedule cannot follow its own runs; name another schedule.",
                field="trigger.schedule",
            )
        # A follower of a follower of this one would close a loop that fires forever.
        link: Schedule | None = upstream
        for _ in range(_MAX_CHAIN):
            if link is None or not isinstance(link.trigger, AfterTrigger):
                break
            if link.trigger.schedule == own_id:
                raise InvalidSchedule(
                    f"That would make a loop: {upstream.ref} already runs after this "
                    "schedule (through its chain); name a schedule outside it.",
                    field="trigger.schedule",
                )
            link = await self.store.schedules.get(chat_id, link.trigger.schedule)
        return trigger.model_copy(update={"schedule": upstream.id})

    def _schedules_changed(self) -> None:
        self._followed.clear()
        self._on_change()

    async def _followed_in(self, chat_id: int) -> frozenset[str]:
        """The ids of the chat's schedules that an after schedule follows."""
        now = self.clock.monotonic()
        cached = self._followed.get(chat_id)
        if cached is not None and now - cached[0] < FOLLOWERS_TTL:
            return cached[1]
        followed = frozenset(
            s.trigger.schedule
            for s in await self.store.schedules.list_by_trigger({chat_id}, "after")
            # Paused ones too: a resume need not clear this; `_fire` checks who is active.
            if isinstance(s.trigger, AfterTrigger)
        )
        self._followed[chat_id] = (now, followed)
        return followed

    def changed(self) -> None:
        """Tell the engine schedules changed (a new or changed one is planned at once);
        for callers that wrote them through the store themselves."""
        self._schedules_changed()

    async def get_schedule(self, chat_id: int, ref: str) -> Schedule:
        """The chat's active schedule that `ref` names, as an operator may type it: its
        id, its number (`#3` or `3`), or a prefix of its id of at least
        MIN_ID_PREFIX characters (in any letter case) that no other schedule shares.
        Every service call that takes a schedule id resolves it here."""
        schedule = await self.store.schedules.get(chat_id, ref)
        if schedule is None:
            found: list[Schedule] = []
            number = _number(ref)
            if number is not None:
                found = await self.store.schedules.find(chat_id, number=number)
            elif len(ref) >= MIN_ID_PREFIX:
                found = await self.store.schedules.find(
                    chat_id, prefix=ref, limit=_AMBIGUOUS_SHOWN + 1
                )
                if len(found) > 1:
                    raise ScheduleNotFound(_ambiguous(ref, found))
            schedule = found[0] if found else None
        if schedule is None:
            raise _not_found(ref)
        _require_active(schedule, ref)
        return schedule

    async def list_schedules(self, chat_id: int) -> list[Schedule]:
        return await self.store.schedules.list_for_chat(chat_id)

    async def update_schedule(
        self,
        chat_id: int,
        schedule_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        trigger: TriggerSpec | None = None,
        action: Action | None = None,
        policies: Policies | None = None,
        timezone: str | None = None,
    ) -> Schedule:
        """Change what is given. `timezone` moves the schedule to another zone (see
        `with_zone`); a `trigger` without a zone keeps the schedule's."""
        now = self.clock.now()
        # Validate everything before touching the store, so bad input changes nothing.
        changes: dict[str, object] = {"updated_at": now}
        if name is not None:
            changes["name"] = self.check_name(name)
        if description is not None:
            changes["description"] = description
        if action is not None:
            changes["action"] = self.check_action(action)
        if policies is not None:
            changes["policies"] = check_backoff(policies)
        if timezone is not None:
            timezone = load_zone(timezone).key
        if trigger is not None:
            if trigger.timezone is None and timezone is None:
                current = await self.get_schedule(chat_id, schedule_id)
                trigger = trigger.model_copy(update={"timezone": current.timezone})
            elif timezone is not None:
                trigger = trigger.model_copy(update={"timezone": timezone})
            own = (await self.get_schedule(chat_id, schedule_id)).id
            built = await self._with_upstream(chat_id, self.build_trigger(trigger, now), own)
            next_run = first_fire(built, now)
            if never_fires_after(built, now):
                raise never_fires()
            changes["trigger"] = built
            changes["next_run_at"] = next_run

        def change(current: Schedule) -> ScheduleChange:
            _require_active(current, schedule_id)
            if (
                action is not None
                and current.action.kind is ActionKind.BUNDLE
                and action.kind is not ActionKind.BUNDLE
            ):
                # Its bundles name it as their template, in the ledger and in exports.
                raise InvalidSchedule(
                    f"'{current.name}' is a workflow template and stays one; archive it "
                    f"with /delete {current.ref} and create a new schedule instead.",
                    field="action.kind",
                )
            update = dict(changes)
            if timezone is not None and trigger is None:
                moved = with_zone(current.trigger, timezone)
                update["trigger"] = moved
                if isinstance(moved, CronTrigger):
                    update["next_run_at"] = first_fire(moved, now)
            return ScheduleChange(current.model_copy(update=update))

        updated = await self._modify(chat_id, schedule_id, change)
        self._schedules_changed()
        return updated

    async def change_setting(
        self, chat_id: int, schedule_id: str, name: str, value: str
    ) -> Schedule:
        """Set one policy, or a task's proof, assignee or instructions, from text (the
        names and values are in scheduler/policy_edits.py); InvalidSchedule with one
        sentence, and nothing changed, for a bad value."""
        setting = SETTINGS.get(name)
        if setting is None:
            raise InvalidSchedule(
                f"There is no setting '{shown(name)}'; the settings are {', '.join(SETTINGS)}."
            )
        if setting in POLICY_SETTINGS:
            # Refuse a bad value before opening a transaction.
            edit_policies(Policies(), name, value)
        now = self.clock.now()

        def change(current: Schedule) -> ScheduleChange:
            _require_active(current, schedule_id)
            if setting in POLICY_SETTINGS:
                update: dict[str, object] = {
                    "policies": check_backoff(edit_policies(current.policies, name, value))
                }
            else:
                update = {
                    "action": edit_action(
                        current.action,
                        name,
                        value,
                        max_instructions=self.limits.max_prompt_chars,
                    )
                }
            return ScheduleChange(current.model_copy(update={**update, "updated_at": now}))

        target = await self.get_schedule(chat_id, schedule_id)
        updated = await self._modify(chat_id, target.id, change)
        self._schedules_changed()
        return updated

    async def pause(
        self,
        chat_id: int,
        schedule_id: str,
        *,
        by: int | None,
        reason: str | None = None,
        kind: PauseKind = PauseKind.OPERATOR,
    ) -> Schedule:
        """Pause it for `kind` (an operator's, unless said otherwise); `reason` is the
        text shown."""
        current = await self.get_schedule(chat_id, schedule_id)
        if not current.enabled:
            raise InvalidState(f"'{current.name}' is already paused; /resume starts it again.")
        paused = await self.store.schedules.pause(
            chat_id, current.id, by=by, reason=reason, now=self.clock.now(), kind=kind
        )
        assert paused is not None
        self._schedules_changed()
        return paused

    async def resume(self, chat_id: int, schedule_id: str) -> Resumed:
        """Enable again from now on. Windows that passed while it was paused (or
        tripped) do not fire; they are recorded as skipped, so none vanishes. An agent's
        proposal that waits for an admin is resumed by that approval
        (`approval_change`), never by hand."""
        now = self.clock.now()
        passed = 0

        def change(current: Schedule) -> ScheduleChange:
            nonlocal passed
            _require_active(current, schedule_id)
            if current.enabled and not current.tripped:
                raise InvalidState(f"'{current.name}' is not paused.")
            if current.pause_kind is PauseKind.AWAITING_APPROVAL:
                raise InvalidState(_AWAITS_ADMIN)
            resumed, passed = _resumption(current, now)
            return resumed

        target = await self.get_schedule(chat_id, schedule_id)
        schedule = await self._modify(chat_id, target.id, change)
        self._schedules_changed()
        return Resumed(schedule, passed)

    # --- budgets (scheduler/budgets.py) -------------------------------------------------
    async def budget_choice(
        self,
        chat_id: int,
        schedule_id: str,
        choice: BudgetChoice,
        *,
        stamp: int,
        kind: BudgetKind,
        scope: BudgetScope = BudgetScope.SCHEDULE,
    ) -> BudgetAnswered:
        """An admin's answer to a budget notice: raise (the reached budget, the
        schedule's or its chat's, doubled; resumed), once (resumed with one run allowed
        past the budget) or keep (paused, nothing changed). `stamp` is the pause the
        notice announced (its `updated_at` in epoch seconds): a notice of an older
        pause, or a second press, changes nothing and is answered with InvalidState."""
        now = self.clock.now()
        prefs = await self.store.chats.get(chat_id)
        chat_limits = BudgetLimits(prefs.budget_runs_per_week, prefs.budget_tokens_per_week)
        new_limits: BudgetLimits | None = None

        def change(current: Schedule) -> ScheduleChange:
            nonlocal new_limits
            _require_active(current, schedule_id)
            if (
                current.enabled
                or current.pause_kind is not PauseKind.BUDGET
                or int(current.updated_at.timestamp()) != stamp
            ):
                raise InvalidState(
                    f"Already answered: '{current.name}' is "
                    f"{'paused' if not current.enabled else 'running'} as it is now."
                )
            if choice is BudgetChoice.KEEP:
                return ScheduleChange(current)
            policies = current.policies
            if choice is BudgetChoice.RAISE:
                own = scope is BudgetScope.SCHEDULE
                new_limits = doubled(limits_of(policies) if own else chat_limits, kind)
                if new_limits is None:
                    raise InvalidState(f"There is no {kind.value} budget to raise now.")
                if own:
                    policies = policies.model_copy(
                        update={
                            "budget_runs_per_week": new_limits.runs,
                            "budget_tokens_per_week": new_limits.tokens,
                        }
                    )
            resumed, _ = _resumption(current.model_copy(update={"policies": policies}), now)
            return ScheduleChange(
                resumed.schedule,
                resumed.new_runs,
                allowance=1 if choice is BudgetChoice.ONCE else None,
            )

        target = await self.get_schedule(chat_id, schedule_id)
        schedule = await self._modify(chat_id, target.id, change)
        if new_limits is not None and scope is BudgetScope.CHAT:
            # After the schedule's change, which refuses a second press: raised once.
            await self.store.chats.set_budget(chat_id, new_limits.runs, new_limits.tokens, now)
        if choice is not BudgetChoice.KEEP:
            self._schedules_changed()
        limit = None
        if new_limits is not None:
            limit = new_limits.runs if kind is BudgetKind.RUNS else new_limits.tokens
        return BudgetAnswered(schedule, limit)

    async def set_chat_budget(self, chat_id: int, runs: int | None, tokens: int | None) -> None:
        """The chat's own budget; InvalidSchedule for a number out of range."""
        for name, value, top in (("runs", runs, 100_000), ("tokens", tokens, 10_000_000_000)):
            if value is not None and not 1 <= value <= top:
                raise InvalidSchedule(f"A budget of {name} per week is 1 to {top:,}, or off.")
        await self.store.chats.set_budget(chat_id, runs, tokens, self.clock.now())

    async def budget_use(self, chat_id: int) -> tuple[ChatPrefs, UseReport, list[Schedule]]:
        """The chat's budget, its use per day/week/month (the chat's and each
        schedule's), and its schedules (for their names and budgets)."""
        now = self.clock.now()
        prefs = await self.store.chats.get(chat_id)
        rows = await self.store.chats.use_rows(chat_id, now - LONGEST)
        return prefs, use_report(rows, now), await self.list_schedules(chat_id)

    def approval_change(self, now: datetime) -> Callable[[Schedule], ScheduleChange]:
        """What approving a proposal does to its paused schedule, for the store to apply
        in the approval's own transaction: resumed from `now` on, as `resume` does (or
        left alone if it is active already). ScheduleNotFound if it was archived."""

        def change(current: Schedule) -> ScheduleChange:
            _require_active(current, current.id)
            if current.enabled and not current.tripped:
                return ScheduleChange(current)
            return _resumption(current, now)[0]

        return change

    async def _modify(
        self, chat_id: int, schedule_id: str, change: Callable[[Schedule], ScheduleChange]
    ) -> Schedule:
        updated = await self.store.schedules.modify(chat_id, schedule_id, change)
        if updated is None:
            raise _not_found(schedule_id)
        return updated

    async def archive(self, chat_id: int, schedule_id: str) -> Schedule:
        current = await self.get_schedule(chat_id, schedule_id)
        archived = await self.store.schedules.archive(chat_id, current.id, now=self.clock.now())
        assert archived is not None
        self._schedules_changed()
        return archived

    # --- backfill ------------------------------------------------------------------------
    async def backfill_preview(
        self, chat_id: int, schedule_id: str, start: datetime, end: datetime
    ) -> BackfillPreview:
        """The fires of the schedule's trigger within [start, end] (a past range), and how
        many of them already have a run. Changes nothing."""
        schedule = await self.get_schedule(chat_id, schedule_id)
        instants = self._backfill_instants(schedule, start, end)
        existing = await self._existing_instants(chat_id, schedule.id)
        return BackfillPreview(instants, sum(1 for t in instants if t in existing))

    async def backfill(
        self, chat_id: int, schedule_id: str, start: datetime, end: datetime
    ) -> tuple[int, int]:
        """Insert a pending BACKFILL run for each fire in [start, end] that has no run yet;
        returns (created, skipped because a run for that instant exists). Running it
        again creates nothing: the store refuses a second run for the same instant."""
        schedule = await self.get_schedule(chat_id, schedule_id)
        if not schedule.enabled and schedule.pause_kind is PauseKind.AWAITING_APPROVAL:
            raise InvalidState(_AWAITS_ADMIN)
        instants = self._backfill_instants(schedule, start, end)
        now = self.clock.now()
        created = 0
        for instant in instants:
            run_id = new_id()
            run = Run(
                id=run_id,
                schedule_id=schedule.id,
                chat_id=schedule.chat_id,
                scheduled_for=instant,
                trigger=RunTrigger.BACKFILL,
                status=RunStatus.PENDING,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                **first_step(schedule, run_id),
            )
            if await self.store.runs.add(run):
                created += 1
        if created:
            self._schedules_changed()
        return created, len(instants) - created

    def _backfill_instants(
        self, schedule: Schedule, start: datetime, end: datetime
    ) -> list[datetime]:
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidSchedule("Give the backfill range with a time zone or as dates.")
        if start >= end:
            raise InvalidSchedule("The backfill range must start before it ends.")
        if end > self.clock.now():
            raise InvalidSchedule("Backfill covers past windows only; end the range at now.")
        walk = schedule.trigger.fires(start - timedelta(microseconds=1))
        instants = list(
            itertools.islice(itertools.takewhile(lambda t: t <= end, walk), MAX_BACKFILL + 1)
        )
        if len(instants) > MAX_BACKFILL:
            raise InvalidSchedule(
                f"That range holds more than {MAX_BACKFILL} fires; pick a shorter one."
            )
        return instants

    async def _existing_instants(self, chat_id: int, schedule_id: str) -> set[datetime]:
        seen: set[datetime] = set()
        offset = 0
        while True:
            page = await self.store.runs.list_for_chat(
                chat_id, schedule_id=schedule_id, limit=1000, offset=offset
            )
            seen.update(r.scheduled_for for r in page)
            if len(page) < 1000:
                return seen
            offset += 1000

    # --- runs ----------------------------------------------------------------------------
    async def run_now(self, chat_id: int, schedule_id: str) -> Run:
        return (await self.request_run(chat_id, schedule_id)).run

    async def request_run(self, chat_id: int, schedule_id: str) -> RunRequested:
        """One extra (manual) run, now; and the run it waits behind, if the schedule is
        running one and its overlap policy does not allow two at once."""
        schedule = await self.get_schedule(chat_id, schedule_id)
        if not schedule.enabled and schedule.pause_kind is PauseKind.AWAITING_APPROVAL:
            raise InvalidState(_AWAITS_ADMIN)
        behind = None
        if schedule.policies.overlap is not OverlapPolicy.ALLOW:
            running = await self.store.runs.list_for_chat(
                chat_id, schedule_id=schedule.id, statuses=[RunStatus.RUNNING], limit=1
            )
            behind = running[0] if running else None
        run = manual_run(schedule, self.clock.now())
        if not await self.store.runs.add(run):
            raise InvalidState("A run for this very instant exists already; try again.")
        self._schedules_changed()
        return RunRequested(schedule, run, behind)

    async def emit_event(
        self,
        chat_ids: Collection[int],
        name: str,
        payload: object = None,
        *,
        caller: str,
        idempotency_key: str | None = None,
    ) -> EmittedEvent:
        """Fire every active schedule of `chat_ids` listening to the event `name`: one
        run each, now, whose prompt's {event} is `payload` (a JSON object). A repeat of
        `caller`'s `idempotency_key` answers with the runs of the first, writing nothing;
        without a key every call is a new event. The one way in for the HTTP API and the
        agent's emit_event; InvalidSchedule with one sentence for bad input."""
        name = check_event_name(name, field="name")
        body = _event_payload(payload)
        if idempotency_key is not None:
            idempotency_key = _event_key(idempotency_key)
        return await self._fire(
            chat_ids, "event", name, body, caller, idempotency_key, lambda s: _listens(s, name)
        )

    async def fire_startup(self, chat_ids: Collection[int], instance_id: str) -> EmittedEvent:
        """Fire the active startup schedules of `chat_ids`, once for the engine
        `instance_id` (a process start): a repeat for the same instance fires nothing."""
        return await self._fire(
            chat_ids,
            "startup",
            "startup",
            {"instance": instance_id},
            "startup",
            instance_id,
            lambda s: isinstance(s.trigger, StartupTrigger) and _active(s),
            record_empty=False,
        )

    async def fire_after(self, run: Run, schedule: Schedule) -> EmittedEvent | None:
        """Fire the active schedules of the run's chat that follow `schedule` on the
        run's outcome (succeeded: success; dead: failure; both: any), once per upstream
        run and outcome; None when the run's status is no outcome (pending, retrying)."""
        if run.status is RunStatus.SUCCEEDED:
            outcome = "success"
        elif run.status is RunStatus.DEAD:
            outcome = "failure"
        else:
            return None
        if schedule.id not in await self._followed_in(run.chat_id):
            return None
        place = plan_step(run, schedule)
        if (
            place is not None
            and not place.last
            and (run.status is RunStatus.SUCCEEDED or place.step.continue_on_failure)
        ):
            # A plan's step the plan goes on from: its followers fire when the plan
            # run ends (its last step, or the failed step that stopped it).
            return None
        payload: dict[str, object] = {
            "schedule_id": schedule.id,
            "schedule_name": schedule.name,
            "run_id": run.id,
            "status": run.status.value,
            "output": (run.output or "")[:_CHAINED_OUTPUT_CHARS],
            "error": run.error,
        }

        def follows(candidate: Schedule) -> bool:
            trigger = candidate.trigger
            return (
                isinstance(trigger, AfterTrigger)
                and trigger.schedule == schedule.id
                and trigger.on in (outcome, "any")
                and candidate.id != schedule.id
                and _active(candidate)
            )

        return await self._fire(
            [run.chat_id],
            "after",
            "after",
            payload,
            "after",
            f"{run.id}:{outcome}",
            follows,
            record_empty=False,
        )

    async def _fire(
        self,
        chat_ids: Collection[int],
        kind: str,
        name: str,
        body: dict[str, object],
        caller: str,
        idempotency_key: str | None,
        fires: Callable[[Schedule], bool],
        *,
        record_empty: bool = True,
    ) -> EmittedEvent:
        """One run per schedule of `chat_ids` with a `kind` trigger that `fires`,
        recorded with the event
        (`caller`'s `idempotency_key`: a repeat answers with the first runs). Without
        `record_empty`, an event that fires nothing is not written: every start and
        every finished run is one, and most have no listener."""
        # A posted event's repeat answers before its listeners are read. A lifecycle fire
        # (one per finished run) reads them first: most have none, and then it writes
        # nothing, so looking for its key would be a read per run for nothing; a repeat
        # that has listeners is answered by `events.add`.
        if idempotency_key is not None and record_empty:
            found = await self.store.events.find(caller, idempotency_key)
            if found is not None:
                return _same_event(found, name)
        now = self.clock.now()
        event = Event(
            id=new_id(),
            caller=caller,
            name=name,
            idempotency_key=idempotency_key,
            payload=body,
            received_at=now,
        )
        listeners = [
            schedule
            for schedule in await self.store.schedules.list_by_trigger(set(chat_ids), kind)
            if fires(schedule)
        ]
        if not listeners and not record_empty:
            return EmittedEvent(event=event, runs=[])
        emitted, over_budget = await self.store.events.add(
            event, [(s, event_run(s, now)) for s in listeners]
        )
        if emitted.repeated:
            return _same_event(emitted, name)
        if emitted.runs:
            self._schedules_changed()
        asking = [r for r in emitted.runs if r.status is RunStatus.AWAITING_APPROVAL]
        if asking and self._on_approval_asked is not None:
            await self._on_approval_asked(asking)
        if over_budget and self._on_over_budget is not None:
            await self._on_over_budget(over_budget)
        return emitted

    async def history(
        self, chat_id: int, schedule_id: str | None = None, *, limit: int = 20, offset: int = 0
    ) -> list[Run]:
        if schedule_id is not None:
            schedule_id = (await self.get_schedule(chat_id, schedule_id)).id
        return await self.store.runs.list_for_chat(
            chat_id, schedule_id=schedule_id, limit=limit, offset=offset
        )

    async def dead_letters(self, chat_id: int, *, limit: int = 20, offset: int = 0) -> list[Run]:
        return await self.store.runs.list_for_chat(
            chat_id, statuses=[RunStatus.DEAD, RunStatus.UNKNOWN], limit=limit, offset=offset
        )

    async def get_run(self, chat_id: int, run_id: str) -> Run:
        run = await self.store.runs.get(chat_id, run_id)
        if run is None:
            raise RunNotFound(f"There is no run '{shown(run_id)}' here; /history lists them.")
        return run

    async def report_result(self, chat_id: int, run_id: str, data: object) -> Run:
        """An agent's result for a run it accepted with a 202 (decoded JSON `data`):
        checked first (one sentence, nothing changed), then applied once; a second
        report, or one for a run not awaiting it, is InvalidState."""
        report = check_report(data)
        run = await self.get_run(chat_id, run_id)
        if self._on_result is None:
            raise InvalidState("Results cannot be reported here: no engine is running.")
        if not run.awaiting_result:
            raise InvalidState(
                f"The run '{shown(run_id)}' is {run.status.value}, not awaiting a result; "
                "it was reported or ended already."
            )
        return await self._on_result(chat_id, run.id, report)

    async def run_detail(self, chat_id: int, run_id: str) -> RunDetail:
        """A run with its finished attempts and its schedule (archived ones too)."""
        run = await self.get_run(chat_id, run_id)
        attempts = await self.store.runs.attempts(chat_id, run.id)
        schedule = await self.store.schedules.get(chat_id, run.schedule_id)
        return RunDetail(run, attempts, schedule)

    async def retry(self, chat_id: int, run_id: str) -> Run:
        """Send a dead (or uncertain) run again, with the same idempotency key."""
        run = await self.get_run(chat_id, run_id)
        now = self.clock.now()
        updated = await self.store.runs.transition(
            chat_id,
            run_id,
            expected=[RunStatus.DEAD, RunStatus.UNKNOWN],
            changes={
                "status": RunStatus.PENDING,
                "trigger": RunTrigger.RETRY,
                # A fresh budget of attempts, and of interruptions.
                "attempt": 0,
                "interruptions": 0,
                "next_attempt_at": now,
                "finished_at": None,
            },
            now=now,
        )
        if updated is None:
            raise InvalidState(f"That run is {run.status.value}; only dead runs can be retried.")
        self._schedules_changed()
        return updated

    async def mark_done(self, chat_id: int, run_id: str) -> Run:
        """The operator confirms an uncertain run did its work."""
        return await self._settle(
            chat_id,
            run_id,
            [RunStatus.UNKNOWN],
            RunStatus.SUCCEEDED,
            "marked done by operator",
            None,
        )

    async def drop(self, chat_id: int, run_id: str) -> Run:
        return await self._settle(
            chat_id,
            run_id,
            [RunStatus.UNKNOWN, RunStatus.DEAD, RunStatus.AWAITING_APPROVAL],
            RunStatus.CANCELLED,
            "dropped by operator",
            SkipReason.OPERATOR,
        )

    async def approve_run(self, chat_id: int, run_id: str) -> Run:
        run = await self.get_run(chat_id, run_id)
        now = self.clock.now()
        deadline = run.next_attempt_at
        if run.status is RunStatus.AWAITING_APPROVAL and deadline is not None and deadline <= now:
            # Too late, even if the engine has not skipped it yet: the deadline is the
            # schedule's next fire, and approving now could run two windows at once.
            await self.store.runs.transition(
                chat_id,
                run_id,
                expected=[RunStatus.AWAITING_APPROVAL],
                changes={
                    "status": RunStatus.SKIPPED,
                    "finished_at": now,
                    "error": APPROVAL_DEADLINE_REASON,
                    "skip_reason": SkipReason.APPROVAL_DEADLINE,
                    "next_attempt_at": None,
                },
                now=now,
            )
            raise InvalidState("That run is already skipped: its approval deadline passed.")
        updated = await self.store.runs.transition(
            chat_id,
            run_id,
            expected=[RunStatus.AWAITING_APPROVAL],
            changes={"status": RunStatus.PENDING, "next_attempt_at": now},
            now=now,
        )
        if updated is None:
            raise InvalidState(f"That run is already {run.status.value}.")
        self._schedules_changed()
        return updated

    async def skip_run(self, chat_id: int, run_id: str) -> Run:
        return await self._settle(
            chat_id,
            run_id,
            [RunStatus.AWAITING_APPROVAL],
            RunStatus.SKIPPED,
            "skipped: approval rejected",
            SkipReason.REJECTED,
        )

    async def _settle(
        self,
        chat_id: int,
        run_id: str,
        expected: list[RunStatus],
        status: RunStatus,
        note: str,
        reason: SkipReason | None,
    ) -> Run:
        run = await self.get_run(chat_id, run_id)
        now = self.clock.now()
        updated = await self.store.runs.transition(
            chat_id,
            run_id,
            expected=expected,
            changes={
                "status": status,
                "finished_at": now,
                "error": note,
                "skip_reason": reason,
                "next_attempt_at": None,
            },
            now=now,
        )
        if updated is None:
            raise InvalidState(f"That run is already {run.status.value}.")
        if updated.plan_run_id is not None:
            # A plan's step marked done starts the next one.
            self._schedules_changed()
        return updated

    async def settle_missed(
        self,
        chat_id: int,
        schedule_id: str,
        first: datetime,
        last: datetime,
        choice: Literal["latest", "all", "skip"],
    ) -> int:
        """The operator's answer to "N fires missed while offline", overriding the
        missed-run policy the engine already applied to the schedule's fires within
        [first, last]: run the latest, run all (the newest `catch_up_cap` of them) or
        skip them. Each change is a guarded transition, so a second press changes
        nothing. Returns how many runs changed."""
        schedule = await self.get_schedule(chat_id, schedule_id)
        if choice != "skip" and (schedule.tripped or not schedule.enabled):
            raise InvalidState(
                f"'{schedule.name}' is paused; resume it with /resume {schedule.ref} first."
            )
        now = self.clock.now()
        runs = await self.store.runs.list_for_chat(chat_id, schedule_id=schedule.id, limit=1000)
        # The schedule's own fires in the window, newest first (as `list_for_chat` gives them).
        window = [
            r
            for r in runs
            if first <= r.scheduled_for <= last
            and r.trigger in (RunTrigger.SCHEDULE, RunTrigger.CATCH_UP)
        ]

        def missed(run: Run) -> bool:
            """Recorded as skipped because it was missed (not paused, not overlapping)."""
            return run.status is RunStatus.SKIPPED and run.skip_reason in (
                SkipReason.MISSED,
                SkipReason.MISSED_BY_OPERATOR,
            )

        waiting = [RunStatus.PENDING, RunStatus.AWAITING_APPROVAL]
        if choice == "skip":
            targets = [
                r for r in window if r.trigger is RunTrigger.CATCH_UP and r.status in waiting
            ]
            expected = waiting
            changes: dict[str, object] = {
                "status": RunStatus.SKIPPED,
                "finished_at": now,
                "error": "missed: skipped by the operator",
                "skip_reason": SkipReason.MISSED_BY_OPERATOR,
            }
        else:
            keep = 1 if choice == "latest" else schedule.policies.catch_up_cap
            targets = [r for r in window[:keep] if missed(r)]
            expected = [RunStatus.SKIPPED]
            changes = {
                "status": RunStatus.PENDING,
                "trigger": RunTrigger.CATCH_UP,
                "next_attempt_at": now,
                "finished_at": None,
                "error": None,
                "skip_reason": None,
            }
        changed = 0
        for run in targets:
            if await self.store.runs.transition(
                chat_id, run.id, expected=expected, changes=changes, now=now
            ):
                changed += 1
        if changed and choice != "skip":
            self._schedules_changed()
        return changed


_AWAITS_ADMIN = (
    "It is an agent's proposal waiting for an admin; approve it with the proposal's "
    "Approve button first."
)


#: The most fires one backfill may create.
MAX_BACKFILL = 1000


@dataclass(frozen=True)
class BackfillPreview:
    #: The fire instants in the range, oldest first.
    instants: list[datetime]
    #: How many of them already have a run (a backfill leaves those alone).
    existing: int

    @property
    def missing(self) -> int:
        return len(self.instants) - self.existing


@dataclass(frozen=True)
class RunDetail:
    run: Run
    #: Its finished attempts, oldest first.
    attempts: list[Attempt]
    #: None only if the schedule is gone from the database (never, today).
    schedule: Schedule | None


@dataclass(frozen=True)
class RunRequested:
    schedule: Schedule
    #: The new manual run (pending).
    run: Run
    #: The schedule's run that is running now; the new one starts when it finishes.
    behind: Run | None


@dataclass(frozen=True)
class Resumed:
    schedule: Schedule
    #: Fire instants that passed while paused, now recorded as skipped.
    skipped_while_paused: int


#: The shortest id prefix accepted for a schedule (shorter ones are too likely shared).
MIN_ID_PREFIX = 4
#: How many of the schedules an ambiguous prefix matches the refusal names.
_AMBIGUOUS_SHOWN = 5


#: The largest event payload, as compact JSON (a prompt carries it to the agent).
MAX_EVENT_PAYLOAD_CHARS = 8000
_EVENT_KEY = re.compile(r"[\x21-\x7e]{1,200}")


def _event_payload(payload: object) -> dict[str, object]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidSchedule(
            'The event\'s payload must be a JSON object, like {"version": "1.4"}.',
            field="payload",
        )
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    if size > MAX_EVENT_PAYLOAD_CHARS:
        raise InvalidSchedule(
            f"The event's payload is {size} characters as JSON; the limit is "
            f"{MAX_EVENT_PAYLOAD_CHARS}.",
            field="payload",
        )
    return payload


def _event_key(key: str) -> str:
    if not _EVENT_KEY.fullmatch(key):
        raise InvalidSchedule(
            "The Idempotency-Key must be 1 to 200 printable ASCII characters without spaces.",
            field="idempotency_key",
        )
    return key


def _same_event(found: EmittedEvent, name: str) -> EmittedEvent:
    """A repeat of an idempotency key: the same event again, or a conflict."""
    if found.event.name != name:
        raise InvalidState(
            f"That Idempotency-Key was used for the event '{found.event.name}'; use a new "
            "key for a new event."
        )
    return found


def _listens(schedule: Schedule, name: str) -> bool:
    """Active and listening to the event `name`."""
    trigger = schedule.trigger
    return isinstance(trigger, EventTrigger) and trigger.name == name and _active(schedule)


def _active(schedule: Schedule) -> bool:
    """Not paused, archived or tripped: it may fire."""
    return schedule.enabled and schedule.archived_at is None and not schedule.tripped


#: Seconds a chat's list of followed schedules is trusted before it is read again.
FOLLOWERS_TTL = 30.0
#: How far back a chain of after schedules is walked looking for a loop.
_MAX_CHAIN = 100
#: How much of an upstream run's output a chained run's {event} carries.
_CHAINED_OUTPUT_CHARS = 2000


class LifecycleFires:
    """The engine's lifecycle hooks (scheduler/engine.py, `Lifecycle`) as the service's
    startup and after fires, for the chats this process serves."""

    def __init__(
        self,
        service: ScheduleService,
        chat_ids: Collection[int],
        *,
        step_finished: Callable[[Run, Schedule], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.chat_ids = frozenset(chat_ids)
        # A bundle's prompt step ended (scheduler/bundles.py, BundleService.step_finished).
        self._step_finished = step_finished

    async def started(self, instance_id: str) -> None:
        await self.service.fire_startup(self.chat_ids, instance_id)

    async def finished(self, run: Run, schedule: Schedule) -> None:
        await self.service.fire_after(run, schedule)
        if self._step_finished is not None:
            await self._step_finished(run, schedule)


def _number(ref: str) -> int | None:
    """3 for `#3` or `3`; None for anything else."""
    digits = ref.removeprefix("#")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 9:
        return None
    return int(digits)


def _ambiguous(ref: str, found: list[Schedule]) -> str:
    names = ", ".join(f"{s.ref} {s.name} ({s.id})" for s in found[:_AMBIGUOUS_SHOWN])
    more = " and more" if len(found) > _AMBIGUOUS_SHOWN else ""
    return (
        f"'{shown(ref)}' matches more than one schedule ({names}{more}); "
        "type more of the id, or the number."
    )


def _not_found(schedule_id: str) -> ScheduleNotFound:
    return ScheduleNotFound(
        f"There is no schedule '{shown(schedule_id)}' here; /schedules lists them."
    )


def _resumption(current: Schedule, now: datetime) -> tuple[ScheduleChange, int]:
    """`current` enabled again from `now` on, the fires that passed while it was paused
    (or tripped) recorded as skipped; and how many passed."""
    kind, reason = (
        (SkipReason.TRIPPED, "circuit breaker tripped")
        if current.tripped
        else (SkipReason.PAUSED, "schedule was paused")
    )
    next_run = current.next_run_at
    skipped: list[Run] = []
    passed = 0
    if next_run is not None and next_run <= now:
        window = walk_fires(current.trigger, next_run, now, MAX_RECORDED_MISSES)
        passed = window.total
        skipped = [skipped_run(current, t, reason, now, kind) for t in window.instants]
        next_run = window.next_after
    resumed = current.model_copy(
        update={
            "enabled": True,
            "tripped": False,
            "consecutive_failures": 0,
            "paused_by": None,
            "pause_reason": None,
            "pause_kind": None,
            "next_run_at": next_run,
            "updated_at": now,
        }
    )
    return ScheduleChange(resumed, skipped), passed


@dataclass(frozen=True)
class BudgetAnswered:
    """What a budget notice's button did: the schedule as it is now, and the raised
    budget (None unless raised)."""

    schedule: Schedule
    limit: int | None = None


class BudgetChoice(StrEnum):
    """The buttons of a budget notice."""

    RAISE = "raise"  # the reached budget doubled, and resumed
    ONCE = "once"  # resumed with one run allowed past the budget
    KEEP = "keep"  # left paused


def _require_active(schedule: Schedule, schedule_id: str) -> None:
    if schedule.archived_at is not None:
        raise _not_found(schedule_id)


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} seconds"
