"""Notification sinks as a receiver meets them (docs/notification-sinks.md): a loopback
webhook receiver verifies the HMAC and timestamp of every notice and refuses a replayed
one; a receiver down for 10 minutes gets every notice afterwards, in order, once, while
the chat kept receiving; an SMTP server (aiosmtpd) gets the failure mail with the right
subject and no secret; the export carries no sink secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import ClientSession, web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from adapters.clocks import FakeClock
from bot import sinks as sinks_module
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.sinks import slack_blocks
from scheduler.models import Action, Owner, Policies, RetryPolicy
from scheduler.service import TriggerSpec
from scheduler.sinks import Delivery
from storage.export import export_files
from tests.test_http_api import TOKEN, Api, _serve

NINE_BERLIN = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
SMTP_PASSWORD = "smtp-pass-5d2a4c6e8f0b1d3a"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/slacksecretslacksecret"


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            got = check()
            if not isinstance(got, bool):
                got = await got
            if got:
                return
            await asyncio.sleep(0.02)


@dataclass
class Receiver:
    """A webhook receiver as docs/notification-sinks.md asks one to be."""

    clock: FakeClock
    secret: bytes = b""
    down: bool = False
    #: Requests answered 503 while down.
    refused: int = 0
    #: Every request that reached it: (id, status answered).
    arrivals: list[tuple[str, int]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    #: The raw requests accepted (for the replay).
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    #: What the Slack route received.
    slack: list[dict[str, Any]] = field(default_factory=list)

    async def handle_slack(self, request: web.Request) -> web.Response:
        self.slack.append(await request.json())
        return web.Response(text="ok")

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        body = await request.read()
        status = self.verify(dict(request.headers), body)
        notice_id = json.loads(body).get("id", "?") if status != 401 else "?"
        self.arrivals.append((notice_id, status))
        if status == 200:
            notice = json.loads(body)
            self.seen.add(notice["id"])
            self.accepted.append(notice)
            self.raw.append((dict(request.headers), body))
        return web.Response(status=status)

    def verify(self, headers: dict[str, str], body: bytes) -> int:
        timestamp = headers.get("X-Tickler-Timestamp", "")
        signature = headers.get("X-Tickler-Signature", "")
        if not timestamp.isdigit():
            return 401
        mac = hmac.new(self.secret, timestamp.encode() + b"." + body, hashlib.sha256)
        if not hmac.compare_digest(f"sha256={mac.hexdigest()}", signature):
            return 401
        if abs(self.clock.now().timestamp() - int(timestamp)) > 300:
            return 401  # too old: a replay
        if json.loads(body)["id"] in self.seen:
            return 409  # seen: a replay within the 5 minutes
        return 200


@pytest.fixture
async def receiver(clock: FakeClock) -> AsyncIterator[Receiver]:
    got = Receiver(clock)
    app = web.Application()
    app.router.add_post("/hook", got.handle)
    app.router.add_post("/slack", got.handle_slack)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    got.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield got
    finally:
        await runner.cleanup()


async def add_webhook(bot: BotHarness, receiver: Receiver) -> str:
    await bot.alice.send(f"/sinks add webhook {receiver.url} all")
    reply = await bot.alice.wait_reply(containing="Added the webhook sink")
    found = re.search(r"\b[0-9a-f]{64}\b", reply.text or "")
    assert found, reply.text
    receiver.secret = found.group().encode()
    return found.group()


async def test_a_webhook_receiver_verifies_each_notice_refuses_a_replay_and_gets_all_after_10_min(
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    tmp_path: Path,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    bot = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db", clock=clock)
    try:
        secret = await add_webhook(bot, receiver)
        slack_url = receiver.url.replace("/hook", "/slack")
        await bot.alice.send(f"/sinks add slack {slack_url} failed")
        await bot.alice.wait_reply(containing="Added the slack sink")
        # The list never shows the secret again.
        await bot.alice.send("/sinks")
        listing = await bot.alice.wait_reply(containing="Sinks")
        assert secret not in (listing.text or "") and receiver.url in (listing.text or "")
        assert "/slack" not in (listing.text or "")  # a Slack URL is its own secret

        notifier = bot.services.notifier
        await notifier.notify(ALICE, "❌ <b>Backup</b> failed: disk full", kind="alert")
        await until(lambda: len(receiver.accepted) == 1)
        assert receiver.accepted[0]["event"] == "failed"
        assert receiver.accepted[0]["text"] == "❌ Backup failed: disk full"
        assert receiver.accepted[0]["chat_id"] == ALICE
        assert receiver.accepted[0]["link"].startswith("https://t.me/")

        await until(lambda: len(receiver.slack) == 1)
        blocks = receiver.slack[0]["blocks"]
        assert blocks[0]["text"]["text"] == "Tickler: run failed"
        assert blocks[1]["text"]["text"] == "❌ Backup failed: disk full"
        assert blocks[-1]["elements"][0]["url"] == receiver.accepted[0]["link"]

        # A replay of the delivered request: the same id within 5 minutes is refused,
        # and after 5 minutes its timestamp is.
        sent, body = receiver.raw[0]
        headers = {k: v for k, v in sent.items() if k.startswith("X-Tickler-")}
        async with ClientSession() as http:
            async with http.post(receiver.url, data=body, headers=headers) as answer:
                assert answer.status == 409
            await clock.advance(timedelta(minutes=6))
            receiver.seen.clear()  # even a receiver that forgot the id refuses it now
            async with http.post(receiver.url, data=body, headers=headers) as answer:
                assert answer.status == 401
            forged = body.replace(b"disk full", b"all good")
            async with http.post(receiver.url, data=forged, headers=headers) as answer:
                assert answer.status == 401
        receiver.seen.add(receiver.accepted[0]["id"])

        # The receiver is down for 10 minutes while notices keep coming; the chat gets
        # each of them meanwhile.
        receiver.down = True
        texts = [f"❌ <b>Job {i}</b> failed" for i in range(1, 6)]
        for i, text in enumerate(texts, 1):
            await notifier.notify(ALICE, text, kind="alert")
            await bot.alice.wait_reply(containing=f"Job {i} failed")  # the chat goes on
            await clock.advance(timedelta(minutes=2))
            await asyncio.sleep(0.2)  # the sink's attempt, failing
        assert len(receiver.accepted) == 1
        chat_texts = [m.text or "" for m in bot.alice.messages]
        assert all(any(f"Job {i} failed" in t for t in chat_texts) for i in range(1, 6))

        receiver.down = False
        for _ in range(4):  # the backoff is at most 5 minutes
            await clock.advance(timedelta(minutes=2))
            await asyncio.sleep(0.1)
        await until(lambda: len(receiver.accepted) == 6)
        await asyncio.sleep(0.5)
        await clock.advance(timedelta(minutes=10))
        await asyncio.sleep(0.5)
        assert [n["text"] for n in receiver.accepted[1:]] == [
            f"❌ Job {i} failed" for i in range(1, 6)
        ]
        ids = [n["id"] for n in receiver.accepted]
        assert ids == sorted(ids) and len(set(ids)) == 6
        # Tickler never sent a delivered notice again: each id reached the receiver once
        # (besides the test's own replays, which the receiver refused).
        from_tickler = [i for i, status in receiver.arrivals if status != 401]
        assert sorted(from_tickler) == sorted([*ids, ids[0]])  # ids[0] once more: the 409 replay
    finally:
        await stop_bot(bot)


async def test_a_sink_failing_for_6_hours_is_marked_dead_and_the_chat_told_once(
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    tmp_path: Path,
    clock: FakeClock,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db", clock=clock)
    try:
        secret = await add_webhook(bot, receiver)
        receiver.down = True
        notifier = bot.services.notifier
        await notifier.notify(ALICE, "❌ <b>Backup</b> failed", kind="alert")
        await until(lambda: receiver.refused == 1)
        for _ in range(2):
            tried = receiver.refused
            await clock.advance(timedelta(hours=3, minutes=1))
            await until(lambda: receiver.refused > tried)  # noqa: B023 - awaited here
        dead = await bot.alice.wait_reply(containing="marked dead")
        assert "HTTP 503" in (dead.text or "") and secret not in (dead.text or "")
        [sink] = await bot.services.store.sinks.list_for_chat(ALICE)
        assert sink.status.value == "dead"

        # Dead: no more attempts, and the chat is not told again.
        tried = receiver.refused
        await notifier.notify(ALICE, "❌ <b>Backup</b> failed again", kind="alert")
        await bot.alice.wait_reply(containing="failed again")
        for _ in range(3):
            await clock.advance(timedelta(hours=1))
            await asyncio.sleep(0.2)
        assert receiver.refused == tried
        told = [m for m in bot.alice.messages if "marked dead" in (m.text or "")]
        assert len(told) == 1
        await bot.alice.send("/sinks")
        assert "dead" in ((await bot.alice.wait_reply(containing="Sinks")).text or "")
    finally:
        await stop_bot(bot)
    assert secret not in caplog.text


async def test_notices_a_stopped_bot_owed_a_sink_are_delivered_after_the_restart_in_order(
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    tmp_path: Path,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    db = tmp_path / "bot.db"
    first = await start_bot(telegram_server, agent_stub, db, clock=clock)
    try:
        await add_webhook(first, receiver)
        receiver.down = True
        for i in (1, 2, 3):
            await first.services.notifier.notify(ALICE, f"❌ Job {i} failed", kind="alert")
        await until(lambda: receiver.refused >= 1)
    finally:
        await stop_bot(first)
    receiver.down = False
    second = await start_bot(telegram_server, agent_stub, db, clock=clock)
    try:
        await clock.advance(timedelta(minutes=1))
        await until(lambda: len(receiver.accepted) == 3)
        await clock.advance(timedelta(minutes=10))
        await asyncio.sleep(0.3)
        assert [n["text"] for n in receiver.accepted] == [f"❌ Job {i} failed" for i in (1, 2, 3)]
    finally:
        await stop_bot(second)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope.original_content or b"")
        return "250 OK"


def _login(server: Any, session: Session, envelope: Envelope, mechanism: str, auth: Any) -> Any:
    ok = isinstance(auth, LoginPassword) and auth.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


async def test_an_smtp_server_gets_the_failure_mail_with_its_subject_and_no_secret(
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server speaks STARTTLS and takes the login only after it, with a certificate
    # of the test's own authority, which Tickler's client is made to trust.
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    authority.configure_trust(client_tls)
    monkeypatch.setattr(sinks_module, "_tls_context", lambda: client_tls)
    mailbox = _Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_login,
        tls_context=server_tls,
        require_starttls=True,
    )
    await asyncio.to_thread(smtp.start)
    bot = await start_bot(
        telegram_server,
        agent_stub,
        tmp_path / "bot.db",
        clock=clock,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_username="tickler",
        smtp_password=SMTP_PASSWORD,
        smtp_from="tickler@example.com",
    )
    try:
        await bot.alice.send("/sinks add email ops@example.com failed")
        await bot.alice.wait_reply(containing="Added the email sink")
        await bot.alice.send(f"/sinks add slack {SLACK_URL} tripped")
        await bot.alice.wait_reply(containing="Added the slack sink")
        bot.agent.respond_with(500)
        await bot.services.service.create_schedule(
            ALICE,
            Owner(id=ALICE, first_name="Alice"),
            name="Nightly report",
            trigger=DAILY_9,
            action=Action(text="Write the report for {date}."),
            policies=Policies(retry=RetryPolicy(max_attempts=1)),
        )
        await clock.set(NINE_BERLIN)
        await bot.alice.wait_reply(containing="failed after 1 attempt", timeout=10)
        await until(lambda: len(mailbox.messages) == 1)
        mail = message_from_bytes(mailbox.messages[0], policy=policy.default)
        assert mail["Subject"] == "Tickler: run failed — Nightly report"
        assert mail["To"] == "ops@example.com"
        raw = mailbox.messages[0].decode("utf-8", "replace")
        body = mail.get_body()
        assert body is not None and "Nightly report" in body.get_content()
        for secret in (SMTP_PASSWORD, telegram_server.token, "stub-secret", SLACK_URL):
            assert secret not in raw

        # The export has neither the Slack URL nor any other sink secret.
        async with bot.services.store.connection.read() as db:
            files = await export_files(db)
        dumped = b"".join(files.values()).decode()
        assert SLACK_URL not in dumped and "slacksecret" not in dumped
        assert SMTP_PASSWORD not in dumped
    finally:
        await stop_bot(bot)
        await asyncio.to_thread(smtp.stop)


@pytest.fixture
async def api(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[Api]:
    async with _serve(telegram_server, agent_stub, tmp_path / "bot.db", api_token=TOKEN) as served:
        yield served


async def test_sinks_over_the_api_and_the_chat_refuse_bad_input_and_never_show_a_secret(
    api: Api,
) -> None:
    base = f"/api/v1/chats/{ALICE}/sinks"
    status, made, _ = await api.call(
        "POST", base, json={"kind": "webhook", "target": "https://example.com/hook"}
    )
    assert status == 201, made
    assert re.fullmatch(r"[0-9a-f]{64}", made["secret"])
    assert made["events"] == ["approval", "failed", "tripped", "proposal", "automation"]
    status, slack, _ = await api.call(
        "POST", base, json={"kind": "slack", "target": SLACK_URL, "events": ["tripped"]}
    )
    assert status == 201 and slack["secret"] is None
    assert slack["target"] == "https://hooks.slack.com/…"

    status, listed, _ = await api.call("GET", base)
    assert status == 200 and [s["id"] for s in listed["sinks"]] == [made["id"], slack["id"]]
    shown = json.dumps(listed)
    assert made["secret"] not in shown and "slacksecret" not in shown
    status, metrics, _ = await api.call("GET", "/metrics", auth=False)
    assert status == 200 and made["secret"] not in metrics and "slacksecret" not in metrics

    # Bad input: one sentence, nothing changed.
    for bad, words in (
        ({"kind": "pigeon", "target": "x"}, "webhook, slack or email"),
        ({"kind": "webhook", "target": "ftp://x"}, "http(s) URL"),
        ({"kind": "email", "target": "not-an-address"}, "not an e-mail address"),
        ({"kind": "webhook", "target": "https://e.com", "events": ["nope"]}, "Unknown event"),
        (
            {"kind": "webhook", "target": "https://user:pw@e.com/hook"},
            "may not carry a user or password",
        ),
        ({"kind": "webhook", "target": "https://e.com", "secret": "short"}, "16 characters"),
    ):
        status, error, _ = await api.call("POST", base, json=bad)
        assert status == 400 and words in error["error"], (bad, error)
    assert len((await api.call("GET", base))[1]["sinks"]) == 2

    # In the chat: only an admin changes them; the list shows no secret.
    await api.bot.olga.send("/sinks remove " + slack["id"])
    assert "Only an admin" in ((await api.bot.olga.wait_reply()).text or "")
    await api.bot.alice.send("/sinks events " + slack["id"] + " tripped,failed")
    listing = (await api.bot.alice.wait_reply(containing="Sinks")).text or ""
    assert "events: failed, tripped" in listing and made["secret"] not in listing
    await api.bot.alice.send("/sinks remove nosuch")
    assert "no sink 'nosuch'" in ((await api.bot.alice.wait_reply()).text or "")
    # A Slack URL is a credential: the command carrying it leaves the chat's history, and
    # a value typed where the events go is not echoed back.
    hook = "https://hooks.slack.com/services/T0/B0/chatsecret123"
    sent = await api.bot.alice.send(f"/sinks add slack {hook}")
    await api.bot.alice.wait_reply(containing="Added")
    assert sent["message_id"] in api.bot.alice.deleted_message_ids
    sent = await api.bot.alice.send("/sinks add webhook https://e.com/h MySecretValue99")
    refusal = (await api.bot.alice.wait_reply(containing="Unknown event")).text or ""
    assert "MySecretValue99".lower() not in refusal.lower()
    assert sent["message_id"] in api.bot.alice.deleted_message_ids
    assert all("chatsecret123" not in (m.text or "") for m in api.bot.alice.messages)

    status, _, _ = await api.call("DELETE", f"{base}/{slack['id']}")
    assert status == 204
    status, error, _ = await api.call("DELETE", f"{base}/{slack['id']}")
    assert status == 400 and "no sink" in error["error"]
    doc = (await api.call("GET", "/api/v1/openapi.json", auth=False))[1]
    assert {"get", "post"} <= set(doc["paths"]["/api/v1/chats/{chat_id}/sinks"])


def test_a_slack_message_shows_angle_brackets_literally() -> None:
    """An agent's answer or a schedule's name must not ping the channel or hide a link."""
    delivery = Delivery(
        sink_id="s1",
        notification_id="n1",
        chat_id=1,
        event="failed",
        text="Done <!channel> see <https://evil.example|the report> & more",
        schedule_id="sch",
        schedule_name="<!here> nightly",
        run_id="r1",
        created_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        attempts=0,
        next_attempt_at=None,
    )
    message = slack_blocks(delivery, None)
    blocks = message["blocks"]
    assert isinstance(blocks, list)
    # What Slack reads as mrkdwn: the fallback text, the section and the context.
    mrkdwn = [str(message["text"]), json.dumps(blocks[1]), json.dumps(blocks[2])]
    for text in mrkdwn:
        assert "<!" not in text and "<https://" not in text, text
    assert "&lt;!channel&gt;" in mrkdwn[1] and "&amp; more" in mrkdwn[1]
    assert "&lt;!here&gt;" in mrkdwn[0]
