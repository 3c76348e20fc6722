"""Starting and stopping the test servers (agent stub, Bot API server) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler, *, max_body: int, backlog: int) -> tuple[web.AppRunner, int]:
    """Serve every path with `handler` on a free loopback port; returns (runner, port)."""
    app = web.Application(client_max_size=max_body)
    app.router.add_route("*", "/{tail:.*}", handler)
    # handler_cancellation: a client that gives up (timeout) cancels its hanging
    # handler, so thousands of hung requests (or long polls) do not pile up.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    await web.SockSite(runner, sock, backlog=backlog).start()
    return runner, port


async def shut(runner: web.AppRunner | None, inflight: set[asyncio.Task[Any]]) -> None:
    """Cancel handlers still working (hung, delayed, long polls), then stop: cleanup
    would otherwise wait for them."""
    for task in list(inflight):
        task.cancel()
    if inflight:
        await asyncio.gather(*inflight, return_exceptions=True)
    if runner is not None:
        await runner.cleanup()


class LoopbackServer:
    """Start, stop and `async with` for a test server that answers every path with its
    `_handle`, tracking its running handlers in `_inflight` so a stop cancels them."""

    max_body: ClassVar[int]
    backlog: ClassVar[int]
    _port: int
    _runner: web.AppRunner | None
    _inflight: set[asyncio.Task[Any]]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> None:
        self._runner, self._port = await serve(
            self._handle, max_body=self.max_body, backlog=self.backlog
        )

    async def stop(self) -> None:
        """Stop; handlers still working (long polls, slow answers) are cancelled, not
        waited for."""
        await shut(self._runner, self._inflight)
        self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
