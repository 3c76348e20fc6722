"""The agent stub's answers, scripted per schedule, with a record of every delivery and
whether it was answered.

    agent = ScriptedAgent()
    agent.assign(schedule.id, fail_first(1))      # 500 on the first delivery of each key
    agent.assign(slow.id, answer_after(0.5))
    stub.respond_with(agent)

A delivery whose answer never left (the process was killed or stopped, or gave up
waiting, while the agent was still "working") stays `answered=False`: the ledger check
allows a key to come again after such a delivery, and only then.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.demo_kit.agent_stub import HANG, Behaviour, RecordedRequest, Reply
from bot.demo_kit.agent_stub import openai_completion as completion

__all__ = [
    "Answer",
    "Delivery",
    "Rule",
    "ScriptedAgent",
    "always",
    "answer_after",
    "fail_first",
    "hang_first",
]

#: (seconds to "work" before answering, the answer). HANG: never answer.
Answer = tuple[float, Behaviour]
#: The answer to the n-th delivery (0-based) of one idempotency key.
Rule = Callable[[int, RecordedRequest], Answer]


@dataclass
class Delivery:
    key: str
    schedule_id: str
    #: True once the answer was handed to the stub's HTTP server.
    answered: bool = False
    status: int | None = None
    #: time.monotonic() when the request arrived and when it was answered.
    received_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None
    #: The run it was sent for (X-Tickler-Run-Id): one fire, one run, whoever sent it.
    run_id: str = ""


def _echo(request: RecordedRequest, status: int = 200) -> Reply:
    """A success whose text names the idempotency key (openai mode shows it in the chat)."""
    key = request.headers.get("idempotency-key", "")
    if request.path.endswith("/chat/completions"):
        return Reply(status, json=completion(f"Done: {key}"))
    return Reply(status)


def always(status: int = 200) -> Rule:
    return lambda n, req: (0.0, _echo(req, status) if status == 200 else Reply(status))


def answer_after(low: float, high: float | None = None) -> Rule:
    """Succeed after working `low` (to `high`, at random) seconds."""
    return lambda n, req: (random.uniform(low, high or low), _echo(req))


def fail_first(failures: int, status: int = 500) -> Rule:
    """Answer `status` to the first `failures` deliveries of each key, then succeed."""
    return lambda n, req: (0.0, Reply(status) if n < failures else _echo(req))


def hang_first(hangs: int = 1) -> Rule:
    """Never answer the first `hangs` deliveries of each key, then succeed."""
    return lambda n, req: (0.0, HANG if n < hangs else _echo(req))


@dataclass
class ScriptedAgent:
    default: Rule = field(default_factory=always)
    rules: dict[str, Rule] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    _seen: Counter[str] = field(default_factory=Counter)

    def assign(self, schedule_id: str, rule: Rule) -> None:
        self.rules[schedule_id] = rule

    def by_key(self) -> dict[str, list[Delivery]]:
        out: dict[str, list[Delivery]] = {}
        for d in self.deliveries:
            out.setdefault(d.key, []).append(d)
        return out

    async def __call__(self, request: RecordedRequest) -> Behaviour:
        key = request.headers.get("idempotency-key", "")
        sid = request.headers.get("x-tickler-schedule-id", "")
        delivery = Delivery(key, sid, run_id=request.headers.get("x-tickler-run-id", ""))
        self.deliveries.append(delivery)
        nth = self._seen[key]
        self._seen[key] += 1
        delay, answer = self.rules.get(sid, self.default)(nth, request)
        if answer is HANG:
            await asyncio.Event().wait()  # until the client goes away
        if delay:
            await asyncio.sleep(delay)  # cancelled if the client goes away first
        delivery.answered = True
        delivery.answered_at = time.monotonic()
        delivery.status = answer.status if isinstance(answer, Reply) else None
        return answer
