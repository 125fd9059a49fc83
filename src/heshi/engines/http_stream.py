"""A remote backend's streamed answer: its server-sent events read as chunk dicts, with
the backend's failures as ``heshi.errors`` types (see :mod:`heshi.engines.openai_http`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import aiohttp

from heshi.engines.base import JSON
from heshi.engines.sse import ServerSentEvent, SSEDecoder, SSEProtocolError
from heshi.errors import UpstreamError

if TYPE_CHECKING:
    from heshi.engines.openai_http import OpenAIHTTPEngine


class HTTPStream:
    """One upstream SSE stream: chunk dicts as they arrive (see :meth:`OpenAIHTTPEngine.
    stream_chat`). ``abort()`` drops the connection at once; ``usage`` is the upstream's
    usage chunk when it sent one."""

    def __init__(
        self,
        engine: OpenAIHTTPEngine,
        session: aiohttp.ClientSession,
        url: str,
        payload: bytes,
        headers: dict[str, str],
    ) -> None:
        self.usage: JSON | None = None
        self._engine = engine
        self._session = session
        self._url = url
        self._payload = payload
        self._headers = headers
        self._resp: aiohttp.ClientResponse | None = None
        self._decoder = SSEDecoder()
        self._events: Iterator[ServerSentEvent] = iter(())
        self._done = False
        self._aborted = False

    def __aiter__(self) -> HTTPStream:
        return self

    async def __anext__(self) -> JSON:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._next()
        except StopAsyncIteration:
            self._finish(pool=True)
            raise
        except (aiohttp.ClientError, OSError) as exc:
            self._finish(pool=False)
            if self._aborted:
                raise StopAsyncIteration from None
            raise self._engine._transport_error(exc) from exc
        except BaseException:
            self._finish(pool=False)
            raise

    async def _next(self) -> JSON:
        engine = self._engine
        if self._resp is None:
            self._resp = await self._session.post(
                self._url, data=self._payload, headers=self._headers, allow_redirects=False
            )
            await engine._check_status(self._resp)
        while True:
            try:
                # Lazy: the bytes after [DONE] are never parsed.
                event = next(self._events, None)
            except SSEProtocolError as exc:
                raise engine._garbage(f"in its event stream: {exc}") from exc
            if event is not None:
                chunk = engine._chunk_or_done(event)
                if chunk is None:
                    raise StopAsyncIteration
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                return chunk
            piece = await self._resp.content.readany()
            if not piece:
                if self._aborted:
                    raise StopAsyncIteration
                raise UpstreamError(
                    f"后端 {engine.name} 在 [DONE] 之前关闭了流 / upstream closed the stream "
                    f"early: backend {engine.name} ended it before data: [DONE]"
                )
            self._events = self._decoder.feed(piece)

    def _finish(self, *, pool: bool) -> None:
        self._done = True
        resp, self._resp = self._resp, None
        if resp is None:
            return
        if pool:
            resp.release()
        else:
            # Drop the connection rather than pool it: the upstream sees the disconnect
            # and stops generating for a client that has gone.
            resp.close()

    def abort(self) -> None:
        """Drop the upstream connection now; a pending read ends the stream."""
        self._aborted = True
        if self._resp is not None:
            self._resp.close()

    async def aclose(self) -> None:
        """Close the upstream connection (the backend stops generating)."""
        if not self._done:
            self._aborted = True
            self._finish(pool=False)
