"""A strict fake Telegram Bot API server for the tests (TESTING.md "The Telegram side").

The bot runs unchanged against it over real HTTP on 127.0.0.1::

    async with TelegramServer() as server:          # or the `telegram_server` fixture
        app = server.application_builder().build()  # token + base_url + base_file_url set
        alice = server.user(1001, "Alice")
        await alice.send("/start")
        reply = await alice.wait_reply(containing="Welcome")
        await alice.press("Approve")
        edited = await alice.wait_edit(reply.message_id)

What it is strict about (each with Telegram's own reply shape and description):

* the token in `/bot{token}/{method}` (401 "Unauthorized") and the method (404 "Not Found");
* long-polling `getUpdates` with `offset` (confirms earlier updates, negative counts from
  the end), `limit` (1..100, others mean 100), `timeout` (answers as soon as an update
  arrives), `allowed_updates` (remembered, as Telegram does); a second concurrent
  `getUpdates` terminates the first with 409, and `getUpdates` while a webhook is set is 409;
* message text 1..4096 characters after entity parsing ("message text is empty",
  "message is too long"), captions <= 1024, `parse_mode` HTML / MarkdownV2 / Markdown parsed
  like Telegram does (an unclosed `<b>`, an unknown tag or an unescaped `.` in MarkdownV2 is
  400 "can't parse entities: ..."), leading and trailing white space trimmed;
* inline keyboards: `callback_data` 1..64 bytes ("BUTTON_DATA_INVALID"), one action per
  button, <= 100 buttons;
* `setMyCommands`: <= 100 commands, names 1..32 of `[a-z0-9_]`, descriptions 1..256;
* `setChatMenuButton` (the default button, or a known private chat's): `commands`,
  `default`, or `web_app` with a text and an HTTPS `web_app.url`; inline `web_app`
  buttons need an HTTPS URL too and are refused outside private chats
  ("BUTTON_TYPE_INVALID");
* `editMessageText` of identical content is 400 "message is not modified: ...", and (like
  Telegram) an edit without `reply_markup` removes the inline keyboard;
* a chat the server has never seen is 400 "chat not found"; a blocked one is 403;
* a callback query can be answered once ("query is too old ... or query ID is invalid");
* `sendPhoto` takes an upload, an `attach://` part or a known file_id; the upload must be a
  PNG or JPEG image the server can read ("IMAGE_PROCESS_FAILED"), at most 10 MB
  ("PHOTO_SAVE_FILE_INVALID"), width plus height at most 10000 and sides at most 20:1
  ("PHOTO_INVALID_DIMENSIONS"); the message's `photo` lists Telegram's sizes (scaled copies
  up to 90, 320, 800, 1280 px, then the original capped at 2560 px), the largest last.

Fault injection: `server.fail_next(method, error_code=429, retry_after=1, count=1)`,
`server.block(chat_id)`, `server.slow(method, seconds)`.

Request bodies: PTB 22 sends `application/x-www-form-urlencoded` (every value a string;
non-string values JSON-encoded) and `multipart/form-data` when it uploads a file; both are
accepted, and so is a JSON body and a query string, as Telegram does.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar

from aiohttp import web

from bot.demo_kit.loopback import LoopbackServer

if TYPE_CHECKING:
    from telegram.ext._applicationbuilder import InitApplicationBuilder

__all__ = [
    "DEFAULT_TOKEN",
    "ApiError",
    "BotMessage",
    "Call",
    "EntityParseError",
    "FailedCall",
    "TelegramServer",
    "TgUser",
    "Upload",
    "image_size",
    "parse_entities",
]

DEFAULT_TOKEN = "7000000001:AAE-tickler-test-token_0123456789abcdef"

Json: TypeAlias = dict[str, Any]
Buttons: TypeAlias = list[list[tuple[str, str | None]]]

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
#: The longest side of each size Telegram keeps of a photo (s, m, x, y, w).
PHOTO_SIDES = (90, 320, 800, 1280, 2560)
MAX_CALLBACK_ANSWER = 200
MAX_BUTTONS = 100
MAX_COMMANDS = 100
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
#: The emoji a bot may react with (Bot API `ReactionTypeEmoji`); one string keeps the
#: list readable.
REACTION_EMOJI = frozenset(
    (  # noqa: SIM905
        "👍 👎 ❤ 🔥 🥰 👏 😁 🤔 🤯 😱 🤬 😢 🎉 🤩 🤮 💩 "
        "🙏 👌 🕊 🤡 🥱 🥴 😍 🐳 ❤️‍🔥 🌚 🌭 💯 🤣 ⚡ 🍌 🏆 "
        "💔 🤨 😐 🍓 🍾 💋 🖕 😈 😴 😭 🤓 👻 👨‍💻 👀 🎃 🙈 "
        "😇 😨 🤝 ✍ 🤗 🫡 🎅 🎄 ☃ 💅 🤪 🗿 🆒 💘 🙉 🦄 "
        "😘 💊 🙊 😎 👾 🤷‍♂️ 🤷 🤷‍♀️ 😡"
    ).split()
)
BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
# Update types delivered when `allowed_updates` is empty (Telegram's default set).
DEFAULT_UPDATE_TYPES = frozenset(
    {"message", "edited_message", "callback_query", "my_chat_member", "inline_query"}
)

# Form fields whose value is JSON (PTB json-dumps every non-string value); every other
# form field is kept as the string it is.
_JSON_FIELDS = frozenset(
    {
        "chat_id",
        "message_id",
        "message_ids",
        "reply_markup",
        "commands",
        "scope",
        "menu_button",
        "reaction",
        "is_big",
        "offset",
        "limit",
        "timeout",
        "allowed_updates",
        "show_alert",
        "cache_time",
        "drop_pending_updates",
        "max_connections",
        "reply_parameters",
        "entities",
        "caption_entities",
        "link_preview_options",
        "disable_notification",
        "protect_content",
        "message_thread_id",
        "disable_web_page_preview",
        "reply_to_message_id",
        "allow_sending_without_reply",
        "disable_content_type_detection",
        "allow_paid_broadcast",
    }
)


# -- errors ------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: `{"ok": false, "error_code": ..., "description": ...}`."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> Json:
        out: Json = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            out["parameters"] = {"retry_after": self.retry_after}
        return out


_TEXT_BUTTON = (
    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
)


def _bad(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


# -- formatted text ------------------------------------------------------------------


class EntityParseError(ValueError):
    """The text is not well formed for its parse mode (Telegram's description inside)."""


def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


class _Out:
    """The plain text being built, with its length in UTF-16 code units (entity offsets)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[Json] = []

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.pos += _utf16(s)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.pos > start:
            self.entities.append(
                {"type": kind, "offset": start, "length": self.pos - start, **extra}
            )

    def result(self) -> tuple[str, list[Json]]:
        entities = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), entities


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_html_entity(match: re.Match[str]) -> str | None:
    name = match.group(1)
    if name in _NAMED_ENTITIES:
        return _NAMED_ENTITIES[name]
    code = int(name[2:], 16) if name.startswith("#x") else int(name[1:])
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _html_unescape(value: str) -> str:
    return _HTML_ENTITY.sub(lambda m: _decode_html_entity(m) or m.group(0), value)


def _parse_html(src: str) -> tuple[str, list[Json]]:
    out = _Out()
    stack: list[tuple[str, int, dict[str, str]]] = []  # tag, start, attributes
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "&":
            m = _HTML_ENTITY.match(src, i)
            decoded = _decode_html_entity(m) if m else None
            if m and decoded is not None:
                out.add(decoded)
                i = m.end()
            else:
                out.add("&")
                i += 1
            continue
        if c != "<":
            out.add(c)
            i += 1
            continue
        begin = _byte_offset(src, i)
        if i + 1 < n and src[i + 1] == "/":
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
            close = src.find(">", i)
            if close == -1:
                raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
            name = src[i + 2 : close].strip().lower()
            tag, start, open_attrs = stack.pop()
            if name and name != tag:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", '
                    f'found "</{name}>"'
                )
            language = open_attrs.get("class", "")
            if (
                tag == "code"
                and stack
                and stack[-1][0] == "pre"
                and language.startswith("language-")
            ):
                # <pre><code class="language-x"> is one pre entity with a language
                stack[-1][2]["language"] = language[len("language-") :]
            else:
                _html_entity(out, tag, start, open_attrs)
            i = close + 1
            continue
        j = i + 1
        while j < n and not src[j].isspace() and src[j] != ">":
            j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
        tag = src[i + 1 : j].lower()
        if tag not in _HTML_TAGS:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
        attrs: dict[str, str] = {}
        while True:
            while j < n and src[j].isspace():
                j += 1
            if j >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            if src[j] == ">":
                break
            k = j
            while k < n and not src[k].isspace() and src[k] not in "=>":
                k += 1
            attr = src[j:k].lower()
            if not attr:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {begin}'
                )
            while k < n and src[k].isspace():
                k += 1
            if k < n and src[k] == "=":
                k += 1
                while k < n and src[k].isspace():
                    k += 1
                if k >= n:
                    raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
                if src[k] in "\"'":
                    end = src.find(src[k], k + 1)
                    if end == -1:
                        raise EntityParseError(
                            f'Unclosed end of an attribute value of the tag "{tag}" '
                            f"at byte offset {begin}"
                        )
                    value = src[k + 1 : end]
                    k = end + 1
                else:
                    end = k
                    while end < n and not src[end].isspace() and src[end] != ">":
                        end += 1
                    value = src[k:end]
                    k = end
                attrs[attr] = _html_unescape(value)
            else:
                attrs[attr] = ""
            j = k
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {begin}'
            )
        if tag == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise EntityParseError("Custom emoji entity must contain a valid emoji-id")
        stack.append((tag, out.pos, attrs))
        i = j + 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


def _html_entity(out: _Out, tag: str, start: int, attrs: dict[str, str]) -> None:
    kind = _HTML_TAGS[tag]
    if kind == "text_link":
        href = attrs.get("href", "")
        if href:
            out.entity("text_link", start, url=href)
    elif kind == "custom_emoji":
        out.entity("custom_emoji", start, custom_emoji_id=attrs["emoji-id"])
    elif kind == "pre" and attrs.get("language"):
        out.entity("pre", start, language=attrs["language"])
    elif kind == "blockquote" and "expandable" in attrs:
        out.entity("expandable_blockquote", start)
    else:
        out.entity(kind, start)


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _mdv2_is_end(kind: str, src: str, i: int) -> bool:
    c = src[i]
    nxt = src[i + 1] if i + 1 < len(src) else ""
    return {
        "bold": c == "*",
        "italic": c == "_" and nxt != "_",
        "underline": c == "_" and nxt == "_",
        "strikethrough": c == "~",
        "spoiler": c == "|" and nxt == "|",
        "code": c == "`",
        "pre": src.startswith("```", i),
        "text_link": c == "]",
        "custom_emoji": c == "]",
    }[kind]


def _parse_markdown_v2(src: str) -> tuple[str, list[Json]]:
    out = _Out()
    stack: list[tuple[str, int, int, str | None]] = []  # kind, start, byte offset, language
    quote_start: int | None = None
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        line_start = i == 0 or src[i - 1] == "\n"
        if line_start and not stack:
            if c == ">":
                if quote_start is None:
                    quote_start = out.pos
                i += 1
                continue
            if quote_start is not None:
                out.entity("blockquote", quote_start)
                quote_start = None
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) <= 126:
            out.add(src[i + 1])
            i += 2
            continue
        top = stack[-1][0] if stack else None
        reserved = "`" if top in ("code", "pre") else _MDV2_RESERVED
        if c not in reserved:
            if c == "\n" and quote_start is not None and (i + 1 >= n or src[i + 1] != ">"):
                out.entity("blockquote", quote_start)
                quote_start = None
            out.add(c)
            i += 1
            continue
        begin = _byte_offset(src, i)
        if top is not None and _mdv2_is_end(top, src, i):
            kind, start, _, open_language = stack.pop()
            extra: dict[str, Any] = {}
            if kind in ("text_link", "custom_emoji"):
                url = ""
                if i + 1 < n and src[i + 1] == "(":
                    j = i + 2
                    buf: list[str] = []
                    while j < n and src[j] != ")":
                        if src[j] == "\\" and j + 1 < n and 0 < ord(src[j + 1]) <= 126:
                            buf.append(src[j + 1])
                            j += 2
                            continue
                        buf.append(src[j])
                        j += 1
                    if j >= n:
                        raise EntityParseError(
                            f"Can't find end of a URL at byte offset {_byte_offset(src, i + 1)}"
                        )
                    url = "".join(buf)
                    i = j + 1
                else:
                    i += 1
                if kind == "custom_emoji":
                    if not url.startswith("tg://emoji?id="):
                        raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                    extra["custom_emoji_id"] = url[len("tg://emoji?id=") :]
                elif url:
                    extra["url"] = url
                else:
                    continue  # no URL: plain text, as Telegram does
            elif kind == "pre":
                i += 3
                if open_language:
                    extra["language"] = open_language
            elif kind in ("underline", "spoiler"):
                i += 2
            else:
                i += 1
            out.entity(kind, start, **extra)
            continue
        language: str | None = None
        nxt = src[i + 1] if i + 1 < n else ""
        if c == "_":
            kind = "underline" if nxt == "_" else "italic"
            i += 2 if nxt == "_" else 1
        elif c == "*":
            kind, i = "bold", i + 1
        elif c == "~":
            kind, i = "strikethrough", i + 1
        elif c == "|" and nxt == "|":
            kind, i = "spoiler", i + 2
        elif c == "[":
            kind, i = "text_link", i + 1
        elif c == "!" and nxt == "[":
            kind, i = "custom_emoji", i + 2
        elif c == "`" and src.startswith("```", i):
            kind = "pre"
            i += 3
            j = i
            while j < n and not src[j].isspace() and src[j] != "`":
                j += 1
            if j != i and j < n and src[j] != "`":
                language = src[i:j]
                i = j
            if i < n and src[i] in "\r\n":
                i += 2 if i + 1 < n and src[i + 1] in "\r\n" and src[i + 1] != src[i] else 1
        elif c == "`":
            kind, i = "code", i + 1
        else:
            raise EntityParseError(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        stack.append((kind, out.pos, begin, language))
    if stack:
        kind, _, begin, _ = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {begin}"
        )
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    return out.result()


def _parse_markdown(src: str) -> tuple[str, list[Json]]:
    out = _Out()
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.add(src[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        begin = _byte_offset(src, i)
        is_pre = c == "`" and src.startswith("```", i)
        end_char = "]" if c == "[" else c
        i += 3 if is_pre else 1
        language: str | None = None
        if is_pre:
            nl = src.find("\n", i)
            close = src.find("```", i)
            if nl != -1 and (close == -1 or nl < close) and src[i:nl].strip():
                language = src[i:nl].strip()
                i = nl + 1
        start = out.pos
        while i < n and not (src.startswith("```", i) if is_pre else src[i] == end_char):
            out.add(src[i])
            i += 1
        if i >= n:
            raise EntityParseError(f"Can't find end of the entity starting at byte offset {begin}")
        i += 3 if is_pre else 1
        if c == "[":
            if i < n and src[i] == "(":
                close = src.find(")", i)
                if close == -1:
                    raise EntityParseError(
                        f"Can't find end of the entity starting at byte offset {begin}"
                    )
                url = src[i + 1 : close]
                i = close + 1
                if url:
                    out.entity("text_link", start, url=url)
            continue
        kind = {"_": "italic", "*": "bold", "`": "pre" if is_pre else "code"}[c]
        if language:
            out.entity(kind, start, language=language)
        else:
            out.entity(kind, start)
    return out.result()


def parse_entities(text: str, parse_mode: str | None) -> tuple[str, list[Json]]:
    """Telegram's view of `text`: (plain text, entities). Raises EntityParseError."""
    mode = (parse_mode or "").lower()
    if mode == "":
        return text, []
    if mode == "html":
        return _parse_html(text)
    if mode == "markdownv2":
        return _parse_markdown_v2(text)
    if mode == "markdown":
        return _parse_markdown(text)
    raise ValueError(parse_mode)


def _trim(text: str, entities: list[Json]) -> tuple[str, list[Json]]:
    """Telegram drops leading and trailing white space (and shifts the entities)."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    left = _utf16(text[: len(text) - len(text.lstrip())])
    size = _utf16(stripped)
    kept: list[Json] = []
    for e in entities:
        begin = max(0, e["offset"] - left)
        end = min(size, e["offset"] + e["length"] - left)
        if end > begin:
            kept.append({**e, "offset": begin, "length": end - begin})
    return stripped, kept


# -- records -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


class Call(NamedTuple):
    """One API call as the server saw it (params decoded; files as `Upload`)."""

    method: str
    params: Json


class FailedCall(NamedTuple):
    """An API call the server answered with an error."""

    method: str
    params: Json
    error_code: int
    description: str


@dataclass(frozen=True, slots=True)
class BotMessage:
    """A bot message as the user sees it, at one moment (a later edit is a new snapshot)."""

    message_id: int
    chat_id: int
    text: str | None  # after entity parsing and trimming; the caption for a document or photo
    raw_text: str | None  # exactly as the bot sent it
    parse_mode: str | None
    entities: list[Json]
    buttons: Buttons  # inline keyboard rows of (text, callback_data or None)
    reply_markup: Json | None
    edited: bool
    date: int
    edit_date: int | None
    document_name: str | None
    document_data: bytes | None
    raw: Json  # the Message object as the Bot API returned it
    photo_data: bytes | None = None  # the uploaded image, as the bot sent it
    photo_size: tuple[int, int] | None = None  # its (width, height) as the server read it

    def button_labels(self) -> list[str]:
        return [text for row in self.buttons for text, _ in row]

    def callback_data(self, label: str) -> str | None:
        for row in self.buttons:
            for text, data in row:
                if text == label:
                    return data
        raise AssertionError(f"no button {label!r} in message {self.message_id}: {self.buttons}")


class _Formatted(NamedTuple):
    raw: str
    parse_mode: str | None
    text: str
    entities: list[Json]


@dataclass
class _Fault:
    method: str  # lower-case, or "*"
    error: ApiError
    remaining: int
    chat_id: int | None


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_name: str
    mime_type: str
    data: bytes
    file_path: str


@dataclass
class _Msg:
    json: Json
    from_bot: bool
    raw_text: str | None = None
    parse_mode: str | None = None
    document: _StoredFile | None = None
    photo: _StoredFile | None = None
    photo_size: tuple[int, int] | None = None
    edited: bool = False
    deleted: bool = False


@dataclass
class _Event:
    snapshot: BotMessage
    consumed: bool = False


@dataclass
class _Chat:
    id: int
    json: Json
    messages: dict[int, _Msg] = field(default_factory=dict)
    next_message_id: int = 1
    events: list[_Event] = field(default_factory=list)
    blocked: bool = False


class _Signal:
    """Wakes every waiter on `fire()`; waiters re-check their condition (one event loop)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def wait(self, timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)


T = TypeVar("T")


async def _wait_for(signal: _Signal, check: Callable[[], T | None], timeout: float) -> T | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        await signal.wait(remaining)


# -- the server ----------------------------------------------------------------------


Handler: TypeAlias = Callable[[Json], Awaitable[Any]]


class TelegramServer(LoopbackServer):
    """The Bot API on a free 127.0.0.1 port. Start with `async with` or the fixture."""

    max_body = 64 * 1024 * 1024
    backlog = 256

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "tickler_test_bot",
        bot_first_name: str = "Tickler",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.clock = clock
        #: every API call, in order, including getUpdates and the ones answered with an error
        self.calls: list[Call] = []
        #: the calls answered with an error (injected or by validation)
        self.errors: list[FailedCall] = []
        #: callback_query_id -> the answerCallbackQuery params
        self.answered_callbacks: dict[str, Json] = {}
        #: (chat_id, action) for every sendChatAction
        self.chat_actions: list[tuple[int, str]] = []
        #: The bot's reaction on each message, by (chat id, message id): the emoji.
        self.reactions: dict[tuple[int, int], list[str]] = {}
        self.webhook_url = ""
        self._commands: dict[tuple[str, str], list[Json]] = {}
        #: setChatMenuButton: the default menu button (key None) and each private chat's.
        self.menu_buttons: dict[int | None, Json] = {}
        self._last_commands: list[Json] = []
        self._chats: dict[int, _Chat] = {}
        self._users: dict[tuple[int, int], TgUser] = {}
        self._updates: list[Json] = []  # pending (unconfirmed) updates, update_id ascending
        self._next_update_id = 100_000
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._poll_generation = 0
        self._callbacks: dict[str, Json] = {}  # issued, not answered yet
        self._next_callback = 0
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._faults: list[_Fault] = []
        self._slow: dict[str, float] = {}
        self._updates_signal = _Signal()
        self._bot_signal = _Signal()  # bot messages, edits, callback answers
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._methods: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "deletewebhook": self._delete_webhook,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback_query,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "setchatmenubutton": self._set_chat_menu_button,
            "getchatmenubutton": self._get_chat_menu_button,
            "sendchataction": self._send_chat_action,
            "setmessagereaction": self._set_message_reaction,
            "senddocument": self._send_document,
            "sendphoto": self._send_photo,
            "getfile": self._get_file,
        }

    # -- addresses ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """For `ApplicationBuilder.base_url` (PTB appends `{token}/{method}`)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For `ApplicationBuilder.base_file_url`."""
        return f"{self.url}/file/bot"

    def application_builder(self) -> InitApplicationBuilder:
        """`Application.builder()` with token, base_url and base_file_url set."""
        from telegram.ext import Application

        return (
            Application.builder()
            .token(self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    # -- users -------------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str = "Alice",
        chat_id: int | None = None,
        *,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = "en",
    ) -> TgUser:
        """The driver for a person; their chat (private unless `chat_id` < 0) now exists."""
        chat_id = user_id if chat_id is None else chat_id
        key = (user_id, chat_id)
        if key not in self._users:
            self._users[key] = TgUser(
                self, user_id, first_name, chat_id, username, last_name, language_code
            )
            if chat_id not in self._chats:
                if chat_id < 0:
                    chat_json: Json = {"id": chat_id, "type": "group", "title": "Test group"}
                else:
                    chat_json = {"id": chat_id, "type": "private", "first_name": first_name}
                    if last_name:
                        chat_json["last_name"] = last_name
                    if username:
                        chat_json["username"] = username
                self._chats[chat_id] = _Chat(chat_id, chat_json)
        return self._users[key]

    @property
    def bot_user(self) -> Json:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # -- fault injection -----------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = 1,
        count: int = 1,
        *,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next `count` calls of `method` ("*" = any) with this error, untouched.

        The description defaults to Telegram's for the code ("Too Many Requests: retry after
        N" for 429, which alone carries `parameters.retry_after`). With `chat_id`, only calls
        for that chat count.
        """
        if description is None:
            if error_code == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            else:
                description = _DEFAULT_DESCRIPTIONS.get(error_code, f"Error {error_code}")
        error = ApiError(error_code, description, retry_after if error_code == 429 else None)
        self._faults.append(_Fault(method.lower(), error, count, chat_id))

    def block(self, chat_id: int) -> None:
        """From now on every method for this chat answers 403 "bot was blocked by the user"."""
        self._chat(chat_id).blocked = True

    def unblock(self, chat_id: int) -> None:
        self._chat(chat_id).blocked = False

    def slow(self, method: str, seconds: float) -> None:
        """Answer `method` ("*" = any) `seconds` late (0 turns it off).

        The call takes effect at once; only the answer is late, so a client that times out
        has still sent its message (as with the real Telegram).
        """
        if seconds:
            self._slow[method.lower()] = seconds
        else:
            self._slow.pop(method.lower(), None)

    def reset_faults(self) -> None:
        self._faults.clear()
        self._slow.clear()
        for chat in self._chats.values():
            chat.blocked = False

    # -- inspection ----------------------------------------------------------------

    @property
    def commands(self) -> list[Json]:
        """The command list of the latest setMyCommands call (any scope)."""
        return [dict(c) for c in self._last_commands]

    def commands_for(self, scope_type: str = "default", language_code: str = "") -> list[Json]:
        return [dict(c) for c in self._commands.get((scope_type, language_code), [])]

    def calls_to(self, method: str) -> list[Json]:
        """The params of every call of `method` (case-insensitive), in order."""
        return [c.params for c in self.calls if c.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> list[Json]:
        """Updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    async def wait_answered(self, callback_query_id: str, timeout: float = 5.0) -> Json:
        """Wait until the bot answered this callback query; return the answer's params."""
        found = await _wait_for(
            self._bot_signal, lambda: self.answered_callbacks.get(callback_query_id), timeout
        )
        if found is None:
            raise AssertionError(
                f"callback query {callback_query_id} not answered within {timeout} s"
                f"{self._error_note()}"
            )
        return found

    async def wait_for_call(self, method: str, timeout: float = 5.0, n: int = 1) -> list[Json]:
        """Wait until `method` was called at least `n` times; return the params of all calls."""

        def check() -> list[Json] | None:
            found = self.calls_to(method)
            return found if len(found) >= n else None

        calls = await _wait_for(self._bot_signal, check, timeout)
        if calls is None:
            raise AssertionError(
                f"{len(self.calls_to(method))} of {n} {method} calls within {timeout} s"
                f"{self._error_note()}"
            )
        return calls

    async def wait_polling(self, timeout: float = 5.0) -> None:
        """Wait until some client called getUpdates (the bot is polling)."""
        await self.wait_for_call("getUpdates", timeout)

    def _error_note(self) -> str:
        if not self.errors:
            return ""
        last = self.errors[-5:]
        shown = "; ".join(f"{e.method} -> {e.error_code} {e.description}" for e in last)
        return f" (latest API errors: {shown})"

    # -- updates -----------------------------------------------------------------

    def enqueue_update(self, kind: str, payload: Json) -> Json:
        """Queue an Update of `kind` ("message", "callback_query", ...) for getUpdates."""
        self._next_update_id += 1
        update = {"update_id": self._next_update_id, kind: payload}
        self._updates.append(update)
        self._updates_signal.fire()
        return update

    def _new_message_id(self, chat: _Chat) -> int:
        mid = chat.next_message_id
        chat.next_message_id += 1
        return mid

    def _now(self) -> int:
        return int(self.clock())

    # -- HTTP --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            path = request.path
            if path.startswith("/file/bot"):
                return self._download(path[len("/file/bot") :])
            if not path.startswith("/bot"):
                return web.json_response(ApiError(404, "Not Found").body(), status=404)
            token, _, method = path[len("/bot") :].partition("/")
            if token != self.token:
                return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
            try:
                params = await self._read_params(request)
            except ValueError:
                self.errors.append(FailedCall(method, {}, 400, "Bad Request: can't parse JSON"))
                return web.json_response(_bad("can't parse JSON").body(), status=400)
            return await self._call(method, params)
        finally:
            self._inflight.discard(task)

    async def _read_params(self, request: web.Request) -> Json:
        params: Json = {k: _decode_form_value(k, v) for k, v in request.query.items()}
        if not request.can_read_body:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
            for key in (
                "reply_markup",
                "commands",
                "scope",
                "menu_button",
                "allowed_updates",
                "reply_parameters",
                "reaction",
            ):
                if isinstance(params.get(key), str):
                    params[key] = _decode_form_value(key, params[key])
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = _decode_form_value(key, value)
                elif isinstance(value, web.FileField):
                    params[key] = Upload(
                        filename=value.filename,
                        content_type=value.content_type,
                        data=value.file.read(),
                    )
        else:
            await request.read()
        return params

    async def _call(self, method: str, params: Json) -> web.StreamResponse:
        self.calls.append(Call(method, params))
        self._bot_signal.fire()
        name = method.lower()
        try:
            handler = self._methods.get(name)
            if handler is None:
                raise ApiError(404, "Not Found")
            self._inject_fault(name, params)
            result = await handler(params)
            body: Json = {"ok": True, "result": result}
            status = 200
        except ApiError as err:
            self.errors.append(FailedCall(method, params, err.error_code, err.description))
            body, status = err.body(), err.error_code
        delay = self._slow.get(name, self._slow.get("*", 0.0))
        if delay:
            await asyncio.sleep(delay)
        return web.json_response(body, status=status)

    def _inject_fault(self, name: str, params: Json) -> None:
        for fault in self._faults:
            if fault.method not in (name, "*"):
                continue
            if fault.chat_id is not None and _as_int(params.get("chat_id")) != fault.chat_id:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
            raise fault.error

    def _download(self, rest: str) -> web.StreamResponse:
        token, _, file_path = rest.partition("/")
        if token != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        stored = self._files_by_path.get(file_path)
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").body(), status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # -- helpers for methods -------------------------------------------------------

    def _chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        return chat

    def _target_chat(self, params: Json) -> _Chat:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        chat_id = _as_int(raw)
        if chat_id is None:
            raise _bad("chat not found")
        chat = self._chat(chat_id)
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _formatted(
        self, params: Json, text_key: str, entities_key: str, limit: int, *, required: bool
    ) -> _Formatted | None:
        """The text (or caption) as Telegram sees it, checked like Telegram does."""
        raw = params.get(text_key)
        if raw is None or raw == "":
            if required:
                raise _bad("message text is empty")
            return None
        raw = str(raw)
        parse_mode = params.get("parse_mode") or None
        entities = params.get(entities_key)
        if entities is not None:
            if not isinstance(entities, list):
                raise _bad(f"can't parse {entities_key} JSON object")
            text, parsed = raw, [dict(e) for e in entities]
        else:
            if parse_mode is not None and str(parse_mode).lower() not in (
                "html",
                "markdownv2",
                "markdown",
            ):
                raise _bad(f"unsupported parse_mode {parse_mode}")
            try:
                text, parsed = parse_entities(raw, parse_mode)
            except EntityParseError as err:
                raise _bad(f"can't parse entities: {err}") from None
        text, parsed = _trim(text, parsed)
        if not text:
            if required:
                raise _bad("message text is empty")
            return None
        if len(text) > limit:
            raise _bad("message is too long" if required else "message caption is too long")
        return _Formatted(raw, parse_mode, text, parsed)

    def _reply_markup(self, params: Json, *, inline_only: bool, chat: _Chat) -> Json | None:
        markup = params.get("reply_markup")
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if inline_only:
                raise _bad("inline keyboard expected")
            if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise _bad("can't parse reply keyboard markup JSON object")
            return None  # a reply keyboard is not part of the returned Message
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
        total = 0
        for row in rows:
            for button in row:
                total += 1
                if not isinstance(button, dict):
                    raise _bad(
                        "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
                    )
                if not isinstance(button.get("text"), str) or not button["text"]:
                    raise _bad(_TEXT_BUTTON)
                actions = [a for a in BUTTON_ACTIONS if a in button]
                if len(actions) != 1:
                    raise _bad(_TEXT_BUTTON)
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
                if "url" in button:
                    url = button["url"]
                    if not isinstance(url, str) or not re.match(r"(https?|tg)://\S+$", url):
                        raise _bad("BUTTON_URL_INVALID")
                if "web_app" in button:
                    _check_web_app(button["web_app"], "inline keyboard button Web App URL")
                    if chat.json.get("type") != "private":
                        # Telegram opens a Mini App from an inline button in private chats only.
                        raise _bad("BUTTON_TYPE_INVALID")
        if total > MAX_BUTTONS:
            raise _bad("REPLY_MARKUP_TOO_LONG")
        rows_out = [row for row in rows if row]
        return {"inline_keyboard": rows_out} if rows_out else None

    def _bot_message(self, chat: _Chat, params: Json, msg_id: str = "message_id") -> _Msg:
        if params.get("inline_message_id"):
            raise _bad("inline messages are not supported by the test server")
        raw = params.get(msg_id)
        if raw is None or raw == "":
            raise _bad("message identifier is not specified")
        mid = _as_int(raw)
        msg = chat.messages.get(mid) if mid is not None else None
        if msg is None or msg.deleted:
            raise _bad("message to edit not found")
        if not msg.from_bot:
            raise _bad("message can't be edited")
        return msg

    def _record(self, chat: _Chat, msg: _Msg, *, edited: bool) -> BotMessage:
        snap = _snapshot(chat.id, msg, edited=edited)
        chat.events.append(_Event(snap))
        self._bot_signal.fire()
        return snap

    # -- methods -----------------------------------------------------------------

    async def _get_me(self, params: Json) -> Json:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: Json) -> list[Json]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params.get("offset")) or 0
        limit = _as_int(params.get("limit")) or 100
        if not 1 <= limit <= 100:
            limit = 100
        timeout = max(0.0, _as_float(params.get("timeout")) or 0.0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES
        self._confirm(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates_signal.fire()  # terminates an earlier, still waiting getUpdates
        superseded = False

        def ready() -> list[Json] | None:
            nonlocal superseded
            if self._poll_generation != generation:
                superseded = True
                return []
            self._drop_disallowed()
            return self._updates[:limit] or None

        found = await _wait_for(self._updates_signal, ready, timeout) if timeout else ready()
        if superseded:
            # A client that gave up on this poll (PTB cancels it on stop) gets its handler
            # cancelled in this pause, so only a poll that is really still waiting hears 409.
            await asyncio.sleep(0.05)
            raise ApiError(409, _DEFAULT_DESCRIPTIONS[409])
        return found or []

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

    def _drop_disallowed(self) -> None:
        self._updates = [
            u
            for u in self._updates
            if any(k in self._allowed_updates for k in u if k != "update_id")
        ]

    async def _delete_webhook(self, params: Json) -> bool:
        self.webhook_url = ""
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _set_webhook(self, params: Json) -> bool:
        url = str(params.get("url") or "")
        if url and not url.startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: Json) -> Json:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _send_message(self, params: Json) -> Json:
        chat = self._target_chat(params)
        fmt = self._formatted(params, "text", "entities", MAX_TEXT, required=True)
        assert fmt is not None
        markup = self._reply_markup(params, inline_only=False, chat=chat)
        message = self._new_bot_json(chat, params)
        message["text"] = fmt.text
        if fmt.entities:
            message["entities"] = fmt.entities
        if markup:
            message["reply_markup"] = markup
        msg = _Msg(message, from_bot=True, raw_text=fmt.raw, parse_mode=fmt.parse_mode)
        chat.messages[message["message_id"]] = msg
        self._record(chat, msg, edited=False)
        return message

    def _new_bot_json(self, chat: _Chat, params: Json) -> Json:
        message: Json = {
            "message_id": self._new_message_id(chat),
            "from": self.bot_user,
            "chat": dict(chat.json),
            "date": self._now(),
        }
        reply_to = _as_int(params.get("reply_to_message_id"))
        reply_parameters = params.get("reply_parameters")
        if isinstance(reply_parameters, dict):
            reply_to = _as_int(reply_parameters.get("message_id"))
        if reply_to is not None:
            original = chat.messages.get(reply_to)
            if original is None or original.deleted:
                lenient = _as_bool(params.get("allow_sending_without_reply")) or (
                    isinstance(reply_parameters, dict)
                    and _as_bool(reply_parameters.get("allow_sending_without_reply"))
                )
                if not lenient:
                    chat.next_message_id -= 1
                    raise _bad("message to be replied not found")
            else:
                message["reply_to_message"] = dict(original.json)
        return message

    async def _edit_message_text(self, params: Json) -> Json:
        chat = self._target_chat(params)
        msg = self._bot_message(chat, params)
        if "text" not in msg.json:
            raise _bad("there is no text in the message to edit")
        fmt = self._formatted(params, "text", "entities", MAX_TEXT, required=True)
        assert fmt is not None
        markup = self._reply_markup(params, inline_only=True, chat=chat)
        if (
            fmt.text == msg.json.get("text")
            and fmt.entities == msg.json.get("entities", [])
            and markup == msg.json.get("reply_markup")
        ):
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        msg.json["text"] = fmt.text
        _set_or_pop(msg.json, "entities", fmt.entities or None)
        _set_or_pop(msg.json, "reply_markup", markup)
        msg.json["edit_date"] = self._now()
        msg.raw_text, msg.parse_mode, msg.edited = fmt.raw, fmt.parse_mode, True
        self._record(chat, msg, edited=True)
        return dict(msg.json)

    async def _edit_message_reply_markup(self, params: Json) -> Json:
        chat = self._target_chat(params)
        msg = self._bot_message(chat, params)
        markup = self._reply_markup(params, inline_only=True, chat=chat)
        if markup == msg.json.get("reply_markup"):
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        _set_or_pop(msg.json, "reply_markup", markup)
        msg.json["edit_date"] = self._now()
        msg.edited = True
        self._record(chat, msg, edited=True)
        return dict(msg.json)

    async def _delete_message(self, params: Json) -> bool:
        msg = self._live_message(params, "message to delete not found")
        msg.deleted = True
        self._bot_signal.fire()
        return True

    def _live_message(self, params: Json, not_found: str) -> _Msg:
        """The chat's message `message_id` names, not deleted; Telegram's 400s otherwise."""
        chat = self._target_chat(params)
        mid = _as_int(params.get("message_id"))
        if mid is None:
            raise _bad("message identifier is not specified")
        msg = chat.messages.get(mid)
        if msg is None or msg.deleted:
            raise _bad(not_found)
        return msg

    async def _answer_callback_query(self, params: Json) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if not query_id:
            raise _bad("QUERY_ID_INVALID")
        if query_id not in self._callbacks:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and len(str(text)) > MAX_CALLBACK_ANSWER:
            raise _bad("MESSAGE_TOO_LONG")
        del self._callbacks[query_id]
        self.answered_callbacks[query_id] = dict(params)
        self._bot_signal.fire()
        return True

    async def _set_my_commands(self, params: Json) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > MAX_COMMANDS:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        cleaned: list[Json] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = _commands_key(params)
        self._commands[key] = cleaned
        self._last_commands = cleaned
        return True

    async def _get_my_commands(self, params: Json) -> list[Json]:
        return [dict(c) for c in self._commands.get(_commands_key(params), [])]

    async def _delete_my_commands(self, params: Json) -> bool:
        self._commands.pop(_commands_key(params), None)
        return True

    async def _set_chat_menu_button(self, params: Json) -> bool:
        key = self._menu_button_key(params)
        button = params.get("menu_button")
        if button is None or button == "":
            button = {"type": "default"}
        if not isinstance(button, dict):
            raise _bad("can't parse menu button JSON object")
        kind = button.get("type")
        if kind in ("default", "commands"):
            self.menu_buttons[key] = {"type": kind}
            return True
        if kind != "web_app":
            raise _bad("unsupported menu button type")
        text = button.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("menu button text is empty")
        _check_web_app(button.get("web_app"), "menu button Web App URL")
        self.menu_buttons[key] = {"type": "web_app", "text": text, "web_app": button["web_app"]}
        return True

    async def _get_chat_menu_button(self, params: Json) -> Json:
        key = self._menu_button_key(params)
        return dict(self.menu_buttons.get(key, self.menu_buttons.get(None, {"type": "default"})))

    def _menu_button_key(self, params: Json) -> int | None:
        """None: the default menu button; else a private chat the bot knows."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            return None
        chat_id = _as_int(raw)
        chat = self._chat(chat_id) if chat_id is not None else None
        if chat is None or chat.json.get("type") != "private":
            raise _bad("chat not found")
        return chat.id

    async def _send_chat_action(self, params: Json) -> bool:
        chat = self._target_chat(params)
        action = params.get("action")
        if not action:
            raise _bad("action is empty")
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self.chat_actions.append((chat.id, str(action)))
        return True

    async def _set_message_reaction(self, params: Json) -> bool:
        chat = self._target_chat(params)
        msg = self._live_message(params, "message to react not found")
        reaction = params.get("reaction", [])
        if reaction in (None, ""):
            reaction = []
        if not isinstance(reaction, list):
            raise _bad("can't parse reaction types JSON object")
        emoji: list[str] = []
        for kind in reaction:
            if not isinstance(kind, dict) or kind.get("type") != "emoji":
                raise _bad("REACTION_INVALID")
            if kind.get("emoji") not in REACTION_EMOJI:
                raise _bad("REACTION_INVALID")
            emoji.append(str(kind["emoji"]))
        # A bot is not a premium user: one reaction per message.
        if len(emoji) > 1:
            raise _bad("REACTIONS_TOO_MANY")
        self.reactions[(chat.id, int(msg.json["message_id"]))] = emoji
        self._bot_signal.fire()
        return True

    async def _send_document(self, params: Json) -> Json:
        chat = self._target_chat(params)
        document = params.get("document")
        if isinstance(document, Upload):
            if not document.data:
                raise _bad("file must be non-empty")
            stored = self._store_file(document)
        elif isinstance(document, str) and document.startswith("attach://"):
            upload = params.get(document[len("attach://") :])
            if not isinstance(upload, Upload):
                raise _bad("wrong file identifier/HTTP URL specified")
            stored = self._store_file(upload)
        elif isinstance(document, str) and document in self._files:
            stored = self._files[document]
        elif not document:
            raise _bad("there is no document in the request")
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        fmt = self._formatted(params, "caption", "caption_entities", MAX_CAPTION, required=False)
        markup = self._reply_markup(params, inline_only=False, chat=chat)
        message = self._new_bot_json(chat, params)
        message["document"] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": stored.file_name,
            "mime_type": stored.mime_type,
            "file_size": len(stored.data),
        }
        if fmt is not None:
            message["caption"] = fmt.text
            if fmt.entities:
                message["caption_entities"] = fmt.entities
        if markup:
            message["reply_markup"] = markup
        msg = _Msg(
            message,
            from_bot=True,
            raw_text=fmt.raw if fmt else None,
            parse_mode=fmt.parse_mode if fmt else None,
            document=stored,
        )
        chat.messages[message["message_id"]] = msg
        self._record(chat, msg, edited=False)
        return message

    async def _send_photo(self, params: Json) -> Json:
        chat = self._target_chat(params)
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            photo = params.get(photo[len("attach://") :])
            if not isinstance(photo, Upload):
                raise _bad("wrong file identifier/HTTP URL specified")
        if isinstance(photo, Upload):
            if not photo.data:
                raise _bad("file must be non-empty")
            if len(photo.data) > MAX_PHOTO_BYTES:
                raise _bad("PHOTO_SAVE_FILE_INVALID")
            size = image_size(photo.data)
            if size is None:
                raise _bad("IMAGE_PROCESS_FAILED")
            width, height = size
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise _bad("PHOTO_INVALID_DIMENSIONS")
            stored = self._store_file(photo, folder="photos")
        elif isinstance(photo, str) and photo in self._files:
            stored = self._files[photo]
            size = image_size(stored.data)
            if size is None:
                raise _bad("wrong file identifier/HTTP URL specified")
        elif not photo:
            raise _bad("there is no photo in the request")
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        fmt = self._formatted(params, "caption", "caption_entities", MAX_CAPTION, required=False)
        markup = self._reply_markup(params, inline_only=False, chat=chat)
        message = self._new_bot_json(chat, params)
        message["photo"] = self._photo_sizes(stored, size)
        if fmt is not None:
            message["caption"] = fmt.text
            if fmt.entities:
                message["caption_entities"] = fmt.entities
        if markup:
            message["reply_markup"] = markup
        msg = _Msg(
            message,
            from_bot=True,
            raw_text=fmt.raw if fmt else None,
            parse_mode=fmt.parse_mode if fmt else None,
            photo=stored,
            photo_size=size,
        )
        chat.messages[message["message_id"]] = msg
        self._record(chat, msg, edited=False)
        return message

    def _photo_sizes(self, stored: _StoredFile, size: tuple[int, int]) -> list[Json]:
        """Telegram's PhotoSize list: a scaled copy per side limit below the image's longest
        side, then the image itself (capped at the largest limit). The copies share the
        stored bytes here; only their declared dimensions differ."""
        width, height = size
        longest = max(width, height)
        sides = [side for side in PHOTO_SIDES if side < longest][: len(PHOTO_SIDES) - 1]
        sides.append(min(longest, PHOTO_SIDES[-1]))
        out: list[Json] = []
        for n, side in enumerate(sides):
            last = n == len(sides) - 1
            file_id = stored.file_id if last else f"{stored.file_id}_{side}"
            unique_id = stored.file_unique_id if last else f"{stored.file_unique_id}{n}"
            self._files.setdefault(file_id, stored)
            out.append(
                {
                    "file_id": file_id,
                    "file_unique_id": unique_id,
                    "width": round(width * side / longest),
                    "height": round(height * side / longest),
                    "file_size": len(stored.data),
                }
            )
        return out

    def _store_file(self, upload: Upload, folder: str = "documents") -> _StoredFile:
        n = len(self._files_by_path) + 1
        name = upload.filename or f"file_{n}"
        suffix = name.rsplit(".", 1)[1] if "." in name else "bin"
        stored = _StoredFile(
            file_id=f"BQACAgQAAxkDAAI{n:08d}",
            file_unique_id=f"AgAD{n:06d}",
            file_name=name,
            mime_type=upload.content_type or "application/octet-stream",
            data=upload.data,
            file_path=f"{folder}/file_{n}.{suffix}",
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    async def _get_file(self, params: Json) -> Json:
        file_id = str(params.get("file_id") or "")
        stored = self._files.get(file_id)
        if stored is None:
            raise _bad("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG (its IHDR chunk) or a JPEG (its first SOFn frame header);
    None for anything else or a truncated header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = int.from_bytes(data[16:20]), int.from_bytes(data[20:24])
        return (width, height) if width and height else None
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height = int.from_bytes(data[i + 5 : i + 7])
            width = int.from_bytes(data[i + 7 : i + 9])
            return (width, height) if width and height else None
        i += 2 + length
    return None


def _check_web_app(web_app: Any, what: str) -> None:
    """A WebAppInfo: an object whose `url` is an HTTPS address, as Telegram demands."""
    if not isinstance(web_app, dict) or not isinstance(web_app.get("url"), str):
        raise _bad("can't parse WebAppInfo JSON object")
    url = web_app["url"]
    if not re.match(r"https://[^\s/?#]+(/\S*)?$", url):
        raise _bad(f"{what} '{url}' is invalid: Only HTTPS links are allowed")


def _commands_key(params: Json) -> tuple[str, str]:
    scope = params.get("scope")
    scope_key = "default"
    if isinstance(scope, dict):
        scope_key = str(scope.get("type", "default"))
        if "chat_id" in scope:
            scope_key += f":{scope['chat_id']}"
        if "user_id" in scope:
            scope_key += f":{scope['user_id']}"
    return scope_key, str(params.get("language_code") or "")


def _set_or_pop(d: Json, key: str, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


def _decode_form_value(key: str, value: str) -> Any:
    if key not in _JSON_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def _buttons(markup: Json | None) -> Buttons:
    if not markup:
        return []
    return [
        [(str(b.get("text", "")), b.get("callback_data")) for b in row]
        for row in markup.get("inline_keyboard", [])
    ]


def _snapshot(chat_id: int, msg: _Msg, *, edited: bool) -> BotMessage:
    data = msg.json
    text = data.get("text", data.get("caption"))
    markup = data.get("reply_markup")
    entities: list[Json] = copy.deepcopy(data.get("entities") or data.get("caption_entities") or [])
    return BotMessage(
        message_id=data["message_id"],
        chat_id=chat_id,
        text=text,
        raw_text=msg.raw_text,
        parse_mode=msg.parse_mode,
        entities=entities,
        buttons=_buttons(markup),
        reply_markup=copy.deepcopy(markup) if markup else None,
        edited=edited or msg.edited,
        date=data["date"],
        edit_date=data.get("edit_date"),
        document_name=msg.document.file_name if msg.document else None,
        document_data=msg.document.data if msg.document else None,
        raw=copy.deepcopy(data),
        photo_data=msg.photo.data if msg.photo else None,
        photo_size=msg.photo_size,
    )


# -- the user-side driver --------------------------------------------------------------


class TgUser:
    """A person in a chat with the bot: sends messages, presses buttons, reads replies.

    `wait_reply` consumes the bot's messages (sends and edits) in arrival order;
    `last_reply`, `messages` and `buttons` only look.
    """

    def __init__(
        self,
        server: TelegramServer,
        user_id: int,
        first_name: str,
        chat_id: int,
        username: str | None,
        last_name: str | None,
        language_code: str | None,
    ) -> None:
        self.server = server
        self.user_id = user_id
        self.first_name = first_name
        self.chat_id = chat_id
        self.username = username
        self.last_name = last_name
        self.language_code = language_code

    def __repr__(self) -> str:
        return f"TgUser({self.user_id}, {self.first_name!r}, chat_id={self.chat_id})"

    @property
    def user_json(self) -> Json:
        out: Json = {"id": self.user_id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        if self.language_code:
            out["language_code"] = self.language_code
        return out

    @property
    def _chat(self) -> _Chat:
        return self.server._chats[self.chat_id]

    # -- acting ------------------------------------------------------------------

    async def send(self, text: str) -> Json:
        """Send a text message (a leading /command gets its bot_command entity)."""
        chat = self._chat
        message: Json = {
            "message_id": self.server._new_message_id(chat),
            "from": self.user_json,
            "chat": dict(chat.json),
            "date": self.server._now(),
            "text": text,
        }
        command = re.match(r"/[A-Za-z0-9_]{1,64}(@[A-Za-z0-9_]{3,64})?", text)
        if command:
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16(command.group(0))}
            ]
        chat.messages[message["message_id"]] = _Msg(message, from_bot=False)
        self.server.enqueue_update("message", message)
        return message

    async def press(self, label: str, message: BotMessage | int | None = None) -> str:
        """Press the inline button with this label (or callback_data); return the query id.

        Looks in `message` if given, else in the newest bot message in this chat that has
        such a button.
        """
        candidates: list[_Msg]
        chat = self._chat
        if message is not None:
            mid = message if isinstance(message, int) else message.message_id
            found = chat.messages.get(mid)
            if found is None or found.deleted or not found.from_bot:
                raise AssertionError(f"no bot message {mid} in chat {self.chat_id}")
            candidates = [found]
        else:
            candidates = [
                m for m in reversed(chat.messages.values()) if m.from_bot and not m.deleted
            ]
        for msg in candidates:
            rows = _buttons(msg.json.get("reply_markup"))
            for match_on in (0, 1):  # label first, then callback_data
                for row in rows:
                    for button in row:
                        if button[match_on] == label:
                            if button[1] is None:
                                raise AssertionError(
                                    f"button {label!r} in message {msg.json['message_id']} "
                                    "has no callback_data (a URL or other button)"
                                )
                            return self._callback(button[1], msg.json)
        shown = [(m.json["message_id"], _buttons(m.json.get("reply_markup"))) for m in candidates]
        raise AssertionError(
            f"no inline button {label!r} in chat {self.chat_id}; buttons by message: {shown}"
        )

    async def press_data(self, data: str, message_id: int) -> str:
        """Forge a callback query with arbitrary `data` on `message_id` (security tests)."""
        found = self._chat.messages.get(message_id)
        if found is not None and not found.deleted:
            message = found.json
        else:  # Telegram's InaccessibleMessage
            message = {"chat": dict(self._chat.json), "message_id": message_id, "date": 0}
        return self._callback(data, message)

    def _callback(self, data: str, message: Json) -> str:
        server = self.server
        server._next_callback += 1
        query_id = str(4_242_000_000_000_000_000 + server._next_callback)
        query: Json = {
            "id": query_id,
            "from": self.user_json,
            "chat_instance": str(-(abs(self.chat_id) * 7919 + 13)),
            "message": copy.deepcopy(message),
            "data": data,
        }
        server._callbacks[query_id] = query
        server.enqueue_update("callback_query", query)
        return query_id

    # -- reading -------------------------------------------------------------------

    async def wait_reply(self, timeout: float = 5.0, containing: str | None = None) -> BotMessage:
        """The next bot message (sent or edited) after the last one consumed.

        With `containing`, the next one whose text has it; the ones before it are consumed
        too.
        """
        chat = self._chat

        def check() -> BotMessage | None:
            for event in chat.events:
                if event.consumed:
                    continue
                event.consumed = True
                text = event.snapshot.text or ""
                if containing is None or containing in text:
                    return event.snapshot
            return None

        found = await _wait_for(self.server._bot_signal, check, timeout)
        if found is None:
            seen = [m.text for m in self.messages]
            what = f" containing {containing!r}" if containing is not None else ""
            raise AssertionError(
                f"no bot reply{what} to chat {self.chat_id} within {timeout} s; "
                f"bot messages in the chat: {seen}{self.server._error_note()}"
            )
        return found

    async def wait_edit(self, message_id: int, timeout: float = 5.0) -> BotMessage:
        """The next (not yet consumed) edit of `message_id`."""
        chat = self._chat

        def check() -> BotMessage | None:
            for event in chat.events:
                if (
                    not event.consumed
                    and event.snapshot.edited
                    and event.snapshot.message_id == message_id
                ):
                    event.consumed = True
                    return event.snapshot
            return None

        found = await _wait_for(self.server._bot_signal, check, timeout)
        if found is None:
            raise AssertionError(
                f"message {message_id} in chat {self.chat_id} not edited within {timeout} s"
                f"{self.server._error_note()}"
            )
        return found

    def mark_read(self) -> None:
        """Consume every bot message so far (`wait_reply` then waits for a new one)."""
        for event in self._chat.events:
            event.consumed = True

    @property
    def messages(self) -> list[BotMessage]:
        """The bot's messages in this chat as they are now (edits applied, deleted left out)."""
        return [
            _snapshot(self.chat_id, m, edited=False)
            for m in self._chat.messages.values()
            if m.from_bot and not m.deleted
        ]

    @property
    def deleted_message_ids(self) -> list[int]:
        return [mid for mid, m in self._chat.messages.items() if m.deleted]

    def last_reply(self) -> BotMessage:
        """The newest bot message in this chat, as it is now."""
        messages = self.messages
        if not messages:
            raise AssertionError(f"the bot has sent nothing to chat {self.chat_id}")
        return messages[-1]

    def buttons(self, message: BotMessage | int | None = None) -> Buttons:
        """The inline keyboard of `message` (default: the newest bot message), as it is now."""
        if message is None:
            return self.last_reply().buttons
        mid = message if isinstance(message, int) else message.message_id
        found = self._chat.messages.get(mid)
        if found is None or not found.from_bot:
            raise AssertionError(f"no bot message {mid} in chat {self.chat_id}")
        return _buttons(found.json.get("reply_markup"))
