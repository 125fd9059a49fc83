"""The HTTP server under the gateway: uvicorn with Heshi's connection limits."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from heshi.config import ServerConfig
from heshi.gateway.connections import (
    ConnectionLimits,
    default_max_connections,
    guarded_protocol,
    raise_open_file_limit,
)
from heshi.gateway.logs import ThrottleFilter

log = logging.getLogger("heshi.gateway")


def server_config(app: Any, server: ServerConfig, **options: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` with ``server``'s timeouts and connection ceiling.

    Raises the process's open-file limit first (towards 65,536, never past the hard
    limit), so the ceiling leaves room for everything else the gateway opens.
    """
    # one line per malformed connection otherwise: a client could flood the log
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ThrottleFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(ThrottleFilter())
    open_files = raise_open_file_limit()
    ceiling = server.max_connections or default_max_connections(open_files)
    if ceiling > default_max_connections(open_files):
        log.warning(
            "server.max_connections %d 超过打开文件上限 %d 所能承受 / server.max_connections "
            "%d is more than the open-file limit of %d leaves room for: connections past "
            "about %d may fail to be accepted",
            ceiling,
            open_files,
            ceiling,
            open_files,
            default_max_connections(open_files),
        )
    limits = ConnectionLimits(
        header_timeout=server.header_timeout_seconds,
        body_timeout=server.body_timeout_seconds,
        write_timeout=server.write_timeout_seconds,
        max_connections=ceiling,
    )
    options.setdefault("host", server.host)
    options.setdefault("port", server.port)
    return uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        timeout_keep_alive=max(1, round(server.keep_alive_seconds)),
        **options,
    )


class GatewayServer(uvicorn.Server):
    """uvicorn's server, started on a socket ``heshi serve`` bound itself (so a busy port
    is found before the model loads), still announcing where it listens; ``on_started``
    runs once it serves (the database migrated, keys loaded)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None = None):
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then log ``Uvicorn running on http://host:port`` as usual."""
        await super().startup(sockets)
        if sockets and not self.should_exit:
            self._log_started_message(sockets)
        if not self.should_exit and self._on_started is not None:
            self._on_started()
