"""`tickler COMMAND --help` says what the command does, for every command."""

from __future__ import annotations

import argparse

import pytest

from bot.cli import build_parser, main


def commands() -> list[str]:
    [subparsers] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(subparsers.choices)


def test_the_commands_are_found() -> None:
    assert {"run", "engine", "validate-export", "import"} <= set(commands())


@pytest.mark.parametrize("command", commands())
def test_every_command_describes_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    # usage, a blank line, then the description before the arguments' sections
    paragraphs = out.split("\n\n")
    assert paragraphs[0].startswith(f"usage: tickler {command}")
    assert not paragraphs[1].startswith(("options:", "positional arguments:")), out
    assert len(" ".join(paragraphs[1].split())) > 60, out
