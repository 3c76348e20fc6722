"""The agent stub the benchmarks post to: an aiohttp server in its own process.

    python -m bench.agent            prints the port it listens on (127.0.0.1), then serves

Every POST is answered 200 with a small JSON body, as a webhook would. It counts the
posts and the distinct `Idempotency-Key` headers, so the harness can tell a lost fire
(fewer keys than schedules) from a doubled one (more posts than keys):
`GET /stats` returns `{"posts": n, "keys": k}`, `POST /reset` sets both to zero.
It stops when its standard input closes, so it never outlives the harness.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from aiohttp import web

_OK = b'{"ok":true}'


def main() -> None:
    posts = 0
    keys: set[str] = set()

    async def webhook(request: web.Request) -> web.Response:
        nonlocal posts
        await request.read()
        posts += 1
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            keys.add(key)
        return web.Response(body=_OK, content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"posts": posts, "keys": len(keys)})

    async def reset(_: web.Request) -> web.Response:
        nonlocal posts
        posts = 0
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
