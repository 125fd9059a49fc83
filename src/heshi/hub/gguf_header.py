"""A fast reader of a GGUF file's header: metadata and tensor table, no tensor data.

``gguf.GGUFReader`` builds numpy views of every metadata array, which for a Qwen
vocabulary (151k tokens, 151k merges) takes seconds. ``heshi models info`` needs only
scalars and the tensor table, so this reader skips arrays by their lengths. Layout per
the GGUF specification (ggml/docs/gguf.md): magic, version, tensor count, metadata
count, metadata key/values, tensor infos, alignment padding, tensor data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# value type id → struct format of one element (strings and arrays handled apart)
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_MAX_STRING = 64 * 1024 * 1024  # a chat template is kilobytes; more means a damaged file


class GGUFHeaderError(ValueError):
    """The bytes are not a well-formed GGUF header (damaged or truncated file)."""


@dataclass(frozen=True)
class TensorInfo:
    """One row of the tensor table."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    """Scalar and string metadata (arrays are reported by length) and the tensor table."""

    version: int
    fields: dict[str, Any]
    tensors: list[TensorInfo]
    data_start: int  # absolute file offset of the data section


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise GGUFHeaderError("unexpected end of file in the header")
    return data


def _unpack(handle: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(handle, struct.calcsize(fmt)))[0]


def _string(handle: BinaryIO) -> str:
    length = _unpack(handle, "<Q")
    if length > _MAX_STRING:
        raise GGUFHeaderError(f"implausible string length {length}")
    return _read(handle, length).decode("utf-8", errors="replace")


def _value(handle: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _unpack(handle, _SCALARS[kind])
    if kind == _STRING:
        return _string(handle)
    if kind != _ARRAY:
        raise GGUFHeaderError(f"unknown metadata value type {kind}")
    element, count = _unpack(handle, "<I"), _unpack(handle, "<Q")
    if element in _SCALARS:
        handle.seek(struct.calcsize(_SCALARS[element]) * count, 1)
    elif element == _STRING:
        for _ in range(count):
            handle.seek(_unpack(handle, "<Q"), 1)
    else:  # nested arrays do not occur in practice; read them the slow way
        for _ in range(count):
            _value(handle, element)
    return _ArrayLength(count)


class _ArrayLength(int):
    """An array's element count, standing in for the skipped array."""


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse ``path``'s header. Raises ``GGUFHeaderError`` on damaged bytes, ``OSError``."""
    with path.open("rb", buffering=1024 * 1024) as handle:
        if _read(handle, 4) != b"GGUF":
            raise GGUFHeaderError("missing GGUF magic")
        version = _unpack(handle, "<I")
        if version not in (2, 3):
            raise GGUFHeaderError(f"unsupported GGUF version {version}")
        n_tensors, n_fields = _unpack(handle, "<Q"), _unpack(handle, "<Q")
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key = _string(handle)
            fields[key] = _value(handle, _unpack(handle, "<I"))
        tensors = []
        for _ in range(n_tensors):
            name = _string(handle)
            dims = _unpack(handle, "<I")
            shape = tuple(_unpack(handle, "<Q") for _ in range(dims))
            tensors.append(TensorInfo(name, shape, _unpack(handle, "<I"), _unpack(handle, "<Q")))
        alignment = fields.get("general.alignment", 32)
        alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
        position = handle.tell()
        data_start = (position + alignment - 1) // alignment * alignment
    return GGUFHeader(version, fields, tensors, data_start)
