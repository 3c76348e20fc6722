"""The HTTP clients the competitors post with, and a probe that finds the fastest.

Every client sends the same request the engine's dispatcher sends in `telegram` mode:
a synthetic update as JSON with an `Idempotency-Key` header. APScheduler's jobs and the
limit loop use the fastest client the probe finds, so neither is held back by its
HTTP client: the comparison is between schedulers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from pyreqwest.client import ClientBuilder

__all__ = ["CLIENT_KINDS", "ClientKind", "Poster", "make_poster", "probe"]

ClientKind = Literal["aiohttp", "pyreqwest", "httpx+aiohttp", "httpx"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("aiohttp", "pyreqwest", "httpx+aiohttp", "httpx")


def body_for(key: str, number: int) -> bytes:
    update = {
        "update_id": number + 1,
        "message": {
            "message_id": number + 1,
            "date": 1795503600,
            "chat": {"id": 1, "type": "private"},
            "from": {"id": 1, "is_bot": False, "first_name": "Ada"},
            "text": "Prepare the brief for 2026-11-24.",
        },
    }
    return json.dumps(update).encode()


class Poster:
    """`await post(key, number)` sends one update; raises on a non-2xx answer."""

    def __init__(
        self, post: Callable[[str, int], Awaitable[None]], close: Callable[[], Awaitable[None]]
    ) -> None:
        self.post = post
        self.aclose = close


def make_poster(kind: ClientKind, url: str, concurrency: int) -> Poster:
    headers = {"Content-Type": "application/json", "User-Agent": "bench/1"}
    if kind == "aiohttp":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

        async def post_aiohttp(key: str, number: int) -> None:
            async with session.post(
                url, data=body_for(key, number), headers={**headers, "Idempotency-Key": key}
            ) as response:
                await response.read()
                response.raise_for_status()

        return Poster(post_aiohttp, session.close)
    if kind == "pyreqwest":
        reqwest = ClientBuilder().max_connections(concurrency).build()

        async def post_pyreqwest(key: str, number: int) -> None:
            response = await (
                reqwest.post(url)
                .headers({**headers, "Idempotency-Key": key})
                .body_bytes(body_for(key, number))
                .error_for_status()
                .build()
                .send()
            )
            await response.bytes()

        return Poster(post_pyreqwest, reqwest.close)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if kind == "httpx+aiohttp":
        client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=30)
    else:
        client = httpx.AsyncClient(limits=limits, timeout=30)

    async def post_httpx(key: str, number: int) -> None:
        response = await client.post(
            url, content=body_for(key, number), headers={**headers, "Idempotency-Key": key}
        )
        response.raise_for_status()

    return Poster(post_httpx, client.aclose)


async def probe(url: str, kind: ClientKind, requests: int, concurrency: int) -> float:
    """POSTs per second for one client at `concurrency` workers (after a warm-up)."""
    poster = make_poster(kind, url, concurrency)
    try:
        await asyncio.gather(*(poster.post(f"warm:{i}", i) for i in range(concurrency)))
        numbers = iter(range(requests))

        async def worker() -> None:
            for i in numbers:  # a shared iterator: each number is taken once
                await poster.post(f"probe:{kind}:{i}", i)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)
    finally:
        await poster.aclose()
