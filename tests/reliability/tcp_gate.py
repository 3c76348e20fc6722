"""A TCP forwarder on a fixed 127.0.0.1 port in front of a test server, that a test can
shut: while shut nothing listens on the port, so connecting is refused, and the
connections that were open are cut. Opened again, it listens on the same port.

    gate = TcpGate.in_front_of(telegram_server.url)
    await gate.open()
    ... point the process at gate.url ...
    await gate.shut()      # "the Bot API is down"
    await gate.open()      # back

This is how the suite makes "connection refused" and "the Bot API is down for a
minute" real, without touching the servers behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

__all__ = ["TcpGate"]

_CHUNK = 64 * 1024


class TcpGate:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        #: Connections accepted while open, and open connections cut by `shut`.
        self.accepted = 0
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    def in_front_of(cls, url: str) -> TcpGate:
        """A gate to the server at `url` (its host and port; the path is the caller's)."""
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        return cls(parts.port, parts.hostname)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def shut(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self.cut += len(self._writers)
        # An aborted transport ends its reads at once, so every pipe finishes by itself.
        for writer in list(self._writers):
            writer.transport.abort()
        if self._pipes:
            await asyncio.wait(set(self._pipes), timeout=5)
        await server.wait_closed()

    async def __aenter__(self) -> TcpGate:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await source.read(_CHUNK):
                    sink.write(chunk)
                    await sink.drain()
                # Half-close: the other side sees the end of the request or answer.
                if sink.can_write_eof():
                    sink.write_eof()
        finally:
            self._pipes.discard(task)
