"""An engine that forwards to any OpenAI-compatible server over HTTP.

vLLM, SGLang, Ollama, Xinference and DashScope's compatible mode all speak the same
``/chat/completions``, ``/completions`` and ``/embeddings`` endpoints under a base URL.
One pooled ``aiohttp.ClientSession`` per backend carries every request (aiohttp was
chosen over httpx by measurement, see ``docs/decisions.md``). Every failure surfaces as a
``heshi.errors`` type naming the backend, in Chinese and English, never the API key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from heshi.config import BackendConfig
from heshi.engines.base import JSON, ServedModel, asked_completion_tokens
from heshi.engines.http_stream import HTTPStream
from heshi.engines.sse import ServerSentEvent
from heshi.errors import ConfigError, HeshiError, UpstreamError, UpstreamRejected, UpstreamTimeout
from heshi.tracing import inject

_ERROR_BODY_LIMIT = 64 * 1024  # enough for any error JSON; an HTML error page is cut
_SNIPPET = 200  # characters of an unparseable body quoted back in a message
_CREDENTIAL_STATUSES = frozenset({401, 403, 407})


class OpenAIHTTPEngine:
    """The :class:`~heshi.engines.base.Engine` for one remote OpenAI-compatible backend.

    Requests are sent as given (the gateway has already set ``model`` to the upstream
    name). ``connect_timeout`` bounds opening a connection and ``timeout`` bounds the gap
    between bytes once connected, so a silent upstream never hangs a request.
    """

    def __init__(
        self, name: str, config: BackendConfig, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[str, str] = {}
        url = urlsplit(config.base_url)
        self._origin = f"{url.scheme}://{url.netloc.rpartition('@')[2]}"  # no user:password

    def served_models(self) -> list[ServedModel]:
        """One :class:`ServedModel` per configured upstream model, owned by this backend."""
        context = self.config.context
        return [
            ServedModel(name=m, owned_by=self.name, context_length=context)
            for m in self.config.models
        ]

    async def start(self) -> None:
        """Read the API key from the environment and open the connection pool.

        Raises ``ConfigError`` when ``api_key_env`` is set but that variable is not.
        Calling it again while started does nothing.
        """
        if self._session is not None:
            return
        headers = {"Content-Type": "application/json", "User-Agent": "heshi"}
        key = self.api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers
        timeout = aiohttp.ClientTimeout(
            total=None,  # a long generation is fine as long as bytes keep coming
            connect=None,  # waiting for a free pooled connection is back-pressure, not failure
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.timeout,
        )
        connector = aiohttp.TCPConnector(limit=self.config.max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=True
        )

    def api_key(self) -> str | None:
        """The API key from ``api_key_env`` (None when the backend needs none).

        Raises ``ConfigError`` when ``api_key_env`` names a variable that is not set;
        ``heshi serve`` calls this before it loads anything.
        """
        env = self.config.api_key_env
        if env is None:
            return None
        key = self._environ.get(env, "")
        if not key:
            raise ConfigError(
                f"后端 {self.name} 的 API key 环境变量 {env} 未设置 / "
                f"environment variable {env} (API key for backend {self.name}) is not set"
            )
        return key

    async def close(self) -> None:
        """Close the pool and every open upstream connection. Safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def chat(self, body: JSON) -> JSON:
        """POST ``body`` to ``/chat/completions`` and return the upstream's JSON object."""
        return await self._post_json("/chat/completions", self._limited(self._templated(body)))

    async def completion(self, body: JSON) -> JSON:
        """POST ``body`` to ``/completions`` and return the upstream's JSON object."""
        return await self._post_json("/completions", self._limited(body))

    async def count_prompt_tokens(self, op: str, body: JSON) -> int | None:
        """None: a remote backend's tokenizer is not at hand (admission estimates)."""
        return None

    def completion_cap(self, prompt_tokens: int, model: str | None = None) -> int | None:
        """The most any request can generate here, whatever its prompt: ``context`` when
        it is known (None: not known). The prompt is only estimated for a remote backend,
        so it is not subtracted: the backend itself refuses a prompt it cannot fit."""
        return self.config.context

    def default_completion(self, prompt_tokens: int, model: str | None = None) -> int:
        """What a request that sets no ``max_tokens`` may generate: ``max_output_tokens``
        (no more than ``context``); :meth:`_limited` tells the upstream so."""
        context = self.config.context
        limit = self.config.max_output_tokens
        return limit if context is None else min(limit, context)

    def _templated(self, body: JSON) -> JSON:
        """``body`` with the backend's ``chat_template_kwargs`` under the request's own
        (the request's value wins, key by key)."""
        defaults = self.config.chat_template_kwargs
        if not defaults:
            return body
        asked = body.get("chat_template_kwargs")
        own = asked if isinstance(asked, dict) else {}
        return {**body, "chat_template_kwargs": {**defaults, **own}}

    def _limited(self, body: JSON) -> JSON:
        """``body`` with an output limit: a request that sets none gets ``max_tokens`` =
        :meth:`default_completion`, so the upstream never generates more than admission
        reserved for it."""
        if asked_completion_tokens(body) is not None:
            return body
        return {**body, "max_tokens": self.default_completion(0)}

    async def embeddings(self, body: JSON) -> JSON:
        """POST ``body`` to ``/embeddings`` and return the upstream's JSON object."""
        return await self._post_json("/embeddings", body)

    async def rerank(self, body: JSON) -> JSON:
        """POST ``body`` to ``/rerank`` (vLLM, Xinference, Jina-compatible servers)."""
        return await self._post_json("/rerank", body)

    def stream_chat(self, body: JSON) -> HTTPStream:
        """Stream ``/chat/completions``: yield each chunk dict as soon as it arrives.

        Upstream status errors are raised before the first chunk. Closing the generator
        (``aclose()``) closes the upstream connection so the backend stops generating.
        """
        return self._stream("/chat/completions", self._templated(body))

    def stream_completion(self, body: JSON) -> HTTPStream:
        """Stream ``/completions``; same promises as :meth:`stream_chat`."""
        return self._stream("/completions", body)

    # ------------------------------------------------------------------ requests

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"engine {self.name!r} used before start() or after close()")
        return self._session

    async def _post_json(self, path: str, body: JSON) -> JSON:
        session = self._require_session()
        headers = {**self._headers, "Accept": "application/json"}
        inject(headers)  # W3C traceparent of the routing attempt, when tracing is on
        try:
            async with session.post(
                self.config.base_url + path,
                data=orjson.dumps(body),
                headers=headers,
                allow_redirects=False,
            ) as resp:
                await self._check_status(resp)
                raw = await resp.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise self._transport_error(exc) from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise self._garbage(f"not a JSON object: {_snippet(raw)}")
        return parsed

    def _stream(self, path: str, body: JSON) -> HTTPStream:
        session = self._require_session()
        headers = {**self._headers, "Accept": "text/event-stream"}
        inject(headers)
        payload = orjson.dumps({**self._limited(body), "stream": True})
        return HTTPStream(self, session, self.config.base_url + path, payload, headers)

    def _chunk_or_done(self, event: ServerSentEvent) -> JSON | None:
        """The event's JSON object, or None for ``[DONE]``; raises on an error event."""
        if event.data.strip() == "[DONE]":
            return None
        try:
            parsed = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise self._garbage(f"in its event stream: {event.data[:_SNIPPET]!r}")
        if parsed.get("error") is not None or event.event == "error":
            message = _error_message(parsed) or event.data[:_SNIPPET]
            raise UpstreamError(
                f"后端 {self.name} 在流中报错：{message} / "
                f"backend {self.name} reported an error mid-stream: {message}"
            )
        return parsed

    # ------------------------------------------------------------------ errors

    async def _check_status(self, resp: aiohttp.ClientResponse) -> None:
        """Raise the matching ``HeshiError`` unless the upstream answered 2xx."""
        status = resp.status
        if 200 <= status < 300:
            return
        raw = await _read_capped(resp, _ERROR_BODY_LIMIT)
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        message = _error_message(parsed) or _snippet(raw) or resp.reason or "(empty body)"
        if 400 <= status < 500 and status not in _CREDENTIAL_STATUSES:
            raise UpstreamRejected(status, f"{self.name}: {message}")
        if status in _CREDENTIAL_STATUSES:
            hint = f"检查 api_key_env / check api_key_env ({self.config.api_key_env})"
            message = f"{message}; {hint}"
        raise UpstreamError(
            f"后端 {self.name} 返回 HTTP {status}：{message} / "
            f"backend {self.name} answered HTTP {status}: {message}"
        )

    def _garbage(self, detail: str) -> UpstreamError:
        return UpstreamError(
            f"后端 {self.name} 返回了无法解析的内容 / backend {self.name} returned garbage {detail}"
        )

    def _transport_error(self, exc: BaseException) -> HeshiError:
        """Translate an aiohttp / socket failure into a typed error naming the backend."""
        name, origin = self.name, self._origin
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            secs = self.config.connect_timeout
            return UpstreamTimeout(
                f"连接后端 {name}（{origin}）超过 {secs:g} 秒未成功 / "
                f"connecting to backend {name} at {origin} timed out after {secs:g}s"
            )
        if isinstance(exc, TimeoutError):
            secs = self.config.timeout
            return UpstreamTimeout(
                f"后端 {name}（{origin}）超过 {secs:g} 秒没有发送数据 / "
                f"backend {name} at {origin} sent nothing for {secs:g}s"
            )
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return UpstreamError(
                f"无法解析后端 {name} 的主机名（{origin}）/ "
                f"cannot resolve the host name of backend {name} ({origin})"
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            err = exc.os_error  # its strerror is aiohttp's "Connect call failed (...)"
            reason = os.strerror(err.errno) if err.errno else type(err).__name__
            return UpstreamError(
                f"无法连接后端 {name}（{origin}）：{reason} / "
                f"cannot connect to backend {name} at {origin}: {reason}"
            )
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return UpstreamError(
                f"后端 {name}（{origin}）中途断开了连接 / "
                f"backend {name} at {origin} dropped the connection mid-response"
            )
        return UpstreamError(
            f"与后端 {name}（{origin}）通信失败 / talking to backend {name} at {origin} "
            f"failed: {type(exc).__name__}: {exc}"
        )


def _error_message(parsed: Any) -> str | None:
    """The human message in an error body: OpenAI, Ollama, vLLM-legacy or FastAPI shape."""
    if not isinstance(parsed, dict):
        return None
    err = parsed.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(err, str):
        return err
    for key in ("message", "detail"):
        if isinstance(parsed.get(key), str):
            return str(parsed[key])
    return None


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return repr(text[:_SNIPPET]) if text else ""


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < limit:
        piece = await resp.content.read(limit - size)
        if not piece:
            break
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)
