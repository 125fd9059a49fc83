from __future__ import annotations

from pathlib import Path

import pytest
from hub_tiny_gguf import CHAT_TEMPLATE, write_tiny_gguf

from heshi.errors import ModelFileError
from heshi.hub import read_gguf_info


def test_reads_architecture_quantization_context_template_and_size(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")

    info = read_gguf_info(path)

    assert info.architecture == "qwen2"
    assert info.name == "Tiny Qwen2 Test"
    assert info.quantization == "Q4_K_M"
    assert info.context_length == 2048
    assert info.chat_template == CHAT_TEMPLATE
    assert info.parameters == 8 * 4 + 4
    assert info.tensor_count == 2
    assert info.file_size == path.stat().st_size


def test_without_file_type_the_weight_matrices_name_the_quantization(tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_gguf(tmp_path / "tiny.gguf", file_type=None))
    # One F16 matrix against one F32 norm: the matrix decides.
    assert info.quantization == "F16"


def test_a_non_gguf_file_is_rejected_by_its_magic(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_text("<html>mirror error page</html>")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        read_gguf_info(path)


@pytest.mark.parametrize("keep_bytes", [12, 200, -40])
def test_a_truncated_gguf_is_rejected(tmp_path: Path, keep_bytes: int) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])
    with pytest.raises(ModelFileError, match="truncated"):
        read_gguf_info(path)


def test_missing_file_and_directory_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        read_gguf_info(tmp_path / "absent.gguf")
    with pytest.raises(ModelFileError, match="directory"):
        read_gguf_info(tmp_path)
