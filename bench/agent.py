"""The agent stub the benchmarks post to: an aiohttp server in its own process.

    python -m bench.agent                      prints its port (127.0.0.1), then serves
    python -m bench.agent --delay 1 3 --seed 23   answers each POST after 1-3 s

Every POST is answered 200 with a small JSON body, as a webhook would; with `--delay LO
HI`, after a delay drawn uniformly from [LO, HI] seconds by a seeded generator (a slow
agent: a model answers in seconds, not microseconds). It counts the posts and the
distinct `Idempotency-Key` headers, so the harness can tell a lost fire (fewer keys than
schedules) from a doubled one (more posts than keys), and the most POSTs it held at once
(what the scheduler's concurrency reached): `GET /stats` returns `{"posts": n, "keys": k,
"peak_in_flight": p}`, `POST /reset` sets them to zero.
It stops when its standard input closes, so it never outlives the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys

from aiohttp import web

_OK = b'{"ok":true}'


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent")
    parser.add_argument(
        "--delay", nargs=2, type=float, metavar=("LO", "HI"), help="answer after LO-HI s"
    )
    parser.add_argument("--seed", type=int, default=23, help="the delays' generator seed")
    args = parser.parse_args(argv)
    delay: tuple[float, float] | None = tuple(args.delay) if args.delay else None
    rng = random.Random(args.seed)
    posts = 0
    in_flight = peak = 0
    keys: set[str] = set()

    async def webhook(request: web.Request) -> web.Response:
        nonlocal posts, in_flight, peak
        await request.read()
        posts += 1
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            keys.add(key)
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            if delay is not None:
                await asyncio.sleep(rng.uniform(*delay))
        finally:
            in_flight -= 1
        return web.Response(body=_OK, content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"posts": posts, "keys": len(keys), "peak_in_flight": peak})

    async def reset(_: web.Request) -> web.Response:
        nonlocal posts, peak
        posts = peak = 0
        keys.clear()
        return web.json_response({"ok": True})

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/webhook", webhook)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, backlog=4096).start()
        print(sock.getsockname()[1], flush=True)
        # Until the harness closes our stdin (or dies).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
