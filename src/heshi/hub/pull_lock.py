"""One pull per model at a time: two pulls appending to the same ``.part`` corrupt it.

The lock is an OS advisory lock (``flock``) on a file under ``<home>/locks/``, so it is
released when the holding process dies, however it dies: no stale locks to clean up.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from heshi.errors import HubError


@contextmanager
def pull_lock(locks_dir: Path, dest: Path, label: str) -> Iterator[None]:
    """Hold the pull lock of ``dest``; raise ``HubError`` at once if another pull holds it."""
    if sys.platform == "win32":
        # No flock on Windows; concurrent pulls there are caught by the checksum instead.
        yield
        return
    import fcntl

    locks_dir.mkdir(parents=True, exist_ok=True)
    # Hashing the path keeps lock names flat and short whatever the ref's file path is.
    name = hashlib.sha256(str(dest).encode()).hexdigest()[:32] + ".lock"
    with (locks_dir / name).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise HubError(
                f"{label} 正在被另一个进程下载，请等待其完成 / "
                f"another process is already pulling {label}; wait for it to finish"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
