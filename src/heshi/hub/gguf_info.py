"""What a GGUF file says about itself: architecture, quantization, context, template, size."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heshi.errors import ModelFileError
from heshi.hub.gguf_header import GGUFHeaderError, read_gguf_header

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    """Facts read from a GGUF header; None where the file does not say."""

    path: Path
    name: str | None
    architecture: str | None
    quantization: str
    context_length: int | None
    chat_template: str | None
    parameters: int  # sum of tensor element counts: an estimate of the parameter count
    tensor_count: int
    file_size: int
    pooling_type: int | None = None  # llama.cpp's enum: 0 none, 1 mean, 2 cls, 3 last, 4 rank
    head_size: int | None = None  # values per attention head (K)
    vocab: tuple[str | None, int | None, int | None, int | None] = (None, None, None, None)
    # ^ the tokenizer: (kind, number of tokens, BOS id, EOS id)


def require_gguf_file(path: Path) -> Path:
    """Return ``path`` if it is a readable file starting with the GGUF magic.

    Raises ``ModelFileError`` otherwise. Cheap: reads four bytes.
    """
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except FileNotFoundError as exc:
        raise ModelFileError(f"模型文件不存在 / model file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ModelFileError(
            f"这是目录，不是模型文件 / {path} is a directory, not a model file"
        ) from exc
    except OSError as exc:
        raise ModelFileError(f"无法读取模型文件 / cannot read model file {path}: {exc}") from exc
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            f"不是 GGUF 文件（文件头不是 'GGUF'） / {path} is not a GGUF file "
            f"(it starts with {magic!r}, not b'GGUF')"
        )
    return path


def read_gguf_info(path: Path) -> GGUFInfo:
    """Read ``path``'s GGUF header. Raises ``ModelFileError`` if missing, truncated or not GGUF."""
    require_gguf_file(path)
    # Imported here: gguf pulls in numpy and its tables, which most commands never need.
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    file_size = path.stat().st_size
    try:
        header = read_gguf_header(path)
        fields = header.fields
        tensors = []
        for t in header.tensors:
            kind = GGMLQuantizationType(t.ggml_type)
            block, size = GGML_QUANT_SIZES[kind]
            count = math.prod(t.shape)
            end = header.data_start + t.offset + count // block * size
            tensors.append((kind, count, len(t.shape), end))
    except (GGUFHeaderError, ValueError, KeyError, OSError) as exc:
        raise ModelFileError(
            f"GGUF 文件已损坏或不完整 / {path} is a damaged or truncated GGUF file: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if tensors and max(end for *_, end in tensors) > file_size:
        raise ModelFileError(
            f"GGUF 文件不完整（张量数据超出文件末尾） / {path} is truncated: "
            "tensor data runs past the end of the file"
        )
    architecture = _text(fields.get("general.architecture"))
    return GGUFInfo(
        path=path,
        name=_text(fields.get("general.name")),
        architecture=architecture,
        quantization=_quantization(fields.get("general.file_type"), tensors),
        context_length=_integer(fields.get(f"{architecture}.context_length")),
        chat_template=_text(fields.get("tokenizer.chat_template")),
        parameters=sum(count for _, count, _, _ in tensors),
        tensor_count=len(tensors),
        file_size=file_size,
        pooling_type=_integer(fields.get(f"{architecture}.pooling_type")),
        head_size=_head_size(fields, architecture),
        vocab=(
            _text(fields.get("tokenizer.ggml.model")),
            _integer(fields.get("tokenizer.ggml.tokens")),
            _integer(fields.get("tokenizer.ggml.bos_token_id")),
            _integer(fields.get("tokenizer.ggml.eos_token_id")),
        ),
    )


def _head_size(fields: dict[str, Any], architecture: str | None) -> int | None:
    explicit = _integer(fields.get(f"{architecture}.attention.key_length"))
    width = _integer(fields.get(f"{architecture}.embedding_length"))
    heads = _integer(fields.get(f"{architecture}.attention.head_count"))
    if explicit is not None:
        return explicit
    return width // heads if width and heads else None


def _quantization(file_type: Any, tensors: list[tuple[Any, int, int, int]]) -> str:
    from gguf import LlamaFileType

    if isinstance(file_type, int):
        try:
            kind = LlamaFileType(file_type)
        except ValueError:
            kind = None
        if kind is not None and kind is not LlamaFileType.GUESSED:
            return kind.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    # No usable file_type: name the most common type among weight matrices (1-D tensors
    # are norms and biases, always F32, and would outvote the real quantization).
    matrices = [tensor_type for tensor_type, _, dims, _ in tensors if dims >= 2]
    common = Counter(matrices or [tensor_type for tensor_type, *_ in tensors]).most_common(1)
    return str(common[0][0].name) if common else "unknown"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
