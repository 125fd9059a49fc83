"""AI-generated content labels per GB 45438-2025 (in force 2025-09-01).

GB 45438-2025《网络安全技术 人工智能生成合成内容标识方法》 asks for two labels on every
generated text a service hands out:

- An **explicit label** (显式标识) the reader sees: for text, a prompt placed at the start,
  the end or a suitable place in the middle, whose wording carries an AI element (人工智能
  or AI) and a generation element (生成 and/or 合成). The same two-element rule is worded
  in the standard's audio clause; :func:`explicit_label` enforces it on custom wording.
- An **implicit label** (隐式标识) in the file metadata, Appendix E (normative): a field
  whose name contains ``AIGC`` holding the string
  ``{"AIGC": {"Label", "ContentProducer", "ProduceID", "ReservedCode1",
  "ContentPropagator", "PropagateID", "ReservedCode2"}}``:

  ========================  ====================================================
  ``Label``                 1 = is AI-generated (属于), 2 = possibly (可能为),
                            3 = suspected (疑似为)
  ``ContentProducer``       name or code of the generation service provider
  ``ProduceID``             that provider's unique number for this content
  ``ReservedCode1``         provider's own data protecting content/label integrity
  ``ContentPropagator``     name or code of the propagation service provider
  ``PropagateID``           that provider's unique number for this content
  ``ReservedCode2``         propagator's own integrity data
  ========================  ====================================================

  At first write the propagation elements equal the production ones (Appendix E note 1),
  so :class:`ImplicitLabel` copies them when left empty. Values are to be made "mainly"
  of GB 18030 code points 0x21, 0x23-0x5B, 0x5D-0x7E (and an escaped ``\\"``); Heshi
  allows exactly that set without the escaped quote: printable ASCII without space,
  ``"`` and ``\\``, which also makes every value safe in JSON, YAML and HTTP headers.

**ContentProducer code.** TC260's practice guide 《网络安全标准实践指南——人工智能生成合成
内容标识 服务提供者编码规则》 (网安秘字〔2025〕29号, 2025-03-14,
https://www.secrss.com/articles/76654 announces it) defines a 27-character code of
digits and capital letters: positions 1-2 the format code ``00``; 3-22 the 20-character
subject code, for an organization ``1`` (subject type) + ``1`` (bound to its Unified
Social Credit Code) + the 18-character USCC; 23-27 the 5-character service extension,
``00000`` when not used, otherwise a service type (``1`` generation, ``2`` propagation)
followed by a 4-character model/application code the provider assigns itself. The guide
itself was not available to us: this layout is taken from open-source implementations
that cite it, and it is corroborated by codes seen in published files (e.g.
``001191110102MAD55U9H0F10002`` embeds a USCC whose check characters are right). Codes
for individuals and other binding methods were not found, so subject type and binding
are parameters of :func:`producer_code` with the organization/USCC values as defaults.

**Not found in the standard:** per-element length limits (Heshi caps values at
``max_value_length``, default 256, a parameter) and guidance for PDF (Heshi writes a
document-information entry ``/AIGC`` holding the Appendix E string, as the rule that the
field name contain ``AIGC`` suggests). ``ReservedCode1`` is Heshi's choice within the
standard's leeway: HMAC-SHA256 (64 lowercase hex characters) keyed with a server key over
Label, ContentProducer, ProduceID and the content, so neither the content nor the
producer's part of the label can be changed unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from heshi.errors import ConfigError
from heshi.guard.ids import valid_uscc

DEFAULT_WORDING = "本内容由人工智能生成 / AI-generated content"
LABELS = {
    "1": "属于人工智能生成合成内容",
    "2": "可能为人工智能生成合成内容",
    "3": "疑似为人工智能生成合成内容",
}
FIELDS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)
_REQUIRED = frozenset({"Label", "ContentProducer", "ProduceID", "ContentPropagator", "PropagateID"})
PRODUCER_CODE_LENGTH = 27
_VALUE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]*")
_CODE = re.compile(r"[0-9A-Z]*")
_MIN_KEY_BYTES = 16

Position = Literal["start", "end", "off"]


def check_wording(wording: str) -> str:
    """Return ``wording`` if it carries GB 45438's two elements, else raise ConfigError.

    It must contain 人工智能 or AI, and 生成 or 合成; full-width letters count (ＡＩ).
    """
    norm = unicodedata.normalize("NFKC", wording)
    if ("人工智能" in norm or "AI" in norm) and ("生成" in norm or "合成" in norm):
        return wording
    raise ConfigError(
        f"AIGC 显式标识文字 {wording!r} 须同时包含“人工智能”或“AI”，以及“生成”或“合成”"
        f"（GB 45438-2025）/ explicit AIGC label wording {wording!r} must contain "
        "'人工智能' or 'AI' and '生成' or '合成' (GB 45438-2025)",
        param="wording",
    )


def explicit_label(text: str, position: Position = "start", wording: str = DEFAULT_WORDING) -> str:
    """The text with the visible label at its start or end; ``"off"`` returns it unchanged.

    Labelling twice does not add a second label. ``"off"`` is for services that, per the
    labelling measures (art. 9), hand out unlabelled text on the user's request.
    """
    check_wording(wording)
    if position == "off":
        return text
    if position == "start":
        return text if text.startswith(wording) else f"{wording}\n\n{text}"
    if position == "end":
        return text if text.endswith(wording) else f"{text}\n\n{wording}"
    raise ConfigError(
        f"AIGC 显式标识位置只能是 start、end 或 off，而不是 {position!r} / "
        f"explicit AIGC label position must be start, end or off, not {position!r}",
        param="position",
    )


def producer_code(
    uscc: str,
    *,
    model_code: str | None = None,
    service_type: str = "1",
    subject_type: str = "1",
    binding: str = "1",
    format_code: str = "00",
) -> str:
    """The 27-character service-provider code for ``ContentProducer``/``ContentPropagator``.

    ``model_code`` (4 digits or capitals, the provider's own) fills the service extension
    after ``service_type`` (1 generation, 2 propagation); without it the extension is
    ``00000``. Raises ConfigError when the USCC's check characters are wrong or a part has
    the wrong length or characters.
    """
    value = uscc.strip().upper()
    if not valid_uscc(value):
        raise ConfigError(
            f"统一社会信用代码 {uscc!r} 无效（长度、字符或校验位错误）/ "
            f"Unified Social Credit Code {uscc!r} is invalid (length, characters or check "
            "character)",
            param="uscc",
        )
    extension = "00000" if model_code is None else service_type + model_code
    parts = {
        "format_code": (format_code, 2),
        "subject_type": (subject_type, 1),
        "binding": (binding, 1),
        "service_type": (service_type, 1),
        "model_code": (model_code or "0000", 4),
    }
    for name, (part, size) in parts.items():
        if len(part) != size or not _CODE.fullmatch(part):
            raise ConfigError(
                f"服务提供者编码的 {name} 应为 {size} 位数字或大写字母，而不是 {part!r} / "
                f"{name} of the provider code must be {size} digits or capitals, not {part!r}",
                param=name,
            )
    return format_code + subject_type + binding + value + extension


def new_produce_id() -> str:
    """A fresh 32-character ID: 12 hex digits of Unix milliseconds, then 80 random bits.

    IDs made later sort after earlier ones (same millisecond: random order); two IDs
    collide with negligible probability, with no shared state between replicas.
    """
    return f"{time.time_ns() // 1_000_000:012X}{secrets.token_hex(10).upper()}"


def key_bytes(key: bytes | str) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if len(raw) < _MIN_KEY_BYTES:
        raise ConfigError(
            f"AIGC 标识签名密钥至少需要 {_MIN_KEY_BYTES} 字节 / "
            f"the AIGC label signing key needs at least {_MIN_KEY_BYTES} bytes",
            param="key",
        )
    return raw


def reserved_code(
    content: str | bytes, key: bytes | str, *, label: str, producer: str, produce_id: str
) -> str:
    """HMAC-SHA256 (lowercase hex) over Label, ContentProducer, ProduceID and the content."""
    body = content.encode("utf-8") if isinstance(content, str) else content
    head = "\x1f".join((label, producer, produce_id)).encode("ascii", "replace")
    return hmac.new(key_bytes(key), head + b"\x1e" + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ImplicitLabel:
    """The Appendix E metadata object; every value is checked when it is made.

    Empty ``content_propagator``/``propagate_id`` take the producer's values (first
    write). Raises ConfigError for an unknown Label, an empty required element, a value
    outside the allowed characters or longer than ``max_value_length``.
    """

    content_producer: str
    produce_id: str
    label: str = "1"
    reserved_code1: str = ""
    content_propagator: str = ""
    propagate_id: str = ""
    reserved_code2: str = ""
    max_value_length: int = field(default=256, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.content_propagator:
            object.__setattr__(self, "content_propagator", self.content_producer)
        if not self.propagate_id:
            object.__setattr__(self, "propagate_id", self.produce_id)
        if self.label not in LABELS:
            raise ConfigError(
                f"AIGC Label 只能是 1、2 或 3，而不是 {self.label!r} / "
                f"AIGC Label must be 1, 2 or 3, not {self.label!r}",
                param="Label",
            )
        for name, value in self.values().items():
            self._check(name, value)

    def _check(self, name: str, value: str) -> None:
        if name in _REQUIRED and not value:
            raise ConfigError(f"AIGC {name} 不能为空 / AIGC {name} must not be empty", param=name)
        if len(value) > self.max_value_length:
            raise ConfigError(
                f"AIGC {name} 长度 {len(value)} 超过上限 {self.max_value_length} / "
                f"AIGC {name} is {len(value)} characters, over the limit {self.max_value_length}",
                param=name,
            )
        if not _VALUE.fullmatch(value):
            raise ConfigError(
                f"AIGC {name} 含有不允许的字符（只允许除空格、双引号、反斜杠外的可打印 ASCII）："
                f"{value!r} / AIGC {name} has a character outside printable ASCII without "
                f"space, '\"' and '\\': {value!r}",
                param=name,
            )

    @classmethod
    def for_content(
        cls, content: str | bytes, *, producer: str, key: bytes | str, label: str = "1"
    ) -> ImplicitLabel:
        """A first-write label for one response: a new ProduceID and a keyed ReservedCode1."""
        produce_id = new_produce_id()
        code = reserved_code(content, key, label=label, producer=producer, produce_id=produce_id)
        return cls(producer, produce_id, label=label, reserved_code1=code)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ImplicitLabel:
        """Read ``{"AIGC": {...}}`` (or the inner object) back; it must have the seven keys."""
        inner = obj.get("AIGC", obj)
        if not isinstance(inner, Mapping) or set(inner) != set(FIELDS):
            raise ConfigError(
                f"AIGC 对象应恰好包含 {', '.join(FIELDS)} / "
                f"an AIGC object must have exactly the keys {', '.join(FIELDS)}",
                param="AIGC",
            )
        v = {k: inner[k] for k in FIELDS}
        if not all(isinstance(x, str) for x in v.values()):
            raise ConfigError("AIGC 各要素须为字符串 / AIGC values must be strings", param="AIGC")
        return cls(
            v["ContentProducer"],
            v["ProduceID"],
            label=v["Label"],
            reserved_code1=v["ReservedCode1"],
            content_propagator=v["ContentPropagator"],
            propagate_id=v["PropagateID"],
            reserved_code2=v["ReservedCode2"],
        )

    def values(self) -> dict[str, str]:
        """The seven elements in Appendix E order."""
        return {
            "Label": self.label,
            "ContentProducer": self.content_producer,
            "ProduceID": self.produce_id,
            "ReservedCode1": self.reserved_code1,
            "ContentPropagator": self.content_propagator,
            "PropagateID": self.propagate_id,
            "ReservedCode2": self.reserved_code2,
        }

    def as_json(self) -> dict[str, dict[str, str]]:
        """``{"AIGC": {...}}`` with exactly the seven keys."""
        return {"AIGC": self.values()}


def verify_reserved_code(label: ImplicitLabel, content: str | bytes, key: bytes | str) -> bool:
    """True when ``ReservedCode1`` matches this content and label under ``key``."""
    expected = reserved_code(
        content,
        key,
        label=label.label,
        producer=label.content_producer,
        produce_id=label.produce_id,
    )
    return hmac.compare_digest(expected, label.reserved_code1)


def metadata_string(label: ImplicitLabel) -> str:
    """The Appendix E string as compact JSON (ASCII only)."""
    return json.dumps(label.as_json(), separators=(",", ":"), ensure_ascii=True)


def header_value(label: ImplicitLabel) -> str:
    """A value for an ``x-aigc-label`` response header: the compact Appendix E JSON.

    It is visible ASCII without spaces or control characters, so it is a valid HTTP field
    value; ``json.loads`` then :meth:`ImplicitLabel.from_json` reads it back.
    """
    return metadata_string(label)


def label_json(obj: Mapping[str, Any], label: ImplicitLabel) -> dict[str, Any]:
    """A copy of a JSON object with its ``AIGC`` key set (replaced if present)."""
    out = dict(obj)
    out.update(label.as_json())
    return out


def _aigc_yaml(label: ImplicitLabel, newline: str) -> str:
    # Values never contain '"' or '\', so YAML double-quoted scalars need no escaping.
    lines = ["AIGC:"] + [f'  {k}: "{v}"' for k, v in label.values().items()]
    return newline.join(lines) + newline


def markdown_front_matter(text: str, label: ImplicitLabel) -> str:
    """Markdown with the AIGC object in its YAML front matter.

    Existing front matter keeps its other keys; an ``AIGC`` block already there is
    replaced, so applying this twice gives the same text as applying it once.
    """
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    close = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")), None)
    if not lines or lines[0].strip() != "---" or close is None:
        return f"---{newline}{_aigc_yaml(label, newline)}---{newline}{text}"
    kept: list[str] = []
    in_aigc = False
    for line in lines[1:close]:
        if re.match(r"AIGC\s*:", line):
            in_aigc = True
            continue
        if in_aigc and line[:1] in (" ", "\t"):
            continue
        in_aigc = False
        kept.append(line)
    if kept and not kept[-1].endswith(("\n", "\r")):
        kept[-1] += newline
    body = "".join(kept) + _aigc_yaml(label, newline)
    return lines[0] + body + "".join(lines[close:])


def pdf_info_entries(label: ImplicitLabel) -> dict[str, str]:
    """PDF document-information entries: ``/AIGC`` → the Appendix E string.

    GB 45438 gives no PDF-specific key; the entry name contains ``AIGC`` as Appendix E a)
    asks. Pass the result to e.g. ``pypdf.PdfWriter.add_metadata``.
    """
    return {"/AIGC": metadata_string(label)}
