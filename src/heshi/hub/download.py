"""Resumable, verified download of one file from Hugging Face or ModelScope over HTTP.

Bytes go to ``<dest>.part``. A later pull asks for the rest with ``Range: bytes=N-``;
a ``206`` answer is appended, a ``200`` (server ignored the range) restarts the file.
Only after the size (Content-Length / Content-Range total) and the sha256 (given by the
caller, else advertised by the server as a 64-hex ETag) check out is the ``.part``
renamed to ``dest``, so nothing that looks complete is ever half-written.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.progress import Progress

from heshi.errors import HubError
from heshi.hub.refs import HubFileRef
from heshi.hub.settings import HubSite
from heshi.hub.verify import looks_like_sha256, verify_download

_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class _Plan:
    """Where the response body lands in the ``.part`` file and how long the file is."""

    start: int
    total: int | None


def download_hub_file(
    client: httpx.Client,
    site: HubSite,
    ref: HubFileRef,
    dest: Path,
    *,
    expected_sha256: str | None,
    progress: Progress,
) -> str:
    """Download ``ref`` from ``site`` to ``dest``; return the verified file's sha256.

    Raises ``HubError`` on HTTP errors, timeouts, dropped connections (the ``.part`` is
    kept so the next call resumes) and size or checksum mismatches (the ``.part`` is
    deleted).
    """
    headers = {"Accept-Encoding": "identity"}
    if site.token:
        headers["Authorization"] = f"Bearer {site.token}"
    return download_file(
        client,
        site.file_url(ref),
        dest,
        headers=headers,
        expected_sha256=expected_sha256,
        progress=progress,
        token_env=site.token_env,
    )


def download_file(
    client: httpx.Client,
    url: str,
    dest: Path,
    *,
    headers: Mapping[str, str],
    expected_sha256: str | None,
    progress: Progress,
    token_env: str,
) -> str:
    """Resumable download of ``url`` to ``dest`` (see the module docstring)."""
    partial = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A 416 naming another length means the .part is no prefix of this file (it changed
    # upstream): start over, once.
    for _attempt in range(2):
        offset = partial.stat().st_size if partial.exists() else 0
        request_headers = dict(headers)
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
        try:
            with client.stream("GET", url, headers=request_headers, follow_redirects=True) as resp:
                expected = expected_sha256 or advertised_sha256(resp)
                if resp.status_code == 416 and offset:
                    if _range_total(resp) != offset:
                        partial.unlink()
                        continue
                    # The last pull got every byte but stopped before verifying.
                    plan = _Plan(start=offset, total=offset)
                    actual = _hash_kept(partial)
                else:
                    _raise_for_status(resp, url, token_env)
                    plan = _plan_write(resp, offset)
                    actual = _receive(resp, partial, plan, progress, dest.name)
        except httpx.TimeoutException as exc:
            raise HubError(
                f"下载超时，可再次运行 pull 续传 / download timed out ({type(exc).__name__}) "
                f"from {url}; run the pull again to resume"
            ) from exc
        except httpx.HTTPError as exc:
            raise _network_error(url, partial, exc) from exc
        verify_download(
            partial,
            source=url,
            expected_size=plan.total,
            expected_sha256=expected,
            actual_sha256=actual,
        )
        os.replace(partial, dest)
        return actual
    raise HubError(f"服务器拒绝续传请求 / the server keeps rejecting the range request: {url}")


def advertised_sha256(response: httpx.Response) -> str | None:
    """The sha256 a server advertises for the file, if any.

    Hugging Face puts the LFS object's sha256 in ``X-Linked-Etag`` on its redirect and in
    ``ETag``; any 64-hex entity tag along the redirect chain is taken as the sha256.
    """
    for resp in [*response.history, response]:
        for header in ("x-linked-etag", "etag"):
            value: str | None = resp.headers.get(header)
            if value is None:
                continue
            tag = value.strip().removeprefix("W/").strip('"')
            if looks_like_sha256(tag):
                return tag.lower()
    return None


def _raise_for_status(response: httpx.Response, url: str, token_env: str) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    if status in (401, 403):
        raise HubError(
            f"无权访问（HTTP {status}），私有或需授权的仓库请设置 {token_env} / "
            f"access denied (HTTP {status}) for {url}; for a gated or private repo set {token_env}"
        )
    if status == 404:
        raise HubError(
            f"文件不存在（HTTP 404），请检查组织、仓库、版本与文件名 / "
            f"not found (HTTP 404): {url}; check the org, repo, revision and file name"
        )
    raise HubError(f"下载失败 / download failed: HTTP {status} from {url}")


def _plan_write(response: httpx.Response, offset: int) -> _Plan:
    if response.status_code == 206:
        match = _CONTENT_RANGE_RE.match(response.headers.get("content-range", ""))
        if match is None or int(match[1]) != offset:
            raise HubError(
                "服务器返回的续传范围有误 / the server answered the wrong byte range: "
                f"asked from {offset}, got {response.headers.get('content-range')!r}"
            )
        return _Plan(start=offset, total=None if match[3] == "*" else int(match[3]))
    length = response.headers.get("content-length")
    return _Plan(start=0, total=int(length) if length and length.isdigit() else None)


def _receive(
    response: httpx.Response, partial: Path, plan: _Plan, progress: Progress, label: str
) -> str:
    """Append the body to ``partial`` from ``plan.start``; return the whole file's sha256."""
    # The digest covers the whole file, so the bytes kept from last time count too.
    hasher = hashlib.sha256()
    if plan.start:
        with partial.open("rb") as kept:
            hasher = hashlib.file_digest(kept, "sha256")
    task = progress.add_task(label, total=plan.total, completed=plan.start, unit="bytes")
    with partial.open("ab" if plan.start else "wb") as out:
        # No chunk_size: httpx would buffer up to it and lose that much on a dropped connection.
        for chunk in response.iter_bytes():
            out.write(chunk)
            hasher.update(chunk)
            progress.advance(task, len(chunk))
    return hasher.hexdigest()


def _range_total(response: httpx.Response) -> int | None:
    """The file length a 416 answer reports in ``Content-Range: bytes */N``."""
    match = re.match(r"^bytes \*/(\d+)$", response.headers.get("content-range", ""))
    return int(match[1]) if match else None


def _hash_kept(partial: Path) -> str:
    with partial.open("rb") as kept:
        return hashlib.file_digest(kept, "sha256").hexdigest()


def _network_error(url: str, partial: Path, exc: httpx.HTTPError) -> HubError:
    host = httpx.URL(url).host
    if isinstance(exc, httpx.ConnectError):
        return HubError(
            f"无法连接 {host}，请检查网络、代理或镜像地址（HF_ENDPOINT / "
            f"HESHI_MODELSCOPE_ENDPOINT） / cannot connect to {host} ({exc}); check the "
            "network, proxy or mirror endpoint"
        )
    kept = partial.stat().st_size if partial.exists() else 0
    return HubError(
        f"下载中断（已保存 {kept} 字节），再次运行 pull 将续传 / download interrupted after "
        f"{kept} bytes ({type(exc).__name__}: {exc}); run the pull again to resume"
    )
