"""Where a batch's files are read (parsed, and OCR'd — the CPU-heavy part): a pool of
worker processes on this machine by default, or the tasks of a Ray cluster with
``--ray``. The model calls that follow go through the gateway either way (in process,
or the one ``--url`` names), so quotas, guard, ledger and audit apply to every one.

A reader that crashes its process (a malformed file that brings down a native parser,
the out-of-memory killer) costs that file, recorded as failed, and no other: the pool is
started again and the files it held are read once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from heshi.apps.docs.read import DocumentText, document_text
from heshi.errors import HeshiError


class RayUnavailable(HeshiError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "ray_unavailable"


class ReaderCrashed(HeshiError):
    status_code = 500
    error_type = "server_error"
    code = "reader_crashed"


class Readers(Protocol):
    async def read(self, path: Path, data: bytes) -> DocumentText: ...

    def close(self) -> None: ...

    @property
    def description(self) -> str: ...


def _read(name: str, data: bytes) -> tuple[str, int]:
    """A file's text in a worker (a process of the pool, or a Ray task)."""
    document = document_text(Path(name), data)
    return document.text, document.pages


def _worker_start(threads: int) -> None:
    os.environ["HESHI_OCR_THREADS"] = str(threads)


class ProcessReaders:
    """``workers`` processes (started fresh, not forked from a process holding a model),
    sharing the cores for OCR."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._pool = self._start()

    @property
    def description(self) -> str:
        return f"{self.workers} 个进程 / {self.workers} worker processes"

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(self.threads,),
        )

    async def read(self, path: Path, data: bytes) -> DocumentText:
        """The file's text from a worker. A worker that dies takes every file then in
        the pool with it: each is tried once more on a new pool, so only a file that
        kills its reader twice is failed."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._pool
            try:
                text, pages = await loop.run_in_executor(pool, _read, str(path), data)
            except BrokenProcessPool:
                if self._pool is pool:  # the first to notice starts the new pool
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._start()
                if attempt == 2:
                    raise ReaderCrashed(
                        "读取进程在此文件上崩溃两次（文件可能损坏）/ the reader process "
                        "crashed twice on this file (a malformed file?)"
                    ) from None
            else:
                return DocumentText(text, pages)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayReaders:
    """Files read by tasks of a Ray cluster: ``auto`` joins the cluster this machine
    belongs to (``ray start``), or starts a local Ray instance when there is none; an
    address (``ray://host:10001`` or ``host:6379``) joins that cluster. Its workers need
    Heshi installed. Ray's usage statistics are switched off; a local instance keeps its
    session files under ``$HESHI_HOME/ray`` (or, when that path is too long for Ray's
    sockets, in a temporary directory removed at the end)."""

    def __init__(self, address: str, home: Path) -> None:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        self.local = address == "auto" and not _cluster_here()
        self._scratch: Path | None = None
        if self.local:
            _local_token()  # before Ray reads its settings, at import
        try:
            import ray
        except ImportError:
            raise RayUnavailable(
                "未安装 Ray / Ray is not installed: pip install 'heshi[ray]'"
            ) from None
        self._ray = ray
        options: dict[str, Any] = {
            "include_dashboard": False, "log_to_driver": False, "logging_level": "error",
            "configure_logging": False,
        }  # fmt: skip
        try:
            if self.local:
                self._scratch = _session_dir(home)
                ray.init(_temp_dir=str(self._scratch or home), **options)
            else:
                ray.init(address=address, **options)
        except Exception as exc:
            raise RayUnavailable(
                f"无法连接 Ray 集群 / cannot join the Ray cluster {address!r}: {exc}"
            ) from exc
        self._task = ray.remote(max_retries=0)(_read)
        cpus = int(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
        where = "本机 Ray 实例 / a local Ray instance" if self.local else f"Ray {address}"
        self._description = f"{where}, {cpus} CPU"

    @property
    def description(self) -> str:
        return self._description

    async def read(self, path: Path, data: bytes) -> DocumentText:
        try:
            text, pages = await self._task.remote(str(path), data)
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            raise cause from None
        except self._ray.exceptions.RayError as exc:
            raise ReaderCrashed(f"Ray 任务失败 / the Ray task failed: {exc}") from None
        return DocumentText(text, pages)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ray.shutdown()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


MAX_RAY_DIR = 40  # Ray's sockets go 60-odd characters below it; a socket path ends at 107


def _session_dir(home: Path) -> Path | None:
    """Where a local instance keeps its session: ``home``, or — when ``home``'s path is
    too long for the Unix sockets Ray puts below it — a short temporary directory,
    removed when the batch ends (returned, so it can be)."""
    if len(str(home)) <= MAX_RAY_DIR:
        home.mkdir(parents=True, exist_ok=True)
        return None
    return Path(tempfile.mkdtemp(prefix="heshi-ray-"))


def _cluster_here() -> bool:
    """Whether ``address="auto"`` would find a cluster: ``RAY_ADDRESS``, or the one
    ``ray start`` last started on this machine."""
    started = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return bool(os.environ.get("RAY_ADDRESS")) or started.exists()


def _local_token() -> None:
    """A local instance is started with token authentication, its token held in this
    process's environment (inherited by its workers) — Ray would otherwise write one to
    ``~/.ray/auth_token``, outside Heshi's home. A token the user set is kept."""
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def readers(workers: int, ray: str | None, home: Path) -> Readers:
    return RayReaders(ray, home / "ray") if ray else ProcessReaders(workers)
