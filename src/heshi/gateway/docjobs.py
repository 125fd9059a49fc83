"""Document jobs: ``/v1/docs/jobs`` — many files extracted on the gateway, one after
another, with progress to poll and results to download; nothing lost when the page that
started them closes or the gateway restarts.

A job belongs to its tenant: any key of the tenant sees it, adds files to it or cancels it;
no other tenant does. Every file is extracted exactly as ``POST /v1/docs/extract`` would
extract it for the key that uploaded it — read on the document readers, classified and
extracted by chat calls of that key through the public pipeline: its model allow-list,
quotas, budgets, guard, ledger, audit. A file's bytes wait in the store
(:mod:`heshi.store.docjobs`) until a gateway takes it; any replica on the database may, one
file at a time each, jobs taking turns. A file refused by a rate limit waits for it and is
tried again; one whose gateway stopped is given back (a clean stop) or taken again once its
claim goes stale (a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from heshi.admin.spreadsheet import results_csv
from heshi.apps.docs.classify import AUTO
from heshi.apps.docs.schema import BUILT_IN, load_schema
from heshi.apps.kb.documents import READERS
from heshi.apps.kb.engine import PREFIX as KB_PREFIX
from heshi.errors import HeshiError, InvalidRequest
from heshi.gateway.docs import DEFAULT_CHARS, ReadersBusy, Upload, _suffix
from heshi.gateway.edge import parse_json, read_body
from heshi.gateway.exchange import Exchange
from heshi.gateway.forms import FormSpec, read_form
from heshi.gateway.replies import json_reply
from heshi.store.docjobs import DocJobStore, Job, JobFile
from heshi.store.keys import ApiKey

if TYPE_CHECKING:
    from heshi.gateway.docs import DocsExtraction
    from heshi.gateway.handlers import Gateway

log = logging.getLogger("heshi.gateway")

IDLE_SECONDS = 1.0  # how often an idle worker looks for files another replica queued
HEARTBEAT_SECONDS = 30.0  # a worker refreshes its claim on the file it extracts this often
STALE_SECONDS = 120.0  # a claim not refreshed for this long: its replica died
PRUNE_SECONDS = 3600.0  # finished jobs past store.ledger_retention_days are removed hourly
_JOB_BODY_BYTES = 4096
_NAME_CHARS = 200
READABLE = frozenset(READERS) | {".pdf"}  # what the document readers read


class DocJobs:
    """The ``/v1/docs/jobs`` routes and the worker that extracts their files."""

    def __init__(self, gateway: Gateway, docs: DocsExtraction) -> None:
        self.gw = gateway
        self.docs = docs
        self.store = DocJobStore(gateway.gov.db)
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ routes

    def _caller(self, request: Request) -> ApiKey | None:
        gov = self.gw.gov
        key = gov.auth.identify(request.headers.get("authorization"))
        gov.auth.check_usable(key)
        return key

    async def create(self, request: Request) -> Response:
        """``POST /v1/docs/jobs`` ``{"schema": "auto"|built-in, "model"?, "name"?}``."""
        key = self._caller(request)
        raw = await read_body(request, _JOB_BODY_BYTES)
        body = parse_json(raw) if raw else {}
        if not isinstance(body, dict) or set(body) - {"schema", "model", "name"}:
            raise InvalidRequest(
                "请求体须为 {schema, model, name} / the body is {schema, model, name}"
            )
        schema = str(body.get("schema") or AUTO)
        if schema != AUTO and schema not in BUILT_IN:
            raise InvalidRequest(
                f"单据任务只接受内置字段定义或 auto / a document job takes a built-in schema "
                f"name ({', '.join(BUILT_IN)}) or auto; for a JSON Schema of your own use "
                "POST /v1/docs/extract",
                param="schema",
            )
        model = str(body.get("model") or self.gw.config.engine.name)[:128]
        name = _printable(str(body.get("name") or "")[:_NAME_CHARS], "name")
        self.gw.gov.auth.permit_model(key, model)
        if model.startswith(KB_PREFIX):
            raise InvalidRequest("知识库不能抽取单据 / a knowledge base cannot extract documents")
        self.gw.router.plan(model, {"model": model, "messages": []})  # 404 for an unknown one
        tenant = key.tenant if key is not None else "-"
        key_id = key.id if key is not None else None
        job = await asyncio.to_thread(self.store.create, tenant, key_id, name, schema, model)
        return json_reply(job.as_json(), status=201)

    async def upload(self, request: Request) -> Response:
        """``POST /v1/docs/jobs/{id}/files``: one file (part ``file``), queued, to be
        extracted with the uploading key (which must be allowed the job's model)."""
        key = self._caller(request)
        job = await self._job(request, key)
        self.gw.gov.auth.permit_model(key, job.model)
        spec = FormSpec(
            self.gw.config.docs.max_upload_bytes, {"file": None}, "docs.max_upload_bytes"
        )
        part = (await read_form(request, spec)).get("file")
        request.state.body_read = True
        if part is None:
            raise InvalidRequest("缺少字段 'file' / the 'file' part is required", param="file")
        suffix = _suffix(part)
        name = PurePosixPath((part.filename or "").replace("\\", "/")).name or "upload"
        if not suffix:
            raise InvalidRequest(
                f"无法判断文件类型 / cannot tell the type of {name[:64]!r}: give it a suffix",
                param="file",
            )
        if suffix not in READABLE:
            raise InvalidRequest(
                f"不支持的文件类型 / unsupported file type {suffix}: supported: "
                f"{', '.join(sorted(READABLE))}",
                param="file",
            )
        if not name.lower().endswith(suffix):
            name += suffix  # the type came from the declared content type
        stem = name[: -len(suffix)][: _NAME_CHARS - len(suffix)]
        name = _printable(stem + suffix, "file")
        data = bytes(part.data)
        part.data.clear()
        key_id = key.id if key is not None else None
        queued = await asyncio.to_thread(self.store.add_file, job, name, data, key_id)
        self._wake.set()
        return json_reply(queued.as_json(), status=202)

    async def list_jobs(self, request: Request) -> Response:
        """``GET /v1/docs/jobs``: the caller's tenant's newest jobs."""
        key = self._caller(request)
        tenant = key.tenant if key is not None else "-"
        jobs = await asyncio.to_thread(self.store.jobs, tenant)
        return json_reply({"object": "list", "data": [j.as_json() for j in jobs]})

    async def get_job(self, request: Request) -> Response:
        """``GET /v1/docs/jobs/{id}``: progress and every file's outcome."""
        job = await self._job(request, self._caller(request))
        files = await asyncio.to_thread(self.store.files, job.id)
        return json_reply({**job.as_json(), "data": [f.as_json() for f in files]})

    async def results(self, request: Request) -> Response:
        """``GET /v1/docs/jobs/{id}/results.csv``: one row per file, one column per field."""
        job = await self._job(request, self._caller(request))
        files = await asyncio.to_thread(self.store.files, job.id)
        return Response(
            results_csv([f.as_json() for f in files]),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{job.id}.csv"'},
        )

    async def cancel(self, request: Request) -> Response:
        """``POST /v1/docs/jobs/{id}/cancel``: waiting files are not extracted."""
        job = await self._job(request, self._caller(request))
        cancelled = await asyncio.to_thread(self.store.cancel, job)
        job = await asyncio.to_thread(self.store.get, job.id)
        return json_reply({**job.as_json(), "cancelled_files": cancelled})

    async def _job(self, request: Request, key: ApiKey | bool | None = False) -> Job:
        if key is False:
            key = self._caller(request)
        assert key is not True
        tenant = key.tenant if key is not None else "-"
        job_id = str(request.path_params["job_id"])[:64]
        return await asyncio.to_thread(self.store.get, job_id, tenant)

    # ------------------------------------------------------------------ the worker

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="heshi-docs-jobs")

    async def close(self) -> None:
        """Stop the worker; the file it was extracting goes back to the queue."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # it died before: say so, do not fail the shutdown
                log.warning("document jobs worker had stopped: %r", exc)

    async def _work(self) -> None:
        pruned, failures = 0.0, 0
        while True:
            try:
                if time.monotonic() - pruned > PRUNE_SECONDS:
                    days = self.gw.config.store.ledger_retention_days
                    await asyncio.to_thread(self.store.prune, days)
                    pruned = time.monotonic()
                taken = None
                if not self.docs.busy():  # the readers are taken by /v1/docs/extract
                    taken = await asyncio.to_thread(self.store.take, STALE_SECONDS)
                if taken is not None:
                    await self._extract(*taken)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down, say: wait, then go on
                failures += 1
                log.warning("document jobs: %s (retrying)", exc)
                await asyncio.sleep(min(30.0, 2.0**failures))
                continue
            if taken is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_SECONDS)

    async def _extract(self, job: Job, file: JobFile) -> None:
        """One file, as ``POST /v1/docs/extract`` by the key that uploaded it; its outcome
        stored. A rate limit or a stop gives it back to the queue."""
        x = Exchange(endpoint="docs", request_id=f"req_{file.id}.a{file.attempts}")
        beat = asyncio.create_task(self._heartbeat(file))
        try:
            outcome = await self._run(x, job, file)
        except ReadersBusy:
            x.authenticated = False  # not an attempt: no ledger row for it
            await asyncio.to_thread(self.store.requeue, file)
            return
        except HeshiError as exc:
            x.fail(exc)
            retry = getattr(exc, "retry_after", None)
            if isinstance(retry, int | float) and retry > 0:  # a rate limit: wait for it
                later = datetime.now(UTC) + timedelta(seconds=float(retry))
                await self._store(self.store.requeue, file, later)
            else:
                await self._store(self.store.finish, file, "failed", error=exc.message)
            return
        except asyncio.CancelledError as exc:  # the gateway stops: the file goes back
            x.fail(exc)
            with anyio.CancelScope(shield=True):
                await asyncio.to_thread(self.store.requeue, file)
            raise
        except Exception as exc:
            x.fail(exc)
            log.exception("document job %s: file %s failed", job.id, file.id)
            error = f"内部错误 / internal error ({type(exc).__name__})"
            await self._store(self.store.finish, file, "failed", error=error)
            return
        finally:
            beat.cancel()
            with anyio.CancelScope(shield=True):
                await self.gw.recorder.finish(x)
        result = {k: outcome.get(k) for k in ("fields", "problems", "pages", "truncated", "usage")}
        kind = outcome.get("type") or (job.schema if job.schema != AUTO else None)
        await self._store(self.store.finish, file, "done", kind=kind, result=result)

    async def _store(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Write a file's outcome, retried while the store is away (up to about a minute):
        the work is done and paid for, so it is not thrown away on the first failure."""
        for wait in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0):
            try:
                await asyncio.to_thread(write, *args, **kwargs)
                return
            except Exception as exc:
                log.warning("document jobs: cannot store an outcome yet: %s", exc)
                await asyncio.sleep(wait)
        await asyncio.to_thread(write, *args, **kwargs)  # the last try raises to _work

    async def _run(self, x: Exchange, job: Job, file: JobFile) -> dict[str, Any]:
        x.key = await self._key(file.key_id or job.key_id)
        x.authenticated = True
        gov = self.gw.gov
        gov.auth.check_usable(x.key)
        x.model = job.model
        gov.auth.permit_model(x.key, job.model)
        x.plan = self.gw.router.plan(job.model, {"model": job.model, "messages": []})
        self.gw.recorder.started(x)
        schema = None if job.schema == AUTO else load_schema(job.schema)
        upload = Upload(
            file.data or b"", _suffix_of(file.file_name), job.schema, schema, job.model,
            DEFAULT_CHARS,
        )  # fmt: skip
        return await self.docs.process(x, upload)

    async def _heartbeat(self, file: JobFile) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            with contextlib.suppress(Exception):  # a missed beat: the next one may land
                await asyncio.to_thread(self.store.heartbeat, file)

    async def _key(self, key_id: str | None) -> ApiKey | None:
        if key_id is None:
            return None
        return await asyncio.to_thread(self.gw.gov.keys.get, key_id)


def _suffix_of(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _printable(text: str, param: str) -> str:
    """``text`` when every character is visible (no control or format characters: they
    would rewrite a terminal or a CSV row, or reorder how a name reads)."""
    if not all(c.isprintable() and unicodedata.category(c) != "Cf" for c in text):
        raise InvalidRequest(
            f"{param} 含控制字符 / {param} contains control or format characters", param=param
        )
    return text
