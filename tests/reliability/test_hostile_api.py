"""Hostile input to the HTTP API (/api/v1 of the real bot, over a real socket):
hypothesis-generated JSON bodies (random objects, wrong types, huge strings, unicode,
proposals with one field made hostile), broken bytes, and hostile path and query
values.

Every answer is 2xx with a valid stored object, or 4xx with a JSON `{"error",
"field"}` whose error is one sentence and whose field names the part of the request
at fault; never a 500. Whatever the answers, nothing is half-stored: every proposal and
its schedule agree (refused: no schedule; low: active schedule; medium: paused until
approved; high: no schedule until approved).

An unexpected exception (a bug) is a JSON 500 with one sentence and a log line
without secrets, not aiohttp's plain-text page.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.http_api import MAX_BODY_BYTES
from scheduler.models import AWAITING_APPROVAL_REASON, CreatedBy, RiskTier
from scheduler.proposals import Proposal, ProposalRequest, ProposalStatus
from tests.reliability.figures import tally
from tests.reliability.hostile import NASTY, hostile_text, schedule_problems, sentence_problem

TOKEN = "tk_hostile_5d1c9e0b7a2f4e6d8c3b1a0f9e8d7c6b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

API = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

VALID = {
    "name": "Weekly review",
    "trigger": {"kind": "cron", "cron": "0 17 * * 5"},
    "action": {"text": "Prepare my weekly review for {date}."},
    "reason": "You asked for a Friday recap.",
}
#: Where a hostile value may go in an otherwise valid proposal.
PATHS = [
    ("name",),
    ("trigger",),
    ("trigger", "kind"),
    ("trigger", "cron"),
    ("trigger", "timezone"),
    ("trigger", "every_seconds"),
    ("trigger", "start_at"),
    ("trigger", "at"),
    ("action",),
    ("action", "kind"),
    ("action", "text"),
    ("action", "template"),
    ("action", "proof"),
    ("policies",),
    ("policies", "retry"),
    ("policies", "catch_up_cap"),
    ("reason",),
    ("risk_hint",),
    ("surprise",),
    ("trigger", "surprise"),
]
#: The request's top-level fields: a 422's `field` starts with one of them.
FIELDS = set(ProposalRequest.model_fields)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Api:
    bot: BotHarness
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, str]:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        async with self.http.request(method, path, headers=headers, **kwargs) as response:
            text = await response.text()
            body = json.loads(text) if response.content_type == "application/json" else None
            return response.status, body, response.content_type


@pytest_asyncio.fixture
async def api(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[Api]:
    port = free_port()
    harness = await start_bot(
        telegram_server,
        agent_stub,
        tmp_path / "bot.db",
        http_port=port,
        api_token=TOKEN,
        # Hypothesis sends hundreds of requests a second; the rate limit has its own tests.
        api_rate_per_second=100_000,
        api_rate_burst=100_000,
    )
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield Api(harness, http)
    finally:
        await stop_bot(harness)


def check_answer(status: int, body: Any, content_type: str, what: str) -> None:
    """2xx, or 4xx with a one-sentence JSON error; never a 5xx."""
    assert status < 500, f"{what}: {status} {body}"
    assert content_type == "application/json", f"{what}: {status} is {content_type}"
    if status >= 400:
        assert set(body) == {"error", "field"}, body
        problem = sentence_problem(body["error"])
        assert problem is None, f"{what}: error is not one sentence ({problem}): {body}"


async def half_stored(api: Api) -> list[str]:
    """Proposals and schedules that disagree (see the module docstring)."""
    store = api.bot.services.store
    proposals = await store.proposals.list_for_chat(ALICE, limit=10_000)
    schedules = {s.id: s for s in await store.schedules.list_for_chat(ALICE)}
    problems = schedule_problems(schedules.values(), api.bot.services.service.limits)
    for p in proposals:
        schedule = schedules.get(p.schedule_id) if p.schedule_id else None
        where = f"proposal {p.id} ({p.status.value}, {p.tier.value})"
        if p.status is ProposalStatus.REFUSED:
            if p.schedule_id is not None or not p.refusal:
                problems.append(f"{where}: refused with a schedule or without a reason")
        elif p.status is ProposalStatus.ACTIVE:
            if schedule is None or not schedule.enabled or schedule.archived_at is not None:
                problems.append(f"{where}: active without an active schedule")
        elif p.status is ProposalStatus.PENDING and p.tier is RiskTier.HIGH:
            if p.schedule_id is not None or p.expires_at is None:
                problems.append(f"{where}: high and pending, yet a schedule or no expiry")
        elif p.status is ProposalStatus.PENDING and (
            schedule is None
            or schedule.enabled
            or schedule.pause_reason != AWAITING_APPROVAL_REASON
        ):
            problems.append(f"{where}: medium and pending without a paused schedule")
    by_agent = [s for s in schedules.values() if s.created_by is CreatedBy.AGENT]
    claimed = {p.schedule_id for p in proposals if p.schedule_id}
    problems += [
        f"schedule {s.id} made by the agent without a proposal"
        for s in by_agent
        if s.id not in claimed
    ]
    return problems


# --- bodies -------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.sampled_from(NASTY),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile_values = st.one_of(
    json_values,
    hostile_text(20_000),
    st.sampled_from(
        [
            "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00-12:00",
            "2026-11-23T07:00:00",
            "2026-13-45T99:99:99Z",
            10**20,
            -1,
            0,
            59,
            1.5,
            True,
            "interval",
            "once",
            "high",
            "reminder",
            "task",
            "link",
            "daily_brief",
            "../../etc/passwd",
        ]
    ),
)


def _set(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(body))
    node = out
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return out


proposal_bodies = st.one_of(
    st.builds(
        _set,
        st.just(VALID),
        st.sampled_from(PATHS),
        hostile_values,
    ),
    st.builds(
        lambda body, more: _set(body, more[0], more[1]),
        st.builds(_set, st.just(VALID), st.sampled_from(PATHS), hostile_values),
        st.tuples(st.sampled_from(PATHS), hostile_values),
    ),
    json_values,
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.just(b"\xff\xfe{}"),
    st.just(b'{"name": "x", '),
    st.just(json.dumps({**VALID, "name": "x" * (MAX_BODY_BYTES + 1)}).encode()),
    st.just(b"[" * 100_000),
)


@API
@given(body=proposal_bodies)
@example(body=_set(VALID, ("trigger", "timezone"), "x" * 20_000))
@example(body=_set(VALID, ("trigger", "cron"), "x" * 20_000))
@example(body=_set(VALID, ("action", "text"), "{schedule.__class__}"))
@example(body=_set(VALID, ("action", "template"), "\u202e" * 3000))
@example(body=_set(VALID, ("action", "text"), "{" + "x" * 3000 + "}"))
@example(body=_set(VALID, ("trigger",), {"kind": "interval", "every_seconds": 10**20}))
@example(body=_set(VALID, ("trigger",), {"kind": "once", "at": "9999-12-31T23:59:59-12:00"}))
async def test_hostile_proposal_bodies(api: Api, body: Any) -> None:
    tally.add("inputs tried")
    schedules_before = len(await api.bot.services.store.schedules.list_for_chat(ALICE))
    status, answer, content_type = await api.call(
        "POST", f"/api/v1/chats/{ALICE}/proposals", json=body
    )
    check_answer(status, answer, content_type, json.dumps(body)[:200])
    if status == 201:
        proposal = Proposal.model_validate(answer)
        assert await api.bot.services.store.proposals.get(ALICE, proposal.id) == proposal
        tally.add("inputs stored, valid")
    else:
        tally.add("inputs refused, nothing stored")
        assert len(await api.bot.services.store.schedules.list_for_chat(ALICE)) == schedules_before
        if status == 422 and answer["field"] is None:
            # No single field to name: the JSON itself, the body's shape, or a chat limit.
            assert answer["error"].startswith(("Malformed JSON", "Invalid body", "This chat")) or (
                not isinstance(body, dict)
            ), answer
        elif status == 422:
            # A field of the request, or the unknown key it was sent with.
            first = answer["field"].split(".")[0]
            assert first in FIELDS or (isinstance(body, dict) and first in body), answer
    assert await half_stored(api) == []


@API
@given(raw=raw_bodies)
async def test_broken_bytes_are_a_422_or_413(api: Api, raw: bytes) -> None:
    tally.add("inputs tried")
    status, answer, content_type = await api.call(
        "POST",
        f"/api/v1/chats/{ALICE}/proposals",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    check_answer(status, answer, content_type, repr(raw[:80]))
    assert status in (201, 413, 422), (status, answer)
    assert await half_stored(api) == []


path_values = st.one_of(hostile_text(300), st.sampled_from(NASTY), st.text(min_size=1, max_size=40))


@API
@given(
    sid=path_values,
    action=st.sampled_from(["pause", "resume", "archive", "run"]),
    body=st.one_of(st.none(), json_values),
    query=st.dictionaries(
        st.sampled_from(["schedule_id", "limit", "x"]),
        st.one_of(path_values, st.integers().map(str)),
        max_size=3,
    ),
)
async def test_hostile_paths_and_queries(
    api: Api, sid: str, action: str, body: Any, query: dict[str, str]
) -> None:
    tally.add("inputs tried")
    store = api.bot.services.store
    before = await store.schedules.list_for_chat(ALICE)
    path = f"/api/v1/chats/{ALICE}/schedules/{quote(sid, safe='')}/{action}"
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    status, answer, content_type = await api.call("POST", path, **kwargs)
    check_answer(status, answer, content_type, path[:200])
    # None of Alice's schedules has such an id: nothing can have changed.
    assert status in (404, 405, 422), (status, answer)
    assert await store.schedules.list_for_chat(ALICE) == before
    status, answer, content_type = await api.call(
        "GET", f"/api/v1/chats/{ALICE}/runs", params=query
    )
    check_answer(status, answer, content_type, repr(query)[:200])


async def test_an_unexpected_error_is_a_json_500_and_a_log_line_without_secrets(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injected: the store fails in a way no handler expects."""
    caplog.set_level(logging.DEBUG)
    service = api.bot.services.service

    async def broken(chat_id: int) -> list[Any]:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(service, "list_schedules", broken)
    tally.add("faults injected")
    status, answer, content_type = await api.call("GET", f"/api/v1/chats/{ALICE}/schedules")
    assert status == 500
    assert content_type == "application/json"
    assert answer == {"error": "Something went wrong on our side; try again later.", "field": None}
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in logged] == [
        f"unexpected error answering GET /api/v1/chats/{ALICE}/schedules"
    ]
    assert TOKEN not in caplog.text
    # The API keeps answering.
    monkeypatch.undo()
    status, answer, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/schedules")
    assert status == 200 and answer == {"schedules": []}
