"""``POST /v1/docs/extract``: an uploaded document and a schema in, its fields as JSON out.

The request is the caller's from the first byte: the key is checked from the headers
before any of the upload is read, the upload is read within ``docs.max_upload_bytes``
(:mod:`heshi.gateway.forms`, memory only), and the document is parsed off the event loop.
Each model call — the classification for ``schema=auto`` when the words do not decide,
then the extraction — is a chat request of the same key through the same pipeline as
``/v1/chat/completions``: admitted by its quotas, screened by its tenant's guard (personal
information pseudonymized before the model and masked in the audit record), metered in
its own ledger row. The upload itself gets one ledger row too (``endpoint: docs``, no
tokens), whatever happens to it; nothing of the document is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import Response

from heshi.apps.docs.classify import AUTO, NotBuiltIn, classify_and_extract
from heshi.apps.docs.read import DocumentText, document_text
from heshi.apps.docs.schema import (
    BUILT_IN,
    MAX_SCHEMA_BYTES,
    Schema,
    SchemaError,
    load_schema,
    schema_from_data,
)
from heshi.apps.kb.engine import PREFIX as KB_PREFIX
from heshi.apps.kb.parse import UnreadableDocument
from heshi.engines.base import JSON
from heshi.errors import ClientGone, HeshiError, InvalidRequest
from heshi.gateway.edge import parse_json
from heshi.gateway.exchange import Exchange
from heshi.gateway.forms import FormSpec, Part, read_form
from heshi.gateway.replies import Refusal, json_reply
from heshi.gateway.schemas import ChatCompletionRequest, parse_request

if TYPE_CHECKING:
    from heshi.gateway.handlers import Gateway

log = logging.getLogger("heshi.gateway")

MIN_CHARS, MAX_CHARS, DEFAULT_CHARS = 200, 100_000, 4000
_MODEL_CHARS = 128  # as on /v1/chat/completions
# The parts a request may have, each at most once, and their own limits (None: only the
# upload's): the number of parts and every field's size are bounded.
_PARTS: dict[str, int | None] = {
    "file": None,
    "schema": MAX_SCHEMA_BYTES,
    "model": _MODEL_CHARS,
    "max_chars": 16,
}
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_SCHEMA_NAME = re.compile(r"[\w-]{1,64}")
# A file sent without a name (or a name without a suffix): its declared type decides.
_BY_TYPE = {
    "application/pdf": ".pdf",
    "application/ofd": ".ofd",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/html": ".html",
    "text/csv": ".csv",
    "image/png": ".png",
    "image/jpeg": ".jpg",
}


class UnreadableUpload(InvalidRequest):
    """The upload cannot be read as a document: unsupported type, broken file, no text."""

    code = "unreadable_document"
    reason = "docs.unreadable"


class InvalidSchema(InvalidRequest):
    """The ``schema`` part names no schema, or is not a usable JSON Schema."""

    code = "invalid_schema"
    reason = "docs.schema"


class NoBuiltInSchema(HeshiError):
    """``schema=auto`` found a document of kind ``other`` (HTTP 422)."""

    status_code = 422
    error_type = "invalid_request_error"
    code = "unknown_document_kind"
    reason = "docs.other"


class ExtractionRefused(HeshiError):
    """The tenant's guard refused the document or the answer (HTTP 400, ``content_filter``)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "content_filter"
    reason = "guard.block"


@dataclass
class Upload:
    """What a request asks for, checked."""

    data: bytes
    suffix: str  # from the client's file name (or declared type): nothing else of it is used
    schema_name: str  # as asked: a built-in name, "auto", or the uploaded schema's name
    schema: Schema | None  # None: classify first (auto)
    model: str
    max_chars: int


class ReadersBusy(HeshiError):
    """Every document reader is busy and the queue for them is full (HTTP 503)."""

    status_code = 503
    error_type = "server_error"
    code = "docs_busy"
    reason = "docs.busy"
    retry_after = 2.0


class DocsExtraction:
    """The handler of ``POST /v1/docs/extract`` on ``gateway``'s pipeline and recorder.

    Documents are read (parsed, OCR'd) on threads of their own — ``docs.max_concurrent_reads``
    of them, not the event loop's shared pool, which key reloads and knowledge-base answers
    need — with at most four times as many uploads waiting; past that, 503."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        slots = gateway.config.docs.max_concurrent_reads
        self._readers = ThreadPoolExecutor(slots, thread_name_prefix="heshi-docs")
        self._slots = asyncio.Semaphore(slots)
        self._queued = 0
        self._max_queued = 5 * slots  # those reading, and four times as many waiting

    def busy(self) -> bool:
        """Every reader busy and the queue for them full: an upload now would be a 503."""
        return self._queued >= self._max_queued

    async def extract(self, request: Request) -> Response:
        """``POST /v1/docs/extract``; recorded once however it ends."""
        x = Exchange(endpoint="docs", client_ip=request.client.host if request.client else None)
        try:
            upload = await self._accept(request, x)
            return await self._run(request, x, upload)
        except HeshiError as exc:
            x.fail(exc)
            return self.gw.refusal(request, x, exc)
        except BaseException as exc:
            x.fail(exc)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.gw.recorder.finish(x)

    async def _accept(self, request: Request, x: Exchange) -> Upload:
        """Authenticate (before any of the body is read), read the form, check it."""
        gov = self.gw.gov
        x.key = gov.auth.identify(request.headers.get("authorization"))
        x.authenticated = True  # from here on the request is the key's: it gets a ledger row
        gov.auth.check_usable(x.key)
        spec = FormSpec(self.gw.config.docs.max_upload_bytes, _PARTS, "docs.max_upload_bytes")
        parts = await read_form(request, spec)
        request.state.body_read = True
        file, schema_part = _required(parts, "file"), _required(parts, "schema")
        model = parts["model"].text().strip() if "model" in parts else ""
        x.model = model = model or self.gw.config.engine.name
        gov.auth.permit_model(x.key, model)
        if model.startswith(KB_PREFIX):
            raise InvalidRequest(
                f"知识库 {model} 不能抽取单据，请用聊天模型 / a knowledge base cannot extract "
                "documents: name a chat model",
                param="model",
            )
        # An unknown model is a 404 before the document is parsed.
        x.plan = self.gw.router.plan(model, {"model": model, "messages": []})
        self.gw.recorder.started(x)
        max_chars = _max_chars(parts.get("max_chars"))
        name, schema = _schema(schema_part)
        data = bytes(file.data)
        file.data.clear()  # one copy of the upload in memory, not two
        return Upload(data, _suffix(file), name, schema, model, max_chars)

    async def _run(self, request: Request, x: Exchange, upload: Upload) -> Response:
        body = await self.process(x, upload, request.is_disconnected)
        return json_reply(body, headers=x.response_headers())

    async def process(
        self, x: Exchange, upload: Upload, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> JSON:
        """Read ``upload`` on a reader thread, then classify and extract it with chat calls
        of ``x``'s key: the answer's JSON (``docs.extraction``). ``gone`` tells whether the
        caller left while the document was read (then no model is called). Document jobs
        (:mod:`heshi.gateway.docjobs`) process their files here too."""
        if self._queued >= self._max_queued:
            raise ReadersBusy(
                "单据读取繁忙，请稍后重试 / every document reader is busy; retry later"
            )
        self._queued += 1
        try:
            async with self._slots:
                digest, document = await _read(upload, self._readers)
        finally:
            self._queued -= 1
        upload.data = b""  # the text is what the model calls need
        if gone is not None and await gone():  # left while its document was read: no calls
            raise ClientGone(
                "客户端在读取单据时断开 / client disconnected while its document was read"
            )
        calls = _Calls(self.gw, x, upload.model)
        try:
            kind, _, result = await classify_and_extract(
                calls.ask, upload.schema, document.text, upload.model, upload.max_chars
            )
        except NotBuiltIn:
            raise NoBuiltInSchema(
                "单据类型为 other，没有内置字段定义，请在 schema 中给出 JSON Schema / the "
                "document is of kind 'other': no built-in schema; send a JSON Schema as "
                "the 'schema' part",
                param="schema",
            ) from None
        body = {
            "object": "docs.extraction",
            "schema": upload.schema_name,
            "type": kind,
            "fields": result.values,
            "problems": [p.as_json() for p in result.problems],
            "truncated": result.truncated,
            "pages": document.pages,
            "sha256": digest,
            "model": upload.model,
            "usage": calls.usage(),
        }
        return body


class _Calls:
    """The model calls of one upload: chat requests of the caller's key, each through the
    public pipeline (admit → guard in → generate → guard out → label → record)."""

    def __init__(self, gateway: Gateway, parent: Exchange, model: str) -> None:
        self.gw = gateway
        self.parent = parent
        self.model = model
        self.prompt_tokens = 0
        self.completion_tokens = 0

    async def ask(self, body: JSON) -> JSON:
        """One chat completion on the caller's behalf; a guard refusal raises."""
        parent = self.parent
        x = parent.child("chat", internal=False)
        # Validated and normalised exactly as a client's request would be.
        x.body = parse_request(ChatCompletionRequest, body).model_dump(
            exclude_unset=True, by_alias=True
        )
        x.model = self.model
        x.plan = self.gw.router.plan(self.model, x.body)
        self.gw.recorder.started(x)
        try:
            outcome = await self.gw.pipeline.unary(x)  # records x however it ends
        finally:
            prompt, completion = x.charged()
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            # The upload's answer carries what the last call decided: route, guard, labels.
            parent.route = x.route
            parent.guard_header = x.guard_header or parent.guard_header
            parent.headers.update(x.headers)
        if isinstance(outcome, Refusal):
            raise ExtractionRefused(_refused(outcome.text))
        choice = (outcome.get("choices") or [{}])[0]
        if choice.get("finish_reason") == "content_filter":
            message = choice.get("message") or {}
            raise ExtractionRefused(_refused(str(message.get("content") or "")))
        return outcome

    def usage(self) -> dict[str, int]:
        """What the calls were charged, in all (their ledger rows add up to it)."""
        total = self.prompt_tokens + self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }


def _refused(text: str) -> str:
    return f"{text} / the content guard refused this document or its extraction"


def _required(parts: dict[str, Part], name: str) -> Part:
    part = parts.get(name)
    if part is None:
        what = {"file": "上传的文件 / the document", "schema": "字段定义 / the schema"}[name]
        raise InvalidRequest(
            f"缺少字段 '{name}'（{what}）/ the '{name}' part is required", param=name
        )
    return part


def _max_chars(part: Part | None) -> int:
    if part is None:
        return DEFAULT_CHARS
    text = part.text().strip()
    if not text.isdigit() or not MIN_CHARS <= int(text) <= MAX_CHARS:
        raise InvalidRequest(
            f"max_chars 须为 {MIN_CHARS} 到 {MAX_CHARS} 的整数 / max_chars must be an integer "
            f"from {MIN_CHARS} to {MAX_CHARS}",
            param="max_chars",
        )
    return int(text)


def _schema(part: Part) -> tuple[str, Schema | None]:
    """(the name the answer reports, the schema; None for ``auto``). Only a built-in name
    is ever loaded by name: client text never becomes a path."""
    text = part.text().strip()
    if text == AUTO:
        return AUTO, None
    if text in BUILT_IN:
        return text, load_schema(text)
    if not text.startswith("{"):
        raise InvalidSchema(
            f"没有这个 schema / no such schema: {text[:64]!r} (built-in: "
            f"{', '.join(BUILT_IN)}; auto; or a JSON Schema object)",
            param="schema",
        )
    try:
        data = parse_json(text.encode("utf-8"), ("schema 部分", "in the 'schema' part"))
    except InvalidRequest as exc:
        raise InvalidSchema(exc.message, param="schema") from None
    stem = PurePosixPath((part.filename or "").replace("\\", "/")).stem
    name = stem if _SCHEMA_NAME.fullmatch(stem) else "custom"
    try:
        return name, schema_from_data(name, data)
    except SchemaError as exc:
        raise InvalidSchema(exc.message, param="schema") from None


def _suffix(part: Part) -> str:
    """The type of the upload: its name's suffix, else its declared content type."""
    name = (part.filename or "").replace("\\", "/")
    suffix = PurePosixPath(name).suffix.lower()
    if _SUFFIX.fullmatch(suffix):
        return suffix
    declared = (part.content_type or "").split(";")[0].strip().lower()
    return _BY_TYPE.get(declared, "")


async def _read(upload: Upload, readers: ThreadPoolExecutor) -> tuple[str, DocumentText]:
    """The upload's SHA-256 and its text, both worked out in a worker thread from the bytes
    in memory (the path only tells the reader the type: nothing is opened or written)."""
    path = Path("upload" + upload.suffix)

    def read() -> tuple[str, DocumentText]:
        return hashlib.sha256(upload.data).hexdigest(), document_text(path, upload.data)

    try:
        return await asyncio.get_running_loop().run_in_executor(readers, read)
    except UnreadableDocument as exc:
        raise UnreadableUpload(exc.message, param="file") from None
    except HeshiError:
        raise
    except Exception as exc:  # a reader's own failure on a broken file
        raise UnreadableUpload(
            f"无法读取文件 / cannot read the file ({type(exc).__name__})", param="file"
        ) from None
