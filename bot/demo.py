"""`tickler demo` (`./demo`): a newcomer's first look, and a smoke test, with no
credentials at all.

It starts the project's own strict Bot API server and agent stub on 127.0.0.1 (the
ones the tests use), runs the real bot against them on a temporary database, plays a
short operator conversation — create a daily brief, run it now and read the agent's
answer, look at the history, pause it, approve a schedule the agent proposes — and
prints the chat as a person would read it. Any step that does not happen stops the demo
with one sentence and status 1.

The fakes ship with the bot (`bot/demo_kit/`), so the demo runs wherever Tickler is
installed. The bot's clock is a fake one at a fixed morning, so the transcript reads the
same on every run (only the generated ids differ).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.logs import configure_logging

if TYPE_CHECKING:
    from bot.demo_kit.agent_stub import RecordedRequest, Reply
    from bot.demo_kit.harness import BotHarness
    from bot.demo_kit.telegram_server import BotMessage, TgUser

__all__ = ["main", "play"]

#: How long one step may take before the demo calls it broken.
STEP_TIMEOUT = 10.0
BRIEF_PROMPT = "Prepare my daily brief for {weekday} {date}."
AGENT_BRIEF = (
    "Good morning! Today: stand-up at 10:00, the sponsor call at 15:00, and the "
    "invoice for ACME is due."
)
INBOX_REQUEST = "Could you also check my inbox twice a day?"
AGENT_PROPOSES = "I proposed a twice-daily inbox check; it starts once you approve it."
_INDENT = " " * 9
#: Button rows wrap at this width, so a keyboard of eight presets stays readable.
_WIDTH = 72


class Transcript:
    """The conversation as a person reads it, printed as it happens. An edited message
    shows only the lines the edit added (a choice echoed, a verdict), as the eye sees it."""

    def __init__(self, user: TgUser, out: TextIO) -> None:
        self.user = user
        self.out = out
        self.lines: list[str] = []
        self._shown: dict[int, list[str]] = {}

    def _print(self, who: str, text: str) -> None:
        first, *rest = text.splitlines() or [""]
        self._emit(f"{who:<9}{first}".rstrip())
        for line in rest:
            self._emit(f"{_INDENT}{line}".rstrip())

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        self.out.write(line + "\n")
        self.out.flush()

    def _show(self, message: BotMessage) -> None:
        lines = (message.text or "").splitlines()
        if message.document_name:
            lines.append(f"📎 {message.document_name}")
        before = self._shown.get(message.message_id)
        self._shown[message.message_id] = lines
        if before is not None:
            added = [line for line in lines if line not in before]
            if added:
                self._print("Tickler:", "(edits its message) " + "\n".join(added))
            return
        self._print("Tickler:", "\n".join(lines))
        labels = [f"[{label}]" for label in message.button_labels()]
        if labels:
            self._print("", "\n".join(textwrap.wrap(" ".join(labels), _WIDTH)))

    async def say(self, text: str, *expect: str) -> list[BotMessage]:
        self._print("You:", text)
        await self.user.send(text)
        return await self.read(*expect)

    async def press(
        self, label: str, *expect: str, on: BotMessage | None = None
    ) -> list[BotMessage]:
        self._print("You:", f"[{label}]")
        await self.user.press(label, on)
        return await self.read(*expect)

    async def read(self, *expect: str) -> list[BotMessage]:
        """The bot's messages until one containing each of `expect` was shown."""
        wanted = list(expect)
        seen: list[BotMessage] = []
        while wanted:
            message = await self.user.wait_reply(timeout=STEP_TIMEOUT)
            self._show(message)
            seen.append(message)
            wanted = [w for w in wanted if w not in (message.text or "")]
        self._emit("")
        return seen


def _agent(request: RecordedRequest) -> Reply:
    """The agent's answers: a brief for a scheduled run; for the inbox request a
    propose_schedule tool call, then a sentence once it sees the tool's result."""
    from bot.demo_kit.agent_stub import Reply, openai_completion

    turns = request.json["messages"]
    if turns[-1]["role"] == "tool":
        return Reply(json=openai_completion(AGENT_PROPOSES))
    if "inbox" in str(turns[-1]["content"]):
        arguments = {
            "name": "Inbox check",
            "cron": "0 9,17 * * *",
            "prompt": "Check my inbox and list what needs an answer today.",
            "reason": "You asked for an inbox check twice a day.",
        }
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "propose_schedule", "arguments": json.dumps(arguments)},
        }
        return Reply(json=openai_completion(None, tool_calls=[call]))
    return Reply(json=openai_completion(AGENT_BRIEF, {"total_tokens": 57}))


async def play(out: TextIO = sys.stdout) -> list[str]:
    """Run the demo conversation; return the transcript's lines (also written to `out`)."""
    from bot.demo_kit.agent_stub import AgentStub
    from bot.demo_kit.harness import start_bot, stop_bot
    from bot.demo_kit.telegram_server import TelegramServer

    out.write(
        "Tickler demo: the real bot talks to a local Bot API server and agent stub on\n"
        "127.0.0.1, on a temporary database. You are Alice, an admin; nothing leaves\n"
        "this machine.\n\n"
    )
    with tempfile.TemporaryDirectory(prefix="tickler-demo-") as tmp:
        async with TelegramServer() as server, AgentStub() as agent:
            agent.respond_with(_agent)
            bot = await start_bot(server, agent, Path(tmp) / "demo.db", agent_mode="openai")
            try:
                chat = Transcript(bot.alice, out)
                await _conversation(chat, bot)
            finally:
                await stop_bot(bot)
            return chat.lines


async def _conversation(chat: Transcript, bot: BotHarness) -> None:
    await chat.say("/new", "What should it do?")
    await chat.press("Ask the agent", "Write the prompt")
    await chat.say(BRIEF_PROMPT, "When?")
    await chat.press("Daily at…", "At what time?")
    await chat.say("07:30", "What should it be called?")
    await chat.say("Daily brief", "Next:")
    await chat.press("Save", "Saved")
    [brief] = await bot.services.store.schedules.list_for_chat(bot.alice.chat_id)

    # By its short number, as an operator on a phone types it.
    await chat.say(f"/runnow {brief.ref}", AGENT_BRIEF)
    await chat.say(f"/history {brief.ref}", "succeeded")
    await chat.say(f"/pause {brief.ref}", "Paused")

    [card, *_] = [
        m
        for m in await chat.say(INBOX_REQUEST, "proposes a schedule", AGENT_PROPOSES)
        if "proposes a schedule" in (m.text or "")
    ]
    await chat.press("Approve", "is active", on=card)
    await chat.say("/schedules", "Inbox check")


def main(out: TextIO = sys.stdout) -> int:
    """The `tickler demo` command; 0 when every step of the conversation happened."""
    # The transcript is the output; only problems are logged (to stderr).
    configure_logging("WARNING")
    try:
        asyncio.run(play(out))
    except BrokenPipeError:
        return 0  # the reader stopped early (./demo | head)
    except AssertionError as exc:
        print(f"The demo stopped: a step did not happen. {exc}", file=sys.stderr)
        return 1
    print(
        "Demo finished: every step above ran against the real bot. To run it for real, "
        "see the README's quick start.",
        file=out,
    )
    return 0
