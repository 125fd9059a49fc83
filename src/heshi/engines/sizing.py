"""How many tokens a request's prompt will take, estimated without the model's tokenizer.

Admission reserves a request's tokens before any backend is called. The embedded engine
counts a prompt exactly (its own chat template and tokenizer); a remote backend's
tokenizer is not at hand, so this module estimates, from above:

- every character costs what it costs alone in Qwen's tokenizer: a table measured with
  ``python -m heshi.engines.sizing build --model QWEN.gguf`` over every BMP character
  (``data/char_tokens.bin``, 2 bits each). 8,498 of the 20,902 common CJK characters
  are one token, the rest two or three; ASCII is one token per character at most;
  characters beyond the BMP count their four UTF-8 bytes;
- the chat template's own tokens: a default system prompt, role markers per message,
  the tool-calling instructions when ``tools`` are sent (``TEMPLATE_*`` below, measured
  with Qwen2.5's template, which adds the most of the Qwen family's).

A byte-level tokenizer never needs more tokens than bytes, and merges only make fewer,
so the estimate is an upper bound for Qwen-family tokenizers in practice (checked against
the real tokenizer by ``tests/test_real_model.py``). It is not a proof: a model with a
tokenizer that splits Chinese more finely can need more, which is why the gateway also
caps what a remote backend may generate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from heshi.engines.base import JSON

TEMPLATE_BASE = 48  # default system prompt + the assistant's opening: 27 for Qwen2.5
TEMPLATE_PER_MESSAGE = 8  # <|im_start|>role\n … <|im_end|>\n: 5 for Qwen2.5
TEMPLATE_TOOLS = 192  # the tool-calling instructions: ~125 for Qwen2.5 with one tool
_TABLE = "char_tokens.bin"


@cache
def _weights() -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Tokens per character for the 65,536 BMP code points, unpacked from 2 bits each."""
    packed = resources.files("heshi.engines").joinpath("data", _TABLE).read_bytes()
    raw = np.frombuffer(packed, dtype=np.uint8)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    weights = ((raw[:, None] >> shifts) & 3).reshape(-1).astype(np.uint8)
    weights[weights == 0] = 3  # never measured (surrogates, NUL): 3 UTF-8 bytes
    return weights


@cache
def _weight_bytes() -> bytes:
    return _weights().tobytes()


def text_tokens(text: str) -> int:
    """An upper estimate of the tokens of ``text`` alone (no template)."""
    if text.isascii():
        return len(text)
    if len(text) < 256:  # below this, numpy's call overhead costs more than a loop
        table = _weight_bytes()
        return sum(table[c] if c < 0x10000 else 4 for c in map(ord, text))
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    bmp = codes < 0x10000
    beyond = int(codes.size - np.count_nonzero(bmp))
    return int(_weights()[codes[bmp]].sum(dtype=np.int64)) + 4 * beyond


def _message_tokens(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    total = TEMPLATE_PER_MESSAGE
    for name in ("role", "name", "tool_call_id", "reasoning_content"):
        value = message.get(name)
        if isinstance(value, str):
            total += text_tokens(value)
    content = message.get("content")
    if isinstance(content, str):
        total += text_tokens(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += text_tokens(part["text"])
    for call in message.get("tool_calls") or ():
        total += _json_tokens(call) + TEMPLATE_PER_MESSAGE
    return total


def _json_tokens(value: Any) -> int:
    import orjson

    return text_tokens(orjson.dumps(value).decode())


def estimate_prompt_tokens(body: JSON) -> int:
    """An upper estimate of the prompt tokens of a chat, completion, embeddings or rerank
    body, chat template included (see the module docstring)."""
    if "messages" in body:
        total = TEMPLATE_BASE + sum(_message_tokens(m) for m in body["messages"] or ())
        if body.get("tools"):
            total += TEMPLATE_TOOLS + _json_tokens(body["tools"])
        return total
    if "query" in body:  # rerank: the query is read beside each document
        docs = [
            d if isinstance(d, str) else str(d.get("text", "")) for d in body.get("documents") or ()
        ]
        query = text_tokens(str(body["query"]))
        return max(1, sum(query + text_tokens(d) for d in docs))
    prompt: Any = body.get("prompt", body.get("input", ""))
    total = text_tokens(body["suffix"]) if isinstance(body.get("suffix"), str) else 0
    if isinstance(prompt, str):
        return total + text_tokens(prompt)
    if isinstance(prompt, list):
        for item in prompt:
            if isinstance(item, str):
                total += text_tokens(item)
            elif isinstance(item, list):  # one prompt as token ids
                total += len(item)
            else:  # a token id
                total += 1
        return total
    return max(total, 1)


# -- building the table -------------------------------------------------------------------


async def _measure(model: Path) -> bytes:
    from heshi.config import LocalEngineConfig
    from heshi.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine("sizing", model, LocalEngineConfig(model=str(model), parallel=1))
    await engine.start()
    counts = np.zeros(0x10000, dtype=np.uint8)
    try:
        for code in range(0x10000):
            if 0xD800 <= code <= 0xDFFF or code == 0:
                continue
            n = await engine.count_prompt_tokens("completions", {"prompt": chr(code)})
            counts[code] = min(n or 3, 3)
            if code % 4096 == 0:
                print(f"U+{code:04X}", file=sys.stderr, flush=True)
    finally:
        await engine.close()
    packed = counts.reshape(-1, 4)
    return bytes(packed[:, 0] | packed[:, 1] << 2 | packed[:, 2] << 4 | packed[:, 3] << 6)


def main(argv: list[str] | None = None) -> None:
    """``python -m heshi.engines.sizing build --model QWEN.gguf [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m heshi.engines.sizing")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--model", type=Path, required=True, help="a Qwen-family GGUF")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / _TABLE)
    args = parser.parse_args(argv)
    args.out.write_bytes(asyncio.run(_measure(args.model)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
