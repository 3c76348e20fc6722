"""The fake Bot API server itself: Telegram's shapes and limits, and PTB 22 running on it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)

from bot.demo_kit.telegram_server import TelegramServer, image_size, parse_entities

Api = tuple[int, dict[str, Any]]


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def bot(telegram_server: TelegramServer) -> AsyncIterator[ExtBot[None]]:
    """A PTB bot (no polling) talking to the server."""
    app = telegram_server.application_builder().build()
    await app.initialize()
    yield app.bot
    await app.shutdown()


async def call(
    http: aiohttp.ClientSession,
    server: TelegramServer,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    form: bool = False,
) -> Api:
    """One raw API call (JSON body, or form-encoded like PTB) -> (HTTP status, body)."""
    url = f"{server.base_url}{token or server.token}/{method}"
    if form:
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (params or {}).items()}
        response = await http.post(url, data=data)
    else:
        response = await http.post(url, json=params or {})
    async with response:
        return response.status, await response.json()


def error(status: int, description: str) -> Api:
    return status, {"ok": False, "error_code": status, "description": description}


# -- shapes, tokens, methods ----------------------------------------------------------


async def test_get_me_shape_and_wrong_token(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, telegram_server, "getMe")
    assert status == 200 and body["ok"] is True
    me = body["result"]
    assert me["is_bot"] is True and me["id"] == telegram_server.bot_id
    for key in ("first_name", "username", "can_join_groups", "can_read_all_group_messages"):
        assert key in me
    assert me["supports_inline_queries"] is False
    assert await call(http, telegram_server, "getMe", token="1:nope") == error(401, "Unauthorized")
    assert await call(http, telegram_server, "sendPigeon") == error(404, "Not Found")
    # Method names are case-insensitive, as on Telegram.
    assert (await call(http, telegram_server, "GETME"))[0] == 200


async def test_ptb_initialize_and_commands(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    assert bot.username == telegram_server.bot_username
    assert bot.id == telegram_server.bot_id
    commands = [BotCommand("start", "Start here"), BotCommand("help", "What I can do")]
    assert await bot.set_my_commands(commands) is True
    assert telegram_server.commands == [
        {"command": "start", "description": "Start here"},
        {"command": "help", "description": "What I can do"},
    ]
    assert list(await bot.get_my_commands()) == commands
    assert await bot.delete_my_commands() is True
    assert list(await bot.get_my_commands()) == []
    # PTB sends form-encoded bodies with JSON-encoded non-string values.
    assert telegram_server.calls_to("setMyCommands")[0]["commands"][0]["command"] == "start"


@pytest.mark.parametrize(
    ("commands", "description"),
    [
        ([{"command": "Start", "description": "x"}], "Bad Request: BOT_COMMAND_INVALID"),
        ([{"command": "has-dash", "description": "x"}], "Bad Request: BOT_COMMAND_INVALID"),
        ([{"command": "a" * 33, "description": "x"}], "Bad Request: BOT_COMMAND_INVALID"),
        ([{"command": "", "description": "x"}], "Bad Request: BOT_COMMAND_INVALID"),
        (
            [{"command": "ok", "description": ""}],
            "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID",
        ),
        (
            [{"command": "ok", "description": "d" * 257}],
            "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID",
        ),
        (
            [{"command": f"c{i}", "description": "x"} for i in range(101)],
            "Bad Request: BOT_COMMANDS_TOO_MUCH",
        ),
    ],
)
async def test_set_my_commands_limits(
    telegram_server: TelegramServer,
    http: aiohttp.ClientSession,
    commands: list[dict[str, str]],
    description: str,
) -> None:
    got = await call(http, telegram_server, "setMyCommands", {"commands": commands}, form=True)
    assert got == error(400, description)
    assert telegram_server.commands == []
    ok = [{"command": f"c{i}", "description": "d" * 256} for i in range(100)]
    ok[0]["command"] = "a" * 32
    assert (await call(http, telegram_server, "setMyCommands", {"commands": ok}))[0] == 200


async def test_ptb_bad_command_raises_bad_request(bot: ExtBot[None]) -> None:
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("New", "Make one")])


async def test_json_and_form_bodies_are_equivalent(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    alice = telegram_server.user(1001)
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    for form in (False, True):
        params = {"chat_id": 1001, "text": "123", "reply_markup": markup}
        status, body = await call(http, telegram_server, "sendMessage", params, form=form)
        assert status == 200 and body["result"]["text"] == "123"  # a string stays a string
        assert body["result"]["reply_markup"] == markup
    # Telegram also takes reply_markup as a JSON string inside a JSON body.
    params = {"chat_id": "1001", "text": "s", "reply_markup": json.dumps(markup)}
    assert (await call(http, telegram_server, "sendMessage", params))[0] == 200
    assert [m.buttons for m in alice.messages] == [[[("Go", "go")]]] * 3
    url = f"{telegram_server.base_url}{telegram_server.token}/sendMessage"
    async with http.post(url, data=b"{nope", headers={"Content-Type": "application/json"}) as r:
        assert (r.status, await r.json()) == error(400, "Bad Request: can't parse JSON")


# -- sendMessage limits ---------------------------------------------------------------


async def test_text_limits(telegram_server: TelegramServer, bot: ExtBot[None]) -> None:
    alice = telegram_server.user(1001)
    sent = await bot.send_message(alice.chat_id, "x" * 4096)
    assert len(sent.text or "") == 4096
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(alice.chat_id, "x" * 4097)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(alice.chat_id, "   \n ")
    # The limit counts the text after entity parsing, not the markup.
    await bot.send_message(alice.chat_id, "<b>" + "y" * 4096 + "</b>", parse_mode="HTML")
    assert [len(m.text or "") for m in alice.messages] == [4096, 4096]


async def test_raw_text_errors_have_telegram_shape(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    telegram_server.user(1001)
    send = {"chat_id": 1001, "text": "x" * 4097}
    assert await call(http, telegram_server, "sendMessage", send) == error(
        400, "Bad Request: message is too long"
    )
    assert await call(http, telegram_server, "sendMessage", {"chat_id": 1001}) == error(
        400, "Bad Request: message text is empty"
    )
    assert await call(http, telegram_server, "sendMessage", {"text": "hi"}) == error(
        400, "Bad Request: chat_id is empty"
    )
    assert await call(http, telegram_server, "sendMessage", {"chat_id": 5, "text": "hi"}) == error(
        400, "Bad Request: chat not found"
    )
    assert telegram_server.errors[-1].description == "Bad Request: chat not found"


async def test_callback_data_limits(telegram_server: TelegramServer, bot: ExtBot[None]) -> None:
    alice = telegram_server.user(1001)

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data=data)]])

    await bot.send_message(alice.chat_id, "ok", reply_markup=keyboard("d" * 64))
    assert alice.buttons() == [[("Go", "d" * 64)]]
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(alice.chat_id, "too long", reply_markup=keyboard("d" * 65))
    # 64 *bytes*: 33 two-byte characters are 66 bytes.
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(alice.chat_id, "bytes", reply_markup=keyboard("é" * 33))


async def test_callback_data_empty_is_invalid(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    telegram_server.user(1001)
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": ""}]]}
    got = await call(
        http, telegram_server, "sendMessage", {"chat_id": 1001, "text": "t", "reply_markup": markup}
    )
    assert got == error(400, "Bad Request: BUTTON_DATA_INVALID")


async def test_html_parse_mode(telegram_server: TelegramServer, bot: ExtBot[None]) -> None:
    alice = telegram_server.user(1001)
    with pytest.raises(BadRequest, match="Can't parse entities: can't find end tag") as info:
        await bot.send_message(alice.chat_id, "<b>bold", parse_mode=ParseMode.HTML)
    assert 'corresponding to start tag "b"' in info.value.message
    with pytest.raises(BadRequest, match=r'(?i)unsupported start tag "blink"'):
        await bot.send_message(alice.chat_id, "<blink>x</blink>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r'(?i)unsupported start tag ""'):
        await bot.send_message(alice.chat_id, "1 < 2", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)unmatched end tag"):
        await bot.send_message(alice.chat_id, "<b><i>x</b></i>", parse_mode=ParseMode.HTML)
    assert alice.messages == []
    msg = await bot.send_message(
        alice.chat_id, "<b>Due</b> 1 &lt; 2 &amp; <a href='https://x.y'>link</a>", "HTML"
    )
    assert msg.text == "Due 1 < 2 & link"
    assert [(e.type, e.offset, e.length) for e in msg.entities] == [
        ("bold", 0, 3),
        ("text_link", 12, 4),
    ]
    reply = await alice.wait_reply()
    assert reply.text == "Due 1 < 2 & link" and reply.parse_mode == "HTML"
    assert reply.raw_text is not None and reply.raw_text.startswith("<b>Due</b>")


def test_markdown_v2_parsing() -> None:
    assert parse_entities(r"*Done* at 9\.00", "MarkdownV2") == (
        "Done at 9.00",
        [{"type": "bold", "offset": 0, "length": 4}],
    )
    for bad, message in [
        ("Done.", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("*open", "Can't find end of Bold entity at byte offset 0"),
        ("a _b", "Can't find end of Italic entity at byte offset 2"),
    ]:
        with pytest.raises(ValueError) as info:
            parse_entities(bad, "MarkdownV2")
        assert str(info.value) == message
    text, entities = parse_entities("[site](https://e.x/a\\)b) `c.d`", "MarkdownV2")
    assert text == "site c.d"
    assert entities == [
        {"type": "text_link", "offset": 0, "length": 4, "url": "https://e.x/a)b"},
        {"type": "code", "offset": 5, "length": 3},
    ]
    assert parse_entities("*b* _i_", "Markdown")[0] == "b i"


async def test_markdown_v2_error_through_ptb(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    telegram_server.user(1001)
    with pytest.raises(BadRequest, match=r"(?i)character '!' is reserved"):
        await bot.send_message(1001, "Hello!", parse_mode=ParseMode.MARKDOWN_V2)


# -- getUpdates ---------------------------------------------------------------------


async def test_get_updates_offset_and_limit(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    alice = telegram_server.user(1001)
    for text in ("one", "two", "three"):
        await alice.send(text)
    _, body = await call(http, telegram_server, "getUpdates", {"limit": 2})
    first = body["result"]
    assert [u["message"]["text"] for u in first] == ["one", "two"]
    ids = [u["update_id"] for u in first]
    assert ids[1] == ids[0] + 1
    # Not confirmed yet: asked again, the same ones come back.
    _, body = await call(http, telegram_server, "getUpdates", {"limit": 2}, form=True)
    assert [u["update_id"] for u in body["result"]] == ids
    # offset = last + 1 confirms them.
    _, body = await call(http, telegram_server, "getUpdates", {"offset": ids[1] + 1})
    assert [u["message"]["text"] for u in body["result"]] == ["three"]
    last = body["result"][0]["update_id"]
    assert last == ids[1] + 1
    _, body = await call(http, telegram_server, "getUpdates", {"offset": last + 1})
    assert body["result"] == []
    # A negative offset keeps only the last updates.
    for text in ("4", "5", "6"):
        await alice.send(text)
    _, body = await call(http, telegram_server, "getUpdates", {"offset": -1})
    assert [u["message"]["text"] for u in body["result"]] == ["6"]
    assert len(telegram_server.pending_updates) == 1
    # A limit out of 1..100 means 100.
    _, body = await call(http, telegram_server, "getUpdates", {"limit": 0})
    assert len(body["result"]) == 1


async def test_get_updates_long_poll_wakes_promptly(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    alice = telegram_server.user(1001)
    started = time.monotonic()
    _, body = await call(http, telegram_server, "getUpdates", {"timeout": 0.2})
    assert body == {"ok": True, "result": []}
    assert 0.15 <= time.monotonic() - started < 1.0

    poll = asyncio.create_task(call(http, telegram_server, "getUpdates", {"timeout": 30}))
    await telegram_server.wait_for_call("getUpdates", n=2)  # the poll waits at the server
    assert not poll.done()
    started = time.monotonic()
    await alice.send("/start now")
    _, body = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 0.5
    message = body["result"][0]["message"]
    assert message["text"] == "/start now"
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert message["chat"] == {"id": 1001, "type": "private", "first_name": "Alice"}
    assert message["from"]["is_bot"] is False
    assert isinstance(message["date"], int) and abs(message["date"] - time.time()) < 5


async def test_second_get_updates_terminates_the_first(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    first = asyncio.create_task(call(http, telegram_server, "getUpdates", {"timeout": 30}))
    await telegram_server.wait_for_call("getUpdates")  # the first poll waits at the server
    second = await call(http, telegram_server, "getUpdates", {"timeout": 0})
    assert second == (200, {"ok": True, "result": []})
    status, body = await asyncio.wait_for(first, 2)
    assert status == 409 and body["description"].startswith("Conflict: terminated by other")


async def test_get_updates_conflicts_with_webhook(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    assert (await call(http, telegram_server, "setWebhook", {"url": "https://e.x/hook"}))[0] == 200
    status, body = await call(http, telegram_server, "getUpdates")
    assert status == 409 and "webhook is active" in body["description"]
    _, info = await call(http, telegram_server, "getWebhookInfo")
    assert info["result"]["url"] == "https://e.x/hook"
    assert (await call(http, telegram_server, "deleteWebhook"))[0] == 200
    assert (await call(http, telegram_server, "getUpdates"))[0] == 200


async def test_allowed_updates_filter(
    telegram_server: TelegramServer, http: aiohttp.ClientSession
) -> None:
    alice = telegram_server.user(1001)
    await alice.send("text")
    await alice.press_data("forged", 999)
    _, body = await call(http, telegram_server, "getUpdates", {"allowed_updates": ["message"]})
    assert [list(u)[1] for u in body["result"]] == ["message"]


async def test_stop_does_not_hang_on_a_pending_long_poll() -> None:
    server = TelegramServer()
    await server.start()
    async with aiohttp.ClientSession() as http:
        poll = asyncio.create_task(call(http, server, "getUpdates", {"timeout": 30}))
        await server.wait_for_call("getUpdates")  # the poll waits at the server
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(poll, 2)


# -- fault injection ------------------------------------------------------------------


async def test_429_with_retry_after(
    telegram_server: TelegramServer,
    http: aiohttp.ClientSession,
    bot: ExtBot[None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without PTB_TIMEDELTA, PTB 22.2+ warns (an error here) while building RetryAfter.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    alice = telegram_server.user(1001)
    telegram_server.fail_next("sendMessage", retry_after=3)
    status, body = await call(http, telegram_server, "sendMessage", {"chat_id": 1001, "text": "a"})
    assert (status, body) == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        },
    )
    assert alice.messages == []  # a refused call has no effect
    telegram_server.fail_next("sendMessage", count=2)
    for _ in range(2):
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(1001, "b")
        assert info.value.retry_after == timedelta(seconds=1)
    await bot.send_message(1001, "c")
    assert [m.text for m in alice.messages] == ["c"]


async def test_403_blocked_and_5xx(telegram_server: TelegramServer, bot: ExtBot[None]) -> None:
    telegram_server.user(1001)
    bob = telegram_server.user(1002, "Bob")
    telegram_server.block(1001)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(1001, "hi")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(1001, "typing")
    await bot.send_message(bob.chat_id, "hi Bob")  # others are not affected
    telegram_server.unblock(1001)
    await bot.send_message(1001, "hi again")

    telegram_server.fail_next("sendMessage", 500)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(1001, "x")
    telegram_server.fail_next("*", 502, chat_id=1002)
    await bot.send_message(1001, "not Bob")  # the fault waits for Bob's chat
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(1002, "x")
    assert [e.error_code for e in telegram_server.errors] == [403, 403, 500, 502]


async def test_slow_answer_times_out_but_the_message_is_sent(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    alice = telegram_server.user(1001)
    telegram_server.slow("sendMessage", 0.4)
    with pytest.raises(TimedOut):
        await bot.send_message(1001, "late", read_timeout=0.1)
    assert [m.text for m in alice.messages] == ["late"]
    telegram_server.slow("sendMessage", 0)
    started = time.monotonic()
    await bot.send_message(1001, "fast")
    assert time.monotonic() - started < 0.3


# -- edits, callbacks, documents ----------------------------------------------------------


async def test_edit_rules(telegram_server: TelegramServer, bot: ExtBot[None]) -> None:
    alice = telegram_server.user(1001)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="y")]])
    msg = await bot.send_message(1001, "Sure?", reply_markup=keyboard)
    assert (await alice.wait_reply()).buttons == [[("Yes", "y")]]
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("Sure?", 1001, msg.message_id, reply_markup=keyboard)
    edited = await bot.edit_message_text("Sure?", 1001, msg.message_id)  # drops the keyboard
    assert isinstance(edited, type(msg)) and edited.reply_markup is None
    assert edited.edit_date is not None
    snap = await alice.wait_edit(msg.message_id)
    assert snap.edited and snap.buttons == []
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", 1001, 999)
    await bot.edit_message_reply_markup(1001, msg.message_id, reply_markup=keyboard)
    assert alice.buttons() == [[("Yes", "y")]]
    assert await bot.delete_message(1001, msg.message_id) is True
    assert alice.messages == [] and alice.deleted_message_ids == [msg.message_id]
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(1001, msg.message_id)


async def test_message_ids_increase_per_chat(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    alice, bob = telegram_server.user(1001), telegram_server.user(1002, "Bob")
    await alice.send("hi")
    a1 = await bot.send_message(1001, "a1")
    b1 = await bot.send_message(1002, "b1")
    a2 = await bot.send_message(1001, "a2")
    assert (a1.message_id, a2.message_id, b1.message_id) == (2, 3, 1)
    assert a1.from_user is not None and a1.from_user.id == telegram_server.bot_id
    assert a1.chat.first_name == "Alice" and bob.last_reply().text == "b1"


async def test_callback_answer_once(telegram_server: TelegramServer, bot: ExtBot[None]) -> None:
    alice = telegram_server.user(1001)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="ap:1")]])
    msg = await bot.send_message(1001, "Run?", reply_markup=keyboard)
    query_id = await alice.press("Approve")
    update = telegram_server.pending_updates[-1]["callback_query"]
    assert update["data"] == "ap:1" and update["chat_instance"]
    assert update["message"]["message_id"] == msg.message_id
    assert update["message"]["reply_markup"] == keyboard.to_dict()
    assert await bot.answer_callback_query(query_id, "Approved") is True
    assert telegram_server.answered_callbacks[query_id]["text"] == "Approved"
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("12345")
    # by callback_data too; an unknown label is a clear failure
    assert await alice.press("ap:1") != query_id
    with pytest.raises(AssertionError, match="no inline button 'Reject'"):
        await alice.press("Reject")


async def test_press_data_forges_on_an_inaccessible_message(
    telegram_server: TelegramServer,
) -> None:
    alice = telegram_server.user(1001)
    await alice.press_data("delete:42", message_id=77)
    query = telegram_server.pending_updates[-1]["callback_query"]
    assert query["data"] == "delete:42"
    assert query["message"] == {
        "chat": {"id": 1001, "type": "private", "first_name": "Alice"},
        "message_id": 77,
        "date": 0,
    }
    update = Update.de_json(telegram_server.pending_updates[-1], None)
    assert update.callback_query is not None and update.callback_query.data == "delete:42"


async def test_send_document_get_file_download(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    alice = telegram_server.user(1001)
    payload = b"id,cron\n1,0 9 * * *\n"
    msg = await bot.send_document(
        1001, payload, filename="export.csv", caption="<i>Export</i>", parse_mode="HTML"
    )
    assert msg.document is not None
    assert msg.document.file_name == "export.csv" and msg.document.file_size == len(payload)
    assert msg.caption == "Export"
    reply = await alice.wait_reply()
    assert reply.document_name == "export.csv" and reply.document_data == payload
    tg_file = await bot.get_file(msg.document.file_id)
    assert bytes(await tg_file.download_as_bytearray()) == payload
    # PTB uploads with multipart/form-data.
    upload = telegram_server.calls_to("sendDocument")[0]["document"]
    assert upload.filename == "export.csv" and upload.data == payload
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("nope")


def png_header(width: int, height: int) -> bytes:
    """What the server reads of a PNG: the signature and the IHDR chunk."""
    ihdr = width.to_bytes(4) + height.to_bytes(4) + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4) + b"IHDR" + ihdr + bytes(4) + b"IDAT"


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment to skip, then the SOF0 frame header with the size."""
    app0 = b"\xff\xe0" + (16).to_bytes(2) + b"JFIF\x00" + bytes(9)
    sof0 = b"\xff\xc0" + (17).to_bytes(2) + b"\x08" + height.to_bytes(2) + width.to_bytes(2)
    return b"\xff\xd8" + app0 + sof0 + bytes(12)


def test_image_size_reads_png_and_jpeg_headers_only() -> None:
    assert image_size(png_header(900, 720)) == (900, 720)
    assert image_size(jpeg_header(640, 480)) == (640, 480)
    assert image_size(b"GIF89a....") is None
    assert image_size(png_header(900, 720)[:20]) is None
    assert image_size(b"\xff\xd8\xff\xe0") is None


async def test_send_photo_checks_the_image_and_lists_telegrams_sizes(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    alice = telegram_server.user(1001)
    png = png_header(900, 720)
    msg = await bot.send_photo(
        1001, png, filename="stats.png", caption="<b>Week</b>", parse_mode="HTML"
    )
    assert [(p.width, p.height) for p in msg.photo] == [
        (90, 72),
        (320, 256),
        (800, 640),
        (900, 720),
    ]
    assert msg.caption == "Week" and msg.photo[-1].file_size == len(png)
    seen = await alice.wait_reply()
    assert seen.photo_data == png and seen.photo_size == (900, 720) and seen.text == "Week"
    # PTB uploads it with multipart/form-data.
    upload = telegram_server.calls_to("sendPhoto")[0]["photo"]
    assert upload.filename == "stats.png" and upload.data == png
    # Sent again by file_id, and downloadable like any file.
    again = await bot.send_photo(1001, msg.photo[-1].file_id)
    assert again.photo[-1].file_unique_id == msg.photo[-1].file_unique_id
    tg_file = await bot.get_file(msg.photo[-1].file_id)
    assert bytes(await tg_file.download_as_bytearray()) == png
    big = await bot.send_photo(1001, jpeg_header(4000, 3000))
    assert (big.photo[-1].width, big.photo[-1].height) == (2560, 1920)

    for photo, why in [
        (b"not an image at all", "image_process_failed"),
        (png_header(9000, 1001), "photo_invalid_dimensions"),
        (png_header(2100, 100), "photo_invalid_dimensions"),
        (png_header(0, 10), "image_process_failed"),
        (png + bytes(10 * 1024 * 1024), "photo_save_file_invalid"),
    ]:
        with pytest.raises(BadRequest, match=f"(?i){why}"):
            await bot.send_photo(1001, photo, filename="x.png")
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_photo(1001, "AgACAgnope")
    assert len([m for m in alice.messages if m.photo_data]) == 3


async def test_chat_action(telegram_server: TelegramServer, bot: ExtBot[None]) -> None:
    telegram_server.user(1001)
    assert await bot.send_chat_action(1001, "typing") is True
    assert telegram_server.chat_actions == [(1001, "typing")]


async def test_message_reactions_are_checked_like_telegram(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    alice = telegram_server.user(1001)
    sent = await alice.send("remind me tomorrow at 9")
    mid = sent["message_id"]
    assert await bot.set_message_reaction(1001, mid, "👍") is True
    assert telegram_server.reactions[(1001, mid)] == ["👍"]
    with pytest.raises(BadRequest, match=r"(?i)reaction_invalid"):
        await bot.set_message_reaction(1001, mid, "✅")  # not one a bot may use
    with pytest.raises(BadRequest, match=r"(?i)reactions_too_many"):
        await bot.set_message_reaction(1001, mid, ["👍", "👎"])
    with pytest.raises(BadRequest, match=r"(?i)message to react not found"):
        await bot.set_message_reaction(1001, mid + 100, "👍")
    assert telegram_server.reactions[(1001, mid)] == ["👍"]
    # An empty list takes the reaction away.
    assert await bot.set_message_reaction(1001, mid, []) is True
    assert telegram_server.reactions[(1001, mid)] == []


async def test_wait_reply_containing_and_timeout(
    telegram_server: TelegramServer, bot: ExtBot[None]
) -> None:
    alice = telegram_server.user(1001)
    await bot.send_message(1001, "Working…")
    await bot.send_message(1001, "Done: 3 schedules")
    assert (await alice.wait_reply(containing="Done")).text == "Done: 3 schedules"
    with pytest.raises(AssertionError, match=r"no bot reply to chat 1001 within 0\.1 s"):
        await alice.wait_reply(timeout=0.1)  # "Working…" was consumed on the way

    async def later() -> None:
        await asyncio.sleep(0.05)
        await bot.send_message(1001, "later")

    task = asyncio.create_task(later())
    assert (await alice.wait_reply(timeout=2)).text == "later"
    await task
    assert alice.last_reply().text == "later"


# -- PTB 22 end to end ------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="approve:1")]])
    await update.effective_message.reply_text("<b>Hello</b>, ready?", "HTML", reply_markup=keyboard)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("Approved")
    await query.edit_message_text(f"Approved ({query.data})")


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None and update.effective_message.text is not None
    await update.effective_message.reply_text(f"echo: {update.effective_message.text}")


async def test_ptb_application_round_trip(telegram_server: TelegramServer) -> None:
    app: Application[Any, Any, Any, Any, Any, Any] = telegram_server.application_builder().build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(on_button))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    alice = telegram_server.user(1001, "Alice")
    await app.initialize()
    await app.bot.set_my_commands([BotCommand("start", "Say hello")])
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        await alice.send("/start")
        hello = await alice.wait_reply()
        assert hello.text == "Hello, ready?"
        assert hello.buttons == [[("Approve", "approve:1")]]
        query_id = await alice.press("Approve")
        edited = await alice.wait_edit(hello.message_id)
        assert edited.text == "Approved (approve:1)" and edited.buttons == []
        assert (await telegram_server.wait_answered(query_id))["text"] == "Approved"
        await alice.send("plain words")
        assert (await alice.wait_reply()).text == "echo: plain words"
        assert [m.text for m in alice.messages] == ["Approved (approve:1)", "echo: plain words"]
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert telegram_server.commands == [{"command": "start", "description": "Say hello"}]
    assert telegram_server.pending_updates == []  # PTB confirmed everything on stop
    assert [e.error_code for e in telegram_server.errors] == []
