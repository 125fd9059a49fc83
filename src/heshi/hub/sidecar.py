"""The ``<file>.heshi.json`` written beside each pulled model once it is verified.

Its presence is what makes a cached file count as pulled: a ``.part`` file or a model
whose pull crashed before the sidecar was written is invisible to ``list``/``resolve``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SUFFIX = ".heshi.json"


@dataclass(frozen=True)
class CachedModel:
    """A model file in the cache, as recorded when it was pulled."""

    ref: str
    path: Path
    size: int
    sha256: str
    pulled_at: datetime


def sidecar_path(model: Path) -> Path:
    """Where the sidecar of ``model`` lives."""
    return model.with_name(model.name + SUFFIX)


def write_sidecar(model: Path, *, ref: str, sha256: str) -> CachedModel:
    """Record ``model`` as pulled from ``ref`` (written atomically, after the rename)."""
    record = CachedModel(
        ref=ref,
        path=model,
        size=model.stat().st_size,
        sha256=sha256,
        pulled_at=datetime.now(UTC).replace(microsecond=0),
    )
    data = {
        "ref": record.ref,
        "size": record.size,
        "sha256": record.sha256,
        "pulled_at": record.pulled_at.isoformat(),
    }
    target = sidecar_path(model)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return record


def read_sidecar(model: Path) -> CachedModel | None:
    """The record of ``model``, or None when it is missing, unreadable or stale.

    Stale means the file is gone or its size no longer matches what was verified.
    """
    try:
        data = json.loads(sidecar_path(model).read_text(encoding="utf-8"))
        record = CachedModel(
            ref=str(data["ref"]),
            path=model,
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            pulled_at=datetime.fromisoformat(str(data["pulled_at"])),
        )
        actual_size = model.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if actual_size == record.size else None


def model_for_sidecar(sidecar: Path) -> Path:
    """The model file a sidecar describes."""
    return sidecar.with_name(sidecar.name.removesuffix(SUFFIX))
