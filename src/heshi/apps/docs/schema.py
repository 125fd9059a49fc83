"""Extraction schemas: the built-in ones (invoice, contract, bill of lading, bank statement)
and any JSON Schema file of the user's whose properties' ``description`` say what to
extract.

Beyond JSON Schema, a property may carry checks Heshi runs after extraction:
``"x-check": "uscc"`` (a unified social credit code / tax id with its check character),
``"x-capital-of": "FIELD"`` (an amount in capitals that must equal FIELD), and the schema
``"x-sums": [{"field": F, "of": [A, B], "minus": [C]}]`` (F = A + B − C, to the fen).
"""

from __future__ import annotations

import functools
import hashlib
import json
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from heshi.errors import InvalidRequest

BUILT_IN = ("invoice", "contract", "bill_of_lading", "bank_statement")
MAX_SCHEMA_BYTES = 1024 * 1024
_CHECKS = ("uscc",)


class SchemaError(InvalidRequest):
    code = "invalid_schema"


@dataclass(frozen=True)
class Schema:
    name: str
    schema: dict[str, Any]  # as given (with Heshi's x- checks)

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        return dict(self.schema["properties"])

    def for_model(self) -> dict[str, Any]:
        """What the model is held to: every top-level property present, null allowed (a
        field the document does not hold), no other keys; Heshi's x- keys removed."""
        props = {
            name: {"anyOf": [_plain(spec), {"type": "null"}]}
            for name, spec in self.properties.items()
        }
        out: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }
        for name in ("$defs", "definitions"):  # what a property's $ref points into
            if name in self.schema:
                out[name] = _plain(self.schema[name])
        return out

    @property
    def digest(self) -> str:
        """The schema's content, hashed: a batch's finished rows count only for it."""
        canonical = json.dumps(self.schema, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_schema(ref: str | Path) -> Schema:
    """A built-in schema by name, or a JSON Schema file; a clear error otherwise."""
    text = str(ref)
    if text in BUILT_IN:
        return _built_in(text)
    path = Path(text)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a pipe would never end, a directory fails
            raise SchemaError(f"schema 不是普通文件 / the schema is not a regular file: {path}")
        if info.st_size > MAX_SCHEMA_BYTES:
            raise SchemaError(f"schema 文件过大 / schema file over 1 MiB: {path}")
        data = json.loads(path.read_text("utf-8-sig"))
    except FileNotFoundError as exc:
        if path.suffix or len(path.parts) > 1:  # meant as a file
            raise SchemaError(
                f"schema 文件不存在 / schema file not found: {path} (or a built-in schema: "
                f"{', '.join(BUILT_IN)})"
            ) from exc
        raise SchemaError(
            f"没有这个 schema / no such schema: {text} (built-in: {', '.join(BUILT_IN)}; "
            "or a JSON Schema file)"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"无法读取 schema / cannot read the schema {path}: {exc}") from exc
    return _checked(path.stem, data)


@functools.cache
def _built_in(name: str) -> Schema:
    """A built-in schema, read and checked once per process (a batch and every upload use
    them; nothing changes a :class:`Schema`)."""
    raw = resources.files("heshi.apps.docs").joinpath(f"schemas/{name}.json").read_text("utf-8")
    return _checked(name, json.loads(raw))


def schema_from_data(name: str, data: Any) -> Schema:
    """A JSON Schema already decoded (one sent over HTTP, never a path to open), checked as
    a file's would be; :class:`SchemaError` says what is wrong with it."""
    return _checked(name, data)


def _checked(name: str, data: Any) -> Schema:
    if not isinstance(data, dict) or data.get("type", "object") != "object":
        raise SchemaError(f"{name}: schema 须为 object / the schema must be an object schema")
    props = data.get("properties")
    if not isinstance(props, dict) or not props:
        raise SchemaError(f"{name}: schema 需要 properties / the schema needs properties")
    for field, spec in props.items():
        if not isinstance(spec, dict):
            raise SchemaError(f"{name}: {field} 的定义须为对象 / must be an object")
        check = spec.get("x-check")
        if check is not None and (not isinstance(check, str) or check not in _CHECKS):
            raise SchemaError(
                f"{name}: {field}: x-check {check!r} 未知 / unknown; one of {_CHECKS}"
            )
        other = spec.get("x-capital-of")
        if other is not None and (not isinstance(other, str) or other not in props):
            raise SchemaError(
                f"{name}: {field}: x-capital-of 须为属性名 / must name a property: {other!r}"
            )
    sums = data.get("x-sums") or []
    if not isinstance(sums, list) or not all(isinstance(r, dict) for r in sums):
        raise SchemaError(f"{name}: x-sums 须为对象列表 / must be a list of objects")
    for rule in sums:
        terms = [rule.get("of") or [], rule.get("minus") or []]
        if not all(isinstance(t, list) for t in terms) or not terms[0]:
            raise SchemaError(f"{name}: x-sums 需要 of 列表 / needs an 'of' list: {rule}")
        named = [rule.get("field"), *terms[0], *terms[1]]
        if not all(isinstance(f, str) and f in props for f in named):
            raise SchemaError(
                f"{name}: x-sums 引用了不存在的属性 / names a field that is not a property: {rule}"
            )
    return Schema(name, data)


def _plain(spec: Any) -> Any:
    """``spec`` without Heshi's ``x-`` keys (the grammar builder need not see them)."""
    if isinstance(spec, dict):
        return {k: _plain(v) for k, v in spec.items() if not str(k).startswith("x-")}
    if isinstance(spec, list):
        return [_plain(v) for v in spec]
    return spec
