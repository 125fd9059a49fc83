"""A small TCP load balancer on loopback, standing in for nginx or a cloud load balancer
in front of gateway replicas.

Each client connection goes to the next backend in turn; a backend that refuses the
connection is skipped for the next one (nginx's ``proxy_next_upstream error``), so a dead
replica costs only the requests that were in flight on it. Bytes are copied both ways
unchanged; when either side closes, so does the other. It runs its own event loop in a
background thread, so sync and async tests use it alike, and counts the connections it
has open to each backend (``open_to``), ever made (``served_by``) and had cut by the
backend (``cut_by``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from types import TracebackType

_CHUNK = 65536


class TCPBalancer:
    """Round-robin over ``backends`` ((host, port) pairs); ``url`` is where to connect."""

    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self._open = [0] * len(self.backends)
        self._served = [0] * len(self.backends)
        self._cut = [0] * len(self.backends)
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._lock = threading.Lock()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open_to(self, index: int) -> int:
        """Connections open to backend ``index`` now."""
        with self._lock:
            return self._open[index]

    def served_by(self, index: int) -> int:
        """Connections ever made to backend ``index``."""
        with self._lock:
            return self._served[index]

    def cut_by(self, index: int) -> int:
        """Connections backend ``index`` closed while its client was still connected: the
        requests in flight on it when it died (a live HTTP server lets the client close)."""
        with self._lock:
            return self._cut[index]

    def __enter__(self) -> TCPBalancer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connect(
        self,
    ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next backend that accepts a connection (None: none does)."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.backends)
        for offset in range(len(self.backends)):  # each backend once, from this turn's
            index = (start + offset) % len(self.backends)
            host, port = self.backends[index]
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            with self._lock:
                self._open[index] += 1
                self._served[index] += 1
            return index, reader, writer
        return None

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        chosen = await self._connect()
        if chosen is None:
            client_w.close()
            return
        index, backend_r, backend_w = chosen
        ended: list[str] = []  # which side's stream ended first
        try:
            await asyncio.gather(
                _pipe(client_r, backend_w, "client", ended),
                _pipe(backend_r, client_w, "backend", ended),
            )
            if ended[0] == "backend":
                with self._lock:  # the backend hung up while its client was still there
                    self._cut[index] += 1
        finally:
            with self._lock:
                self._open[index] -= 1
            for writer in (client_w, backend_w):
                writer.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, side: str, ended: list[str]
) -> None:
    """Copy until EOF or an error, note ``side`` in ``ended`` (first one wins), then close
    ``writer`` (so its peer sees the end)."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        ended.append(side)
        with contextlib.suppress(Exception):
            writer.close()
