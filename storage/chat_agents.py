"""SQL for chats' own agents (`scheduler.chat_agents`)."""

from __future__ import annotations

from typing import Any

from scheduler.chat_agents import ChatAgent
from storage.codec import from_db_time, to_db_time
from storage.sql import Connection, Db, fetch_all, fetch_one

_COLUMNS = "chat_id, url, mode, secret, model, updated_at"


def _agent(row: Any) -> ChatAgent:
    return ChatAgent(
        chat_id=int(row[0]),
        url=row[1],
        mode=row[2],
        secret=row[3],
        model=row[4],
        updated_at=from_db_time(row[5]),
    )


class SqlChatAgents:
    """Chats' own agents (`scheduler.chat_agents.ChatAgentRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, chat_id: int) -> ChatAgent | None:
        async with self._conn.read() as db:
            row = await fetch_one(
                db, f"SELECT {_COLUMNS} FROM chat_agents WHERE chat_id = ?", (chat_id,)
            )
        return None if row is None else _agent(row)

    async def put(self, agent: ChatAgent) -> None:
        assert agent.updated_at is not None
        async with self._conn.write() as db:
            await db.execute(
                f"INSERT INTO chat_agents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (chat_id) DO UPDATE SET url = excluded.url, "
                "mode = excluded.mode, secret = excluded.secret, model = excluded.model, "
                "updated_at = excluded.updated_at",
                (
                    agent.chat_id,
                    agent.url,
                    agent.mode,
                    agent.secret,
                    agent.model,
                    to_db_time(agent.updated_at),
                ),
            )

    async def delete(self, chat_id: int) -> bool:
        async with self._conn.write() as db:
            row = await fetch_one(
                db, "DELETE FROM chat_agents WHERE chat_id = ? RETURNING chat_id", (chat_id,)
            )
        return row is not None

    async def all(self) -> list[ChatAgent]:
        async with self._conn.read() as db:
            return await all_agents(db)


async def all_agents(db: Db) -> list[ChatAgent]:
    """Every chat's own agent, by chat id (`tickler doctor` reads them from a snapshot)."""
    rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM chat_agents ORDER BY chat_id")
    return [_agent(r) for r in rows]
