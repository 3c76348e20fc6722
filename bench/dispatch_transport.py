"""How fast can the dispatcher post to an agent? httpx transports against raw aiohttp.

    python bench/dispatch_transport.py [--requests 5000] [--concurrency 64] [--rounds 1]

Starts a minimal aiohttp server on 127.0.0.1 in a child process (so its CPU does not
compete with the client's event loop), then posts the same synthetic update with:

    httpx default       httpx.AsyncClient with its own (httpcore) transport
    httpx + aiohttp     httpx.AsyncClient on httpx-aiohttp's AiohttpTransport
    httpx + pyreqwest   httpx.AsyncClient on pyreqwest's HttpxTransport
    dispatcher          HttpAgentDispatcher.dispatch() as the engine calls it (straight
                        to pyreqwest, plus building the update and checking the answer)
    aiohttp             aiohttp.ClientSession
    pyreqwest           pyreqwest's own client (Rust's reqwest: HTTP outside the GIL)

and prints requests per second and ratios measured in this one run. No pass/fail:
numbers depend on the machine (TESTING.md "Speed"). Loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from httpx_aiohttp import AiohttpTransport
from pyreqwest.client import ClientBuilder
from pyreqwest.compatibility.httpx import HttpxTransport

# Run from a checkout without installing: make `scheduler` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.agent_dispatch import HttpAgentDispatcher
from scheduler.dispatching import DispatchRequest, Operator, synthetic_update_id

FIRE = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
WARMUP = 200


def serve(conn: Connection) -> None:
    """Child process: answer every POST with a small JSON body, like a webhook does."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/webhook", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, backlog=1024).start()
        conn.send(sock.getsockname()[1])
        # Until the parent says stop (or dies: recv raises EOFError).
        await asyncio.get_running_loop().run_in_executor(None, _wait_quietly, conn)
        await runner.cleanup()

    asyncio.run(main())


def _wait_quietly(conn: Connection) -> None:
    with contextlib.suppress(EOFError):
        conn.recv()


def make_request(i: int) -> DispatchRequest:
    return DispatchRequest(
        schedule_id="01JDBENCHSCHEDULE",
        run_id=f"run-{i}",
        scheduled_for=FIRE + timedelta(minutes=i),
        chat_id=123456789,
        operator=Operator(id=123456789, first_name="Ada"),
        schedule_name="Daily brief",
        prompt="Prepare my daily brief for Tuesday 24 November (Europe/Berlin).",
        timezone="Europe/Berlin",
    )


def wire(i: int) -> tuple[bytes, dict[str, str]]:
    """The bytes and headers the dispatcher would send, for the non-dispatcher clients."""
    request = make_request(i)
    h = synthetic_update_id(request.idempotency_key)
    body = {
        "update_id": h,
        "message": {
            "message_id": h,
            "date": int(request.scheduled_for.timestamp()),
            "chat": {"id": request.chat_id, "type": "private"},
            "from": {"id": request.operator.id, "is_bot": False, "first_name": "Ada"},
            "text": request.prompt,
        },
    }
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tickler/0.1",
        "Idempotency-Key": request.idempotency_key,
        "X-Tickler-Schedule-Id": request.schedule_id,
        "X-Tickler-Run-Id": request.run_id,
    }
    return json.dumps(body).encode(), headers


async def run_load(
    post: Callable[[int], Awaitable[None]], requests: int, concurrency: int
) -> float:
    """Post `requests` times with `concurrency` workers; return requests per second."""
    for i in range(WARMUP):  # open connections, warm caches
        await post(i)
    counter = iter(range(requests))

    async def worker() -> None:
        for i in counter:  # shared iterator: each index is taken exactly once
            await post(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def bench_httpx_default(url: str, requests: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def post(i: int) -> None:
            body, headers = wire(i)
            (await client.post(url, content=body, headers=headers)).raise_for_status()

        return await run_load(post, requests, concurrency)


async def bench_httpx_aiohttp(url: str, requests: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:

        async def post(i: int) -> None:
            body, headers = wire(i)
            (await client.post(url, content=body, headers=headers)).raise_for_status()

        return await run_load(post, requests, concurrency)


async def bench_httpx_pyreqwest(url: str, requests: int, concurrency: int) -> float:
    transport = HttpxTransport(ClientBuilder().max_connections(concurrency).build())
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:

        async def post(i: int) -> None:
            body, headers = wire(i)
            (await client.post(url, content=body, headers=headers)).raise_for_status()

        return await run_load(post, requests, concurrency)


async def bench_pyreqwest(url: str, requests: int, concurrency: int) -> float:
    async with ClientBuilder().max_connections(concurrency).build() as client:

        async def post(i: int) -> None:
            body, headers = wire(i)
            response = await (
                client.post(url).headers(headers).body_bytes(body).error_for_status().build().send()
            )
            await response.bytes()

        return await run_load(post, requests, concurrency)


async def bench_dispatcher(url: str, requests: int, concurrency: int) -> float:
    async with HttpAgentDispatcher(url=url, max_connections=concurrency) as dispatcher:

        async def post(i: int) -> None:
            await dispatcher.dispatch(make_request(i), timeout=30)

        return await run_load(post, requests, concurrency)


async def bench_aiohttp(url: str, requests: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int) -> None:
            body, headers = wire(i)
            async with session.post(url, data=body, headers=headers) as response:
                response.raise_for_status()
                await response.read()

        return await run_load(post, requests, concurrency)


CLIENTS: dict[str, Callable[[str, int, int], Coroutine[Any, Any, float]]] = {
    "httpx default": bench_httpx_default,
    "httpx + aiohttp": bench_httpx_aiohttp,
    "httpx + pyreqwest": bench_httpx_pyreqwest,
    "dispatcher": bench_dispatcher,
    "aiohttp": bench_aiohttp,
    "pyreqwest": bench_pyreqwest,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="best of N per client")
    args = parser.parse_args()

    parent, child = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(child,))
    server.start()
    try:
        port = parent.recv()
        url = f"http://127.0.0.1:{port}/webhook"
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, bench in CLIENTS.items():
                rate = asyncio.run(bench(url, args.requests, args.concurrency))
                best[name] = max(best.get(name, 0.0), rate)
    finally:
        parent.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()

    base = best["httpx default"]
    ceiling = best["aiohttp"]
    print(
        f"{args.requests} POSTs x {args.rounds} round(s), concurrency {args.concurrency}, "
        "loopback, server in a child process\n"
    )
    print(f"{'client':<18}{'req/s':>10}{'vs httpx default':>18}{'vs aiohttp':>12}")
    for name, rate in best.items():
        print(f"{name:<18}{rate:>10,.0f}{rate / base:>17.1f}x{rate / ceiling:>11.2f}x")


if __name__ == "__main__":
    main()
