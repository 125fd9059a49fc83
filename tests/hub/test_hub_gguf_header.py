"""The fast header reader agrees with the gguf package's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader

from heshi.hub.gguf_header import GGUFHeaderError, read_gguf_header
from tests.tinymodel import VOCAB_SIZE, build_tiny_qwen2_gguf


def test_matches_gguf_reader_on_a_real_tiny_model(tmp_path: Path) -> None:
    path = build_tiny_qwen2_gguf(tmp_path / "tiny.gguf")
    header = read_gguf_header(path)
    reader = GGUFReader(path)
    scalars = {
        name: field.contents()
        for name, field in reader.fields.items()
        if not isinstance(field.contents(), list) and not name.startswith("GGUF.")
    }
    for name, value in scalars.items():
        assert (
            header.fields[name] == pytest.approx(value)
            if isinstance(value, float)
            else (header.fields[name] == value)
        ), name
    assert header.fields["tokenizer.ggml.tokens"] == VOCAB_SIZE  # arrays: their length
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    for ours, theirs in zip(header.tensors, reader.tensors, strict=True):
        assert ours.ggml_type == int(theirs.tensor_type)
        assert header.data_start + ours.offset == int(theirs.data_offset)
        assert ours.shape == tuple(int(d) for d in theirs.shape)


@pytest.mark.parametrize("cut", [3, 10, 40, 400])
def test_truncated_headers_are_refused(tmp_path: Path, cut: int) -> None:
    whole = build_tiny_qwen2_gguf(tmp_path / "tiny.gguf").read_bytes()
    broken = tmp_path / "cut.gguf"
    broken.write_bytes(whole[:cut])
    with pytest.raises(GGUFHeaderError):
        read_gguf_header(broken)
