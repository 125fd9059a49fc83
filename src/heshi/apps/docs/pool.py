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
import signal
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from heshi.apps.docs.read import DocumentText, document_text
from heshi.errors import HeshiError, InvalidRequest


class RayUnavailable(InvalidRequest):
    code = "ray_unavailable"


class ReadTimedOut(HeshiError):
    status_code = 500
    error_type = "server_error"
    code = "read_timed_out"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"读取超过 {seconds:g} 秒，已停止 / reading took longer than {seconds:g} s and "
            "was stopped"
        )


class ReaderCrashed(HeshiError):
    status_code = 500
    error_type = "server_error"
    code = "reader_crashed"


class Readers(Protocol):
    async def read(self, path: Path, data: bytes) -> DocumentText: ...

    def close(self, *, finished: bool = True) -> None: ...

    @property
    def description(self) -> str: ...

    @property
    def capacity(self) -> int: ...


def _read(name: str, data: bytes) -> DocumentText:
    """A file's text in a worker (a process of the pool, or a Ray task)."""
    return document_text(Path(name), data)


def _worker_start(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch's to handle
    os.environ.setdefault("HESHI_OCR_THREADS", str(threads))  # the user's setting wins


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # a container's CPU set, not the host's
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ProcessReaders:
    """Reader processes (started fresh, not forked from a process holding a model): as
    many as ``workers``, but no more than the usable cores, which they share for OCR."""

    def __init__(self, workers: int, timeout: float | None = None) -> None:
        self.timeout = timeout
        cores = usable_cores()
        self.workers = max(1, min(workers, cores))
        self.threads = max(1, cores // self.workers)
        self._pool = self._start(self.workers)
        self._alone = asyncio.Lock()  # crashed files are tried again one at a time

    @property
    def description(self) -> str:
        return f"{self.workers} 个读取进程 / {self.workers} reader processes"

    @property
    def capacity(self) -> int:
        return self.workers

    def _start(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(self.threads,),
        )

    async def read(self, path: Path, data: bytes) -> DocumentText:
        """The file's text from a worker. A worker that dies takes every file then in
        the pool with it: each of those is read again alone, in a process of its own,
        so only the file that kills its reader when alone is failed. A read that takes
        longer than ``timeout`` is stopped (its worker with it) and the file failed."""
        pool = self._pool
        try:
            document = await self._in(pool, path, data)
        except BrokenProcessPool:
            self._restart(pool)
            async with self._alone:
                alone = self._start(1)
                try:
                    document = await self._in(alone, path, data)
                except BrokenProcessPool:
                    raise ReaderCrashed(
                        "读取进程在此文件上崩溃（单独重试仍崩溃，文件可能损坏）/ the reader "
                        "process crashed on this file, also when reading it alone "
                        "(a malformed file?)"
                    ) from None
                finally:
                    _stop(alone)
        return document

    def _restart(self, pool: ProcessPoolExecutor) -> None:
        """Stop ``pool`` and start a new one — once, by the first read to notice."""
        if self._pool is pool:
            _stop(pool)
            self._pool = self._start(self.workers)

    async def _in(self, pool: ProcessPoolExecutor, path: Path, data: bytes) -> DocumentText:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(pool, _read, str(path), data), self.timeout
            )
        except TimeoutError:
            self._restart(pool)  # its worker stopped: the others are read again
            raise ReadTimedOut(self.timeout or 0.0) from None  # (None never times out)

    def close(self, *, finished: bool = True) -> None:
        """Wait for the workers when the batch finished; stop them at once when not
        (Ctrl-C, an error): a file half-read is read again by the next run."""
        if finished:
            self._pool.shutdown(wait=True, cancel_futures=True)
        else:
            _stop(self._pool)


def _stop(pool: ProcessPoolExecutor, grace: float = 5.0) -> None:
    """Stop ``pool`` now: queued reads cancelled, running ones' processes terminated —
    and killed, by a watcher thread, if any is still alive ``grace`` seconds later."""
    processes = list(getattr(pool, "_processes", {}).values())  # CPython's, 3.8 onwards
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    if processes:
        threading.Thread(
            target=_kill_late, args=(processes, grace), name="heshi-reader-stop", daemon=True
        ).start()


def _kill_late(processes: list[Any], grace: float) -> None:
    deadline = time.monotonic() + grace  # one grace period for them all, not one each
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(grace)


class RayReaders:
    """Files read by tasks of a Ray cluster: ``auto`` joins the cluster this machine
    belongs to (``ray start``), or starts a local Ray instance when there is none; an
    address (``ray://host:10001`` or ``host:6379``) joins that cluster. Its workers need
    Heshi installed. Ray's usage statistics are switched off; a local instance keeps its
    session files under ``$HESHI_HOME/ray`` (or, when that path is too long for Ray's
    sockets, in a temporary directory), removed at the end."""

    def __init__(self, address: str, home: Path, timeout: float | None = None) -> None:
        self.timeout = timeout
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        self.local = address == "auto" and not _cluster_here()
        self._scratch: Path | None = None
        self._home: Path | None = None  # a local instance's session files, kept in home
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
                self._home = home
                ray.init(_temp_dir=str(self._scratch or home), **options)
            else:
                ray.init(address=address, **options)
        except Exception as exc:
            raise RayUnavailable(
                f"无法连接 Ray 集群 / cannot join the Ray cluster {address!r}: {exc}"
            ) from exc
        # a task is one CPU and its OCR one thread; a worker that dies is retried once
        self._task = ray.remote(num_cpus=1, max_retries=1)(_read).options(
            runtime_env={"env_vars": {"HESHI_OCR_THREADS": "1"}}
        )
        self._running: set[Any] = set()
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 0)))  # type: ignore[no-untyped-call]
        where = "本机 Ray 实例 / a local Ray instance" if self.local else f"Ray {address}"
        self._description = f"{where}, {self.cpus} CPU"

    @property
    def description(self) -> str:
        return self._description

    @property
    def capacity(self) -> int:
        return self.cpus

    async def read(self, path: Path, data: bytes) -> DocumentText:
        ref = self._task.remote(str(path), data)
        self._running.add(ref)
        try:
            document: DocumentText = await asyncio.wait_for(
                asyncio.ensure_future(ref), self.timeout
            )
        except TimeoutError:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
            raise ReadTimedOut(self.timeout or 0.0) from None  # (None never times out)
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            raise cause from None
        except self._ray.exceptions.RayError as exc:
            raise ReaderCrashed(f"Ray 任务失败 / the Ray task failed: {exc}") from None
        finally:
            self._running.discard(ref)
        return document

    def close(self, *, finished: bool = True) -> None:
        """Leave the cluster; tasks still running (Ctrl-C, an error) are cancelled."""
        for ref in list(self._running):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):
            self._ray.shutdown()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        elif self._home is not None:  # this run's session (logs; spilled document bytes)
            latest = self._home / "session_latest"
            session = latest.resolve() if latest.is_symlink() else None
            latest.unlink(missing_ok=True)
            if session is not None and session.parent == self._home.resolve():
                shutil.rmtree(session, ignore_errors=True)


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


def readers(workers: int, ray: str | None, home: Path, timeout: float | None = None) -> Readers:
    return RayReaders(ray, home / "ray", timeout) if ray else ProcessReaders(workers, timeout)
