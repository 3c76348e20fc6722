"""The dispatcher's HTTP exchange with the agent, on pyreqwest (Rust's reqwest and hyper).

Why not aiohttp, as before: the engine is one Python thread, and a burst made it one
core's worth of work per fire, a large share of it aiohttp's request and response
handling. pyreqwest does the connection, the writing and the parsing on its own threads,
outside the GIL; the event loop only hands the request over and takes the answer back.
The second core does the HTTP while the loop keeps the ledger (bench/RESULTS.md).

What the dispatcher relies on, and how it is kept:
- Errors come out as httpx's, and their class tells whether the request can have left:
  `httpx.ConnectError`/`ConnectTimeout`/`PoolTimeout` only when it cannot have. pyreqwest's
  own classes do not say that (it calls a connection closed after the request was sent a
  `ConnectError`, and a timeout while waiting for the answer a `ConnectTimeoutError`), so
  the phase is read from the cause chain, where hyper names it ("client error (Connect)"
  against "client error (SendRequest)"). Anything not recognised counts as maybe
  delivered: the safe side (tests/test_dispatch.py pins each case against a real socket).
- Never a redirect, a cookie or a decompression (the answer is read as sent; httpx
  decodes a Content-Encoding as before); no proxy (`HttpAgentDispatcher` uses its httpx
  client, on aiohttp, when the environment names one).
- Connecting, including the wait for a pooled connection, is bounded by `connect`,
  which fails as `ConnectTimeoutError`/`PoolTimeoutError`: the request never left. The
  whole exchange is bounded by `total`; running out of it after the connection was made
  is a timeout that may have been delivered. reqwest sets its connect and pool timeouts
  per client, so there is one client per distinct `connect` (the dispatcher picks it
  from seven values; with the default run timeout, 10 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import httpx
import pyreqwest.exceptions as reqwest_errors
from pyreqwest.client import Client, ClientBuilder

__all__ = ["Answer", "ReqwestExchange"]

#: Status, headers (as sent, in order) and the body of an answer.
Answer = tuple[int, list[tuple[str, str]], bytes]


class ReqwestExchange:
    """POSTs to the agent on pyreqwest's threads; `max_connections` per client."""

    def __init__(self, *, max_connections: int) -> None:
        self._max_connections = max_connections
        self._clients: dict[float, Client] = {}

    def _client(self, connect: float) -> Client:
        client = self._clients.get(connect)
        if client is None:
            limit = timedelta(seconds=connect)
            client = (
                ClientBuilder()
                .max_connections(self._max_connections)
                .connect_timeout(limit)
                .pool_timeout(limit)
                .follow_redirects(False)
                .no_proxy()
                .gzip(False)
                .brotli(False)
                .zstd(False)
                .deflate(False)
                .build()
            )
            self._clients[connect] = client
        return client

    async def exchange(
        self,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        *,
        connect: float,
        total: float,
        read_body: bool,
    ) -> Answer:
        """POST `content` to `url` and read the whole answer. With `read_body` False
        the body is still read (so the connection goes back to the pool) but not
        copied out: the caller needs only the status. Raises httpx's errors."""
        try:
            response = await (
                self._client(connect)
                .post(url)
                .headers(headers)
                .body_bytes(content)
                .timeout(timedelta(seconds=total))
                .build()
                .send()
            )
            body = await response.bytes()
        except reqwest_errors.PyreqwestError as exc:
            raise as_httpx_error(exc) from exc
        if not read_body:
            return response.status, [], b""
        return response.status, list(response.headers.items()), body.to_bytes()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


#: How hyper names a failure while connecting, before any byte of the request was sent.
_CONNECT_PHASE = "client error (Connect)"


def as_httpx_error(exc: reqwest_errors.PyreqwestError) -> httpx.HTTPError:
    """The httpx error for a pyreqwest one, by whether the request can have left."""
    message = exc.message
    if isinstance(exc, reqwest_errors.BuilderError):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, reqwest_errors.PoolTimeoutError):
        # Waiting for one of our own connections: nothing was sent.
        return httpx.PoolTimeout(message)
    causes = exc.details.get("causes") if isinstance(exc, reqwest_errors.RequestError) else None
    connecting = any(c.get("message") == _CONNECT_PHASE for c in causes or ())
    if isinstance(exc, reqwest_errors.RequestTimeoutError):
        return httpx.ConnectTimeout(message) if connecting else httpx.ReadTimeout(message)
    if connecting:
        return httpx.ConnectError(message)
    return httpx.ReadError(message)
