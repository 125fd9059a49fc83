"""Write a tiny GGUF with Qwen2 architecture metadata in a few milliseconds."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
)


def write_tiny_gguf(path: Path, *, file_type: int | None = 15) -> Path:
    """A qwen2 GGUF: context 2048, a chat template, an 8x4 F16 matrix and a 4-wide F32 norm."""
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("Tiny Qwen2 Test")
    writer.add_context_length(2048)
    writer.add_chat_template(CHAT_TEMPLATE)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
