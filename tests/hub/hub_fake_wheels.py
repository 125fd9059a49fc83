"""Tiny pypi-parts bundles: real wheels (dist-info METADATA, WHEEL, RECORD) pip accepts."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from heshi.hub import PartsBundle


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def write_part_wheel(folder: Path, bundle: PartsBundle, index: int, data: bytes) -> Path:
    """Write part ``index`` of ``bundle`` as a py3-none-any wheel holding ``data``."""
    module, version = bundle.module(index), bundle.version
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b"",
        bundle.member(index): data,
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {bundle.package(index)}\nVersion: {version}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: heshi-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},{_record_hash(body)},{len(body)}\n" for name, body in files.items())
    record += f"{dist_info}/RECORD,,\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            archive.writestr(name, body)
        archive.writestr(f"{dist_info}/RECORD", record)
    return wheel


def fake_bundle(folder: Path, payload: bytes, *, name: str = "tiny-test-model") -> PartsBundle:
    """A 3-part bundle of ``payload`` with its wheels written to ``folder``."""
    bundle = PartsBundle(
        name=name,
        version="1.0.0",
        parts=3,
        file_name="tiny-test-model.gguf",
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    third = len(payload) // 3
    pieces = [payload[:third], payload[third : 2 * third], payload[2 * third :]]
    for index, piece in enumerate(pieces, start=1):
        write_part_wheel(folder, bundle, index, piece)
    return bundle
