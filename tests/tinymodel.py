"""Build a tiny, random-weight Qwen2 GGUF so engine tests run against the real llama.cpp loader.

The file is ~440 kB, loads in ~20 ms and decodes thousands of tokens per second on one thread.
Its tokenizer is a genuine byte-level BPE (GPT-2 style, ``pre = "qwen2"``) with a handful of
ASCII merges, so any text tokenizes -- Chinese falls back to one token per UTF-8 byte.

The weights are random except for two deliberate tweaks that make engine tests deterministic:

* The LM head is wired as a bigram cycle: after ``"\n"`` (the last token of the ChatML
  generation prompt) the greedy choice is the first byte of ``greedy_text`` (default
  :data:`GREEDY_TEXT`, "你"), then its next byte, and so on, wrapping around.  A greedy chat
  completion with ``max_tokens=n`` therefore decodes the first ``n`` bytes of ``"你你你..."``,
  one byte per token: every character is split across three tokens, which is exactly what
  UTF-8 reassembly in streaming needs.  (llama.cpp drops a trailing incomplete character.)
* The control tokens' LM-head rows are zero (logit exactly 0, far below the winning logit), so
  greedy decoding never emits ``<|im_end|>`` and always runs to ``max_tokens``
  (``finish_reason == "length"``).

After other tokens (e.g. a raw completion prompt) the output is arbitrary bytes; llama.cpp turns
invalid UTF-8 into U+FFFD.
"""

from __future__ import annotations

import pathlib

import gguf
import numpy as np
import numpy.typing as npt

MODEL_NAME = "tiny-qwen2-test"

# Merges are applied in rank order; every pair's parts must already be in the vocab (either a
# byte symbol or an earlier merge result), which this ordering guarantees.
MERGES: tuple[tuple[str, str], ...] = (
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "a"),
    ("r", "e"),
    ("a", "t"),
    ("Ġ", "s"),
    ("l", "l"),
    ("he", "ll"),
    ("hell", "o"),
)

SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

N_BYTE_TOKENS = 256
N_NORMAL_TOKENS = N_BYTE_TOKENS + len(MERGES)
ENDOFTEXT_ID = N_NORMAL_TOKENS
IM_START_ID = N_NORMAL_TOKENS + 1
IM_END_ID = N_NORMAL_TOKENS + 2
VOCAB_SIZE = N_NORMAL_TOKENS + len(SPECIAL_TOKENS)

# Qwen2-Instruct's ChatML template, minus the default system prompt so prompt token counts stay
# small and predictable.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A ChatML template that describes tools the way Qwen's do (a system turn with the function
# signatures between <tools> tags and the <tool_call> format), written here for the tests.
TOOLS_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\\n' }}"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% endif %}"
    "{{ '# Tools\\n\\n<tools>' }}{% for tool in tools %}{{ '\\n' + (tool | tojson) }}{% endfor %}"
    '{{ \'\\n</tools>\\n\\nCall as <tool_call>{"name": ..., "arguments": ...}</tool_call>'
    "<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if not (tools and loop.first and message['role'] == 'system') %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A thinking model's template, shaped like QwQ's and Qwen3-Thinking's: the assistant turn
# opens a <think> block the model closes itself, unless ``enable_thinking`` is false (then
# the block is given empty, as Qwen3's hybrid template does).
THINKING_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}"
)
# What the thinking tiny model writes, greedily: a thought, the end of the think block,
# an answer (each byte once, for the bigram cycle).
THINKING_TEXT = "R</think>OK"

# Default text that greedy decoding after "\n" cycles through (see module docstring).  Its
# bytes must be distinct, and distinct from "\n", for the bigram map to be a function.
GREEDY_TEXT = "你"
_CYCLE_START = b"\n"

_WEIGHT_STD = 0.02
# Embeddings dominate the residual stream (the blocks' updates are ~0.03 of it with the std
# above), which is what keeps the bigram cycle in the LM head in charge of the argmax.
_EMBED_STD = 1.0
# Random LM-head logits get a std of ~_OUTPUT_STD * sqrt(hidden): spread enough that argmax is
# never a near-tie, yet far below the cycle's logit of ~_CYCLE_GAIN * hidden.
_OUTPUT_STD = 0.5
_CYCLE_GAIN = 0.5


def bytes_to_unicode() -> dict[int, str]:
    """Return GPT-2's reversible byte -> printable-unicode-character mapping.

    Printable Latin-1 bytes map to themselves; the rest (control chars, space, 0x7F-0xA0, 0xAD)
    are shifted to code points 256+ so every byte becomes a visible, non-whitespace symbol.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping: dict[int, str] = {b: chr(b) for b in printable}
    shift = 0
    for b in range(N_BYTE_TOKENS):
        if b not in mapping:
            mapping[b] = chr(N_BYTE_TOKENS + shift)
            shift += 1
    return mapping


def vocab_tokens() -> list[str]:
    """Return the token strings in id order: 256 byte symbols, merge results, special tokens."""
    byte_symbols = bytes_to_unicode()
    tokens = [byte_symbols[b] for b in range(N_BYTE_TOKENS)]
    tokens += [left + right for left, right in MERGES]
    tokens += list(SPECIAL_TOKENS)
    if len(set(tokens)) != len(tokens):  # a duplicate would silently shadow an id in llama.cpp
        raise ValueError("duplicate token in tiny vocab")
    return tokens


def _greedy_cycle(greedy_text: str) -> list[tuple[int, int]]:
    """Return (current byte, next byte) pairs: "\\n" -> text[0] -> ... -> back to text[0]."""
    text = greedy_text.encode()
    if not text or len(set(text + _CYCLE_START)) != len(text) + len(_CYCLE_START):
        raise ValueError("greedy_text must be non-empty with distinct UTF-8 bytes, none '\\n'")
    pairs = [(_CYCLE_START[0], text[0])]
    pairs += [(text[i], text[(i + 1) % len(text)]) for i in range(len(text))]
    return pairs


def _normal(
    rng: np.random.Generator, shape: tuple[int, ...], std: float = _WEIGHT_STD
) -> npt.NDArray[np.float32]:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _add_metadata(
    writer: gguf.GGUFWriter,
    *,
    context_length: int,
    n_layers: int,
    hidden: int,
    n_heads: int,
    n_kv_heads: int,
    ffn: int,
) -> None:
    writer.add_name(MODEL_NAME)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(n_kv_heads)
    writer.add_rope_freq_base(1_000_000.0)  # Qwen2's value
    writer.add_layer_norm_rms_eps(1e-6)


def _add_tokenizer(writer: gguf.GGUFWriter, chat_template: str = CHAT_TEMPLATE) -> None:
    tokens = vocab_tokens()
    types = [gguf.TokenType.NORMAL] * N_NORMAL_TOKENS + [gguf.TokenType.CONTROL] * len(
        SPECIAL_TOKENS
    )
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{left} {right}" for left, right in MERGES])
    # Same choices as the official Qwen2-Instruct GGUFs: no BOS is prepended, <|endoftext|>
    # doubles as BOS/padding, <|im_end|> ends an assistant turn.
    writer.add_bos_token_id(ENDOFTEXT_ID)
    writer.add_pad_token_id(ENDOFTEXT_ID)
    writer.add_eos_token_id(IM_END_ID)
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template)


def _add_tensors(
    writer: gguf.GGUFWriter,
    rng: np.random.Generator,
    *,
    n_layers: int,
    hidden: int,
    n_heads: int,
    n_kv_heads: int,
    ffn: int,
    greedy_text: str,
) -> None:
    # numpy shapes are (out_features, in_features) like PyTorch; gguf reverses them into ggml's
    # ne order, which is what llama.cpp's loader checks against.
    head_dim = hidden // n_heads
    kv_dim = head_dim * n_kv_heads
    ones = np.ones(hidden, dtype=np.float32)

    embed = _normal(rng, (VOCAB_SIZE, hidden), _EMBED_STD)
    writer.add_tensor("token_embd.weight", embed)
    for i in range(n_layers):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", ones)
        writer.add_tensor(f"{blk}.attn_q.weight", _normal(rng, (hidden, hidden)))
        writer.add_tensor(f"{blk}.attn_q.bias", _normal(rng, (hidden,)))
        writer.add_tensor(f"{blk}.attn_k.weight", _normal(rng, (kv_dim, hidden)))
        writer.add_tensor(f"{blk}.attn_k.bias", _normal(rng, (kv_dim,)))
        writer.add_tensor(f"{blk}.attn_v.weight", _normal(rng, (kv_dim, hidden)))
        writer.add_tensor(f"{blk}.attn_v.bias", _normal(rng, (kv_dim,)))
        writer.add_tensor(f"{blk}.attn_output.weight", _normal(rng, (hidden, hidden)))
        writer.add_tensor(f"{blk}.ffn_norm.weight", ones)
        writer.add_tensor(f"{blk}.ffn_gate.weight", _normal(rng, (ffn, hidden)))
        writer.add_tensor(f"{blk}.ffn_up.weight", _normal(rng, (ffn, hidden)))
        writer.add_tensor(f"{blk}.ffn_down.weight", _normal(rng, (hidden, ffn)))
    writer.add_tensor("output_norm.weight", ones)

    output = _normal(rng, (VOCAB_SIZE, hidden), _OUTPUT_STD)
    # Byte b's token id is b itself, so row `nxt` aligned with embedding `prev` makes `nxt` the
    # argmax whenever `prev` is the current token (RMSNorm keeps the direction).  Rows are sums
    # because the cycle's first byte has two predecessors ("\n" and the cycle's last byte).
    cycle = _greedy_cycle(greedy_text)
    for _, nxt in cycle:
        output[nxt] = 0.0
    for prev, nxt in cycle:
        output[nxt] += _CYCLE_GAIN * embed[prev]
    # Zero rows give control tokens a logit of exactly 0, below the max of ~270 random logits,
    # so greedy decoding never stops early on <|im_end|> and never leaks control tokens.
    output[N_NORMAL_TOKENS:] = 0.0
    writer.add_tensor("output.weight", output)


def build_tiny_qwen2_gguf(
    path: pathlib.Path,
    *,
    context_length: int = 512,
    seed: int = 0,
    n_layers: int = 2,
    hidden: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    ffn: int = 128,
    greedy_text: str = GREEDY_TEXT,
    chat_template: str = CHAT_TEMPLATE,
) -> pathlib.Path:
    """Write a tiny random-weight Qwen2 GGUF (F32) to ``path`` and return ``path``.

    The vocab is byte-level BPE: ids 0-255 are the GPT-2 byte symbols, then ``len(MERGES)``
    merged ASCII tokens, then ``<|endoftext|>`` (:data:`ENDOFTEXT_ID`), ``<|im_start|>``
    (:data:`IM_START_ID`) and ``<|im_end|>`` (:data:`IM_END_ID`, the EOS).  A ChatML template
    is embedded as ``tokenizer.chat_template``.  The same ``seed`` gives byte-identical files.

    Greedy chat completions produce ``greedy_text`` repeated, one UTF-8 byte per token (see the
    module docstring); its bytes must be distinct and must not include ``"\n"``.
    """
    if hidden % n_heads or n_heads % n_kv_heads:
        raise ValueError("hidden must divide by n_heads and n_heads by n_kv_heads")
    if (hidden // n_heads) % 2:
        raise ValueError("head dim must be even for RoPE")

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = {
        "n_layers": n_layers,
        "hidden": hidden,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "ffn": ffn,
    }

    writer = gguf.GGUFWriter(path, arch="qwen2")
    try:
        _add_metadata(writer, context_length=context_length, **shape)
        _add_tokenizer(writer, chat_template)
        _add_tensors(writer, rng, greedy_text=greedy_text, **shape)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path
