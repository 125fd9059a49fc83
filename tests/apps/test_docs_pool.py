"""Where a batch's files are read: worker processes that may die without costing the
batch more than the file that killed them, and a local Ray instance that leaves nothing
outside Heshi's home."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from heshi.apps.docs.pool import ProcessReaders, ReaderCrashed, ReadTimedOut, _stop
from heshi.apps.kb.parse import UnreadableDocument
from tests.apps.test_docs_cli import INVOICE, run, tiny_yaml


def _kill_children(stop: threading.Event) -> None:
    while not stop.is_set():
        for child in multiprocessing.active_children():
            if child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
        stop.wait(0.05)


def _ended(process: multiprocessing.process.BaseProcess, seconds: float) -> bool:
    """Whether ``process`` ended within ``seconds``. Polled, not joined: the pool's own
    thread reaps its workers too, and a join that loses that race returns early while
    ``is_alive()`` still says True for a moment."""
    deadline = time.monotonic() + seconds
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.exitcode is not None


def test_a_reader_process_that_dies_costs_only_the_file_it_died_on(tmp_path: Path) -> None:
    readers = ProcessReaders(1)
    try:
        text = asyncio.run(readers.read(Path("发票.md"), INVOICE.encode()))
        assert "壹万贰仟捌佰元整" in text.text and text.pages == 1

        # killed under every attempt: this file is failed, said so
        stop = threading.Event()
        killer = threading.Thread(target=_kill_children, args=(stop,))
        killer.start()
        try:
            with pytest.raises(ReaderCrashed, match="also when reading it alone"):
                asyncio.run(readers.read(Path("发票.md"), INVOICE.encode()))
        finally:
            stop.set()
            killer.join()

        # the pool is new; the next file reads, and a reader's own error is the file's
        again = asyncio.run(readers.read(Path("发票2.md"), INVOICE.encode()))
        assert again.text == text.text
        with pytest.raises(UnreadableDocument, match="DOCX"):
            asyncio.run(readers.read(Path("坏.docx"), b"not a zip"))
    finally:
        readers.close()


def test_a_reader_killed_once_reads_its_file_again(tmp_path: Path) -> None:
    readers = ProcessReaders(1)
    try:
        asyncio.run(readers.read(Path("a.md"), INVOICE.encode()))  # the worker is up
        for child in multiprocessing.active_children():
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)  # dies between files (the OOM killer)
        text = asyncio.run(readers.read(Path("b.md"), INVOICE.encode()))
        assert "壹万贰仟捌佰元整" in text.text
    finally:
        readers.close()


def test_files_in_flight_when_a_worker_dies_are_read_again_alone() -> None:
    scan = (Path(__file__).parent / "samples" / "invoice-scan.pdf").read_bytes()  # OCR: slow
    readers = ProcessReaders(2)

    async def both() -> list[str]:
        reads = [asyncio.ensure_future(readers.read(Path(f"{n}.pdf"), scan)) for n in (1, 2)]
        await asyncio.sleep(1.5)  # both are being read (the workers start, then OCR)
        for child in multiprocessing.active_children():
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)  # the out-of-memory killer, say
        return [(await read).text for read in reads]

    try:
        texts = asyncio.run(both())
        assert all("24199090414712738008" in text for text in texts)
    finally:
        readers.close()


def test_a_batch_on_a_local_ray_instance_writes_nothing_outside_heshi_home(
    long_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.setenv(name, "")  # restored (to unset) when the test ends
        monkeypatch.delenv(name)
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"发票{n}.md").write_text(INVOICE.replace("123456789", f"12345678{n}"), "utf-8")
    (docs / "坏.pdf").write_bytes(b"%PDF-1.7 torn")
    out = tmp_path / "out.jsonl"
    cfg = tiny_yaml(long_tiny, tmp_path)
    code, stdout, err = run(
        "docs", "run", str(docs), "--schema", "invoice", "--out", str(out), "--ray", "auto",
        "--workers", "2", "--config", str(cfg),
    )  # fmt: skip
    assert code == 1, err  # the torn PDF failed; the batch went on
    assert "本机 Ray 实例 / a local Ray instance" in err
    rows = {Path(r["file"]).name: r for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert {n for n, r in rows.items() if r["status"] == "ok"} == {f"发票{n}.md" for n in range(3)}
    assert rows["坏.pdf"]["status"] == "failed" and "PDF" in rows["坏.pdf"]["error"]
    assert "3 完成 / done, 1 失败 / failed" in stdout
    assert list(home.iterdir()) == []  # no ~/.ray/auth_token, no usage-stats file
    # the session's files: in a short directory (Ray's socket paths), removed at the end
    assert not list(Path(tempfile.gettempdir()).glob("heshi-ray-*"))


def test_ray_that_cannot_be_reached_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "发票.txt").write_text("发票号码 12345678", encoding="utf-8")
    code, _, err = run(
        "docs", "run", str(tmp_path), "--schema", "invoice", "--out", str(tmp_path / "o.jsonl"),
        "--ray", "ray://127.0.0.1:1",
    )  # fmt: skip
    assert code == 1
    assert "无法连接 Ray 集群 / cannot join the Ray cluster 'ray://127.0.0.1:1'" in err


def test_a_read_past_its_time_limit_is_stopped_and_the_reader_replaced() -> None:
    scan = (Path(__file__).parent / "samples" / "invoice-scan.pdf").read_bytes()
    before = set(multiprocessing.active_children())  # other tests' may still be ending
    readers = ProcessReaders(1, timeout=0.5)  # a fresh worker's start and OCR take longer
    try:
        with pytest.raises(ReadTimedOut, match=r"longer than 0\.5 s"):
            asyncio.run(readers.read(Path("慢.pdf"), scan))
        stopped = [c for c in multiprocessing.active_children() if c not in before]  # ending
        assert not [(c.name, c.pid) for c in stopped if not _ended(c, 15)]
        readers.timeout = 120
        assert "24199090414712738008" in asyncio.run(readers.read(Path("b.pdf"), scan)).text
    finally:
        readers.close()


def _deaf_to_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a native library that swallows it, say


def _mark_then_sleep(mark: str, seconds: float) -> None:
    Path(mark).touch()
    time.sleep(seconds)


def test_a_stopped_reader_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_deaf_to_sigterm)  # fmt: skip
    # Stopped mid-read, not while idle (an idle worker would leave cleanly on shutdown),
    # and after its initializer ran: the read's mark says both, however slow the start.
    mark = tmp_path / "reading"
    pool.submit(_mark_then_sleep, str(mark), 60)
    deadline = time.monotonic() + 60
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (worker,) = pool._processes.values()
    _stop(pool, grace=0.5)
    assert _ended(worker, 15) and worker.exitcode == -signal.SIGKILL
