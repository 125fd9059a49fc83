"""Short model names: ``qwen2.5:7b``, ``qwen3:8b-q8_0``, ``qwen2.5-coder:1.5b``.

A short name is ``<family>:<size>[-<quantization>]`` (any case) from the table in
``heshi/catalog/data/gguf.json``: each entry names the GGUF repo Qwen publishes under the
same ``org/repo`` on ModelScope and Hugging Face, and the exact file name(s) of each
quantization in it (several names = one GGUF split into parts). Without a quantization
the entry's default (``q4_k_m`` where published) is meant. ``-instruct`` may be written
after the size (``qwen2.5:7b-instruct-q4_k_m``, as ollama tags say it); ``fp16`` and
``f16`` are the same tag.

:func:`resolve_short_name` turns a name into a :class:`~heshi.hub.refs.CatalogRef`;
:class:`heshi.hub.store.ModelStore` pulls it from the hub ``HESHI_HUB`` names and
verifies every file as for any ``hf:`` / ``modelscope:`` ref. :func:`catalog_name_for`
goes the other way, naming a pulled file (or the embedded default bundle) by what it is.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from heshi.errors import HubError
from heshi.hub.bundles import KNOWN_BUNDLES
from heshi.hub.refs import CatalogRef, HubFileRef, HubName, PypiPartsRef, parse_ref
from heshi.hub.settings import HUBS

_QUANT_ALIASES = {"f16": "fp16", "fp16": "f16"}
# A tag that starts like a size (7b, 0.5b, 30b-a3b) marks text as meant to be a name.
_SIZE_START_RE = re.compile(r"^\d")
_SPLIT_PART_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclass(frozen=True)
class Quantization:
    """One published quantization of a catalog model: its file(s) and size if known."""

    tag: str  # lower case, as written in names: q4_k_m, q8_0, fp16
    files: tuple[str, ...]
    size_bytes: int | None  # exact, from a file listing
    size_gb_approx: float | None  # quoted by a download script or card

    @property
    def size_gb(self) -> float | None:
        """Size in GB (10^9 bytes): exact when known, else the approximate figure."""
        if self.size_bytes is not None:
            return self.size_bytes / 1e9
        return self.size_gb_approx


@dataclass(frozen=True)
class CatalogModel:
    """One model of the GGUF catalog and its published quantizations."""

    family: str  # qwen2.5, qwen2.5-coder, qwen3, qwq, qwen3-embedding
    size: str  # 7b, 0.5b, 30b-a3b
    title: str  # "Qwen2.5 Instruct"
    kind: str  # "chat" | "embedding"
    repos: Mapping[HubName, str]  # hub -> "org/repo"
    quantizations: Mapping[str, Quantization]  # in the table's order
    default_quant: str
    context: int | None
    catalog_id: str | None  # the heshi.catalog model this is a GGUF of, when it has one

    @property
    def short(self) -> str:
        """``family:size`` — the name without a quantization."""
        return f"{self.family}:{self.size}"


@dataclass(frozen=True)
class ShortName:
    """A catalog model at one quantization: what a short name resolves to."""

    model: CatalogModel
    quant: Quantization

    @property
    def name(self) -> str:
        """The canonical spelling, e.g. ``qwen2.5:7b-q4_k_m``."""
        return f"{self.model.short}-{self.quant.tag}"

    @property
    def is_default(self) -> bool:
        return self.quant.tag == self.model.default_quant

    def ref(self) -> CatalogRef:
        return CatalogRef(
            name=self.name,
            repos=tuple((hub, self.model.repos[hub]) for hub in HUBS),
            files=self.quant.files,
        )


def catalog() -> tuple[CatalogModel, ...]:
    """Every model of the GGUF catalog, in the table's order."""
    return _load()


def short_names() -> tuple[ShortName, ...]:
    """Every pullable name: each catalog model at each of its quantizations."""
    return tuple(ShortName(m, q) for m in catalog() for q in m.quantizations.values())


def resolve_short_name(text: str) -> CatalogRef | None:
    """The catalog ref ``text`` names, or None when ``text`` is no attempt at a name.

    Raises ``HubError`` (closest names, and a pointer to ``heshi models search``) when
    ``text`` reads like a short name the catalog does not have: a known family, a family
    close to one, or a tag that starts like a size (``qwen:7b``). Other ``word:…`` text
    (``ollama:qwen2.5``) is left to the caller, which rejects it as an unknown ref kind.
    """
    found = lookup(text)
    if found is not None:
        return found.ref()
    family, _, tag = text.strip().lower().partition(":")
    families = _families()
    near_family = difflib.get_close_matches(family, list(families), n=1, cutoff=0.75)
    if family in families or near_family or _SIZE_START_RE.match(tag):
        raise _unknown_name(text, families.get(family, ()))
    return None


def lookup(text: str) -> ShortName | None:
    """The catalog entry ``text`` names exactly (any case), else None."""
    family, sep, tag = text.strip().lower().partition(":")
    if not sep:
        return None
    # Longest size first: "30b-a3b" must win over a size "30b".
    for model in sorted(_families().get(family, ()), key=lambda m: -len(m.size)):
        if tag == model.size:
            return ShortName(model, model.quantizations[model.default_quant])
        if not tag.startswith(model.size + "-"):
            continue
        rest = tag.removeprefix(model.size + "-")
        if rest == "instruct":
            return ShortName(model, model.quantizations[model.default_quant])
        quant = _quantization(model, rest.removeprefix("instruct-"))
        if quant is not None:
            return ShortName(model, quant)
    return None


def catalog_name_for(ref: str) -> str | None:
    """The short name of the model behind a cache record's ref, or None.

    A ``modelscope:`` / ``hf:`` ref names the catalog model whose repo holds that file
    (a later part of a split GGUF names it too); ``pypi-parts:`` bundles are named by
    the GGUF file they assemble (the embedded default is Qwen2.5-Coder-1.5B-Instruct
    Q4_K_M, so it reads ``qwen2.5-coder:1.5b-instruct-q4_k_m``).
    """
    try:
        parsed = parse_ref(ref)
    except HubError:
        return None
    found: ShortName | None = None
    match parsed:
        case CatalogRef():
            found = lookup(parsed.name)
        case HubFileRef():
            found = _by_file().get((parsed.hub, f"{parsed.org}/{parsed.repo}", parsed.file))
        case PypiPartsRef():
            bundle = KNOWN_BUNDLES.get(parsed.bundle)
            if bundle is not None and bundle.version == parsed.version:
                found = next(
                    (n for n in short_names() if n.quant.files == (bundle.file_name,)), None
                )
    return None if found is None else describe(found)


def describe(name: ShortName) -> str:
    """A name that says what the model is: ``-instruct`` where the GGUF file says so.

    ``qwen2.5-coder:1.5b-instruct-q4_k_m`` rather than ``qwen2.5-coder:1.5b-q4_k_m``:
    Qwen2.5 families also publish base models. Both spellings resolve to the same entry.
    """
    if any("-instruct-" in file for file in name.quant.files):
        return f"{name.model.short}-instruct-{name.quant.tag}"
    return name.name


def split_part(file_name: str) -> tuple[int, int] | None:
    """``(k, n)`` when ``file_name`` is part k of a GGUF split into n parts."""
    match = _SPLIT_PART_RE.search(file_name)
    return (int(match[1]), int(match[2])) if match else None


def _quantization(model: CatalogModel, tag: str) -> Quantization | None:
    found = model.quantizations.get(tag)
    if found is None and tag in _QUANT_ALIASES:
        found = model.quantizations.get(_QUANT_ALIASES[tag])
    return found


def _unknown_name(text: str, same_family: tuple[CatalogModel, ...]) -> HubError:
    typed = text.strip().lower()
    candidates = [n.name for n in short_names()] + [m.short for m in catalog()]
    near = difflib.get_close_matches(typed, candidates, n=3, cutoff=0.5)
    if not near and same_family:
        near = [m.short for m in same_family][:3]
    hint = f"；最接近的 / closest: {', '.join(near)}" if near else ""
    known = ""
    model = next((m for m in same_family if typed.startswith(f"{m.short}-")), None)
    if model is not None:
        tags = ", ".join(model.quantizations)
        known = f"；{model.short} 可用的量化 / published quantizations: {tags}"
    return HubError(
        f"未知的模型名 / unknown model name {text.strip()!r}{known}{hint}。"
        "运行 `heshi models search` 查看可下载的模型 / run `heshi models search` "
        "to list the models you can pull",
        param="ref",
    )


@cache
def _families() -> Mapping[str, tuple[CatalogModel, ...]]:
    grouped: dict[str, list[CatalogModel]] = {}
    for model in catalog():
        grouped.setdefault(model.family, []).append(model)
    return MappingProxyType({family: tuple(models) for family, models in grouped.items()})


@cache
def _by_file() -> Mapping[tuple[HubName, str, str], ShortName]:
    """(hub, org/repo, file) of every catalog file -> the name it belongs to."""
    index: dict[tuple[HubName, str, str], ShortName] = {}
    for name in short_names():
        for hub in HUBS:
            for file in name.quant.files:
                index.setdefault((hub, name.model.repos[hub], file), name)
    return MappingProxyType(index)


@cache
def _load() -> tuple[CatalogModel, ...]:
    from heshi import catalog as planner_catalog

    raw = json.loads(
        resources.files("heshi.catalog").joinpath("data", "gguf.json").read_text("utf-8")
    )
    families: dict[str, Any] = raw["families"]
    planner = planner_catalog.models()
    models = []
    for entry in raw["models"]:
        family = families[entry["family"]]
        catalog_id = entry.get("catalog_id")
        context = entry.get("context")
        if context is None and catalog_id in planner:
            context = planner[catalog_id].context
        quants = {
            tag: Quantization(
                tag=tag,
                files=tuple(q["files"]),
                size_bytes=q.get("size_bytes"),
                size_gb_approx=q.get("size_gb"),
            )
            for tag, q in entry["quantizations"].items()
        }
        models.append(
            CatalogModel(
                family=entry["family"],
                size=entry["size"],
                title=family["title"],
                kind=family["kind"],
                repos=MappingProxyType({hub: entry["repos"][hub] for hub in HUBS}),
                quantizations=MappingProxyType(quants),
                default_quant=entry["default"],
                context=context,
                catalog_id=catalog_id,
            )
        )
    return tuple(models)
