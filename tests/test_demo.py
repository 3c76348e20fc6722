"""`tickler demo` as a newcomer runs it: a real process, from a folder that is not the
checkout, with no credentials in its environment. The transcript shows each step of the
conversation, and the README's excerpt of it is a real run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Ids are generated per run; transcripts are compared with them blanked.
ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    tickler = Path(sys.executable).with_name("tickler")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path_factory.mktemp("home")),
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    done = subprocess.run(
        [str(tickler), "demo"],
        cwd=tmp_path_factory.mktemp("elsewhere"),
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    print(f"tickler demo took {time.monotonic() - started:.1f} s")
    return done


def after(transcript: str, *steps: str) -> None:
    """Each step appears in the transcript, in this order."""
    at = 0
    for step in steps:
        found = transcript.find(step, at)
        assert found >= 0, f"{step!r} is not in the transcript after position {at}:\n{transcript}"
        at = found + len(step)


def test_the_demo_plays_the_whole_conversation_without_credentials(
    demo: subprocess.CompletedProcess[str],
) -> None:
    assert demo.returncode == 0, demo.stderr
    assert demo.stderr == ""  # nothing went wrong enough to be logged
    out = demo.stdout
    after(
        out,
        # A daily brief, created with the guided /new.
        "You:     /new",
        "[Ask the agent]",
        "You:     [Daily at…]",
        "You:     07:30",
        "You:     [Save]",
        "Tickler: Saved Daily brief",
        # Run now: the agent's answer lands in the chat.
        "You:     /runnow ",
        "Good morning! Today: stand-up at 10:00",
        # The history shows the run succeeded.
        "You:     /history ",
        "succeeded (manual)",
        "You:     /pause ",
        "Paused Daily brief",
        # The agent proposes a schedule; the button approves it.
        "You:     Could you also check my inbox twice a day?",
    )
    after(out, "You:     Could you", "Your agent proposes a schedule", "[Approve] [Reject]")
    after(out, "You:     [Approve]", "Approved by Alice; Inbox check is active.")
    after(out, "You:     /schedules", "Daily brief [paused]", "#2 Inbox check —")
    assert out.rstrip().endswith("see the README's quick start.")


def test_the_readmes_transcript_is_a_real_demo_run(
    demo: subprocess.CompletedProcess[str],
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    excerpt = readme.split("<!-- demo-transcript", 1)[1].split("```text\n", 1)[1]
    excerpt = excerpt.split("```", 1)[0]
    ran = {ULID.sub("ID", line) for line in demo.stdout.splitlines()}
    shown = [ULID.sub("ID", line) for line in excerpt.splitlines() if line]
    assert len(shown) > 10
    missing = [line for line in shown if line not in ran]
    assert not missing, f"README transcript lines that ./demo does not print: {missing}"


def test_the_one_word_command_runs_the_demo() -> None:
    done = subprocess.run(
        ["./demo"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Approved by Alice; Inbox check is active." in done.stdout
