"""What /agent shows: the chat's own agent, its secret masked."""

from __future__ import annotations

from bot.render import esc
from scheduler.chat_agents import ChatAgent, mask_secret

__all__ = ["agent_screen"]


def agent_screen(agent: ChatAgent | None) -> str:
    if agent is None:
        return (
            "This chat's runs go to the default agent (AGENT_URL).\n"
            "Admins: /agent url URL, /agent mode openai|telegram, /agent secret SECRET, "
            "/agent model NAME; /agent reset goes back to the default."
        )

    def shown(value: str | None) -> str:
        return "the default's" if value is None else f"<code>{esc(value)}</code>"

    secret = agent.secret
    if secret is None:
        secret_line = "none" if agent.url is not None else "the default's"
    else:
        secret_line = esc(mask_secret(secret))
    return (
        "<b>This chat's agent</b>\n"
        f"URL: {shown(agent.url)}\n"
        f"Mode: {shown(agent.mode)}\n"
        f"Secret: {secret_line}\n"
        f"Model: {shown(agent.model)}\n"
        "/agent reset goes back to the default agent."
    )
