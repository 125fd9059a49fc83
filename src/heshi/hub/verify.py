"""Checks a finished download must pass before it is renamed into place."""

from __future__ import annotations

import re
from pathlib import Path

from heshi.errors import HubError

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def normalize_sha256(value: str | None) -> str | None:
    """Lower-case a sha256 hex digest; raise ``HubError`` if it is not 64 hex digits."""
    if value is None:
        return None
    digest = value.strip().lower()
    if not _SHA256_RE.match(digest):
        raise HubError(
            f"sha256 必须是 64 位十六进制 / sha256 must be 64 hex digits, got {value!r}",
            param="sha256",
        )
    return digest


def looks_like_sha256(value: str) -> bool:
    """True for a bare 64-hex string (how Hugging Face advertises LFS file digests)."""
    return bool(_SHA256_RE.match(value.lower()))


def verify_download(
    partial: Path,
    *,
    source: str,
    expected_size: int | None,
    expected_sha256: str | None,
    actual_sha256: str,
) -> None:
    """Raise ``HubError`` and delete ``partial`` unless its size and digest are as expected.

    Deleting on mismatch matters: resuming from corrupt bytes would fail forever.
    """
    actual_size = partial.stat().st_size
    if expected_size is not None and actual_size != expected_size:
        partial.unlink(missing_ok=True)
        raise HubError(
            f"{source} 大小不符，已删除不完整文件 / size mismatch, partial file deleted: "
            f"expected {expected_size} bytes, got {actual_size}"
        )
    if expected_sha256 is not None and actual_sha256 != expected_sha256:
        partial.unlink(missing_ok=True)
        raise HubError(
            f"{source} sha256 校验失败，已删除下载文件 / checksum mismatch, download deleted: "
            f"expected {expected_sha256}, actual {actual_sha256}"
        )
