"""AIGC labels (GB 45438-2025): wording, provider code, metadata object, writers."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from heshi.errors import ConfigError
from heshi.guard.aigc import (
    DEFAULT_WORDING,
    FIELDS,
    PRODUCER_CODE_LENGTH,
    ImplicitLabel,
    check_wording,
    explicit_label,
    header_value,
    label_json,
    markdown_front_matter,
    new_produce_id,
    pdf_info_entries,
    producer_code,
    verify_reserved_code,
)

USCC = "91350100M000100Y43"
KEY = b"server-secret-key-0123456789"
ALLOWED = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def _label(content: str = "您好，这是回答。") -> ImplicitLabel:
    return ImplicitLabel.for_content(content, producer=producer_code(USCC), key=KEY)


@pytest.mark.parametrize(
    "wording", ["本内容由人工智能生成", "AI合成", "由ＡＩ生成", "人工智能合成内容"]
)
def test_wording_with_both_elements_is_accepted(wording: str) -> None:
    assert check_wording(wording) == wording
    assert explicit_label("正文", "end", wording) == f"正文\n\n{wording}"


@pytest.mark.parametrize("wording", ["本内容由机器生成", "AI 助手提供", "人工智能", "generated"])
def test_wording_missing_an_element_raises_bilingual_config_error(wording: str) -> None:
    with pytest.raises(ConfigError) as info:
        explicit_label("正文", "start", wording)
    assert "须同时包含" in info.value.message and "must contain" in info.value.message
    assert info.value.param == "wording"


def test_explicit_label_positions_and_no_double_label() -> None:
    once = explicit_label("正文")
    assert once == f"{DEFAULT_WORDING}\n\n正文"
    assert explicit_label(once) == once
    assert explicit_label("正文", "end").endswith(DEFAULT_WORDING)
    assert explicit_label("正文", "off") == "正文"
    with pytest.raises(ConfigError):
        explicit_label("正文", "middle")  # type: ignore[arg-type]


def test_producer_code_layout_length_and_charset() -> None:
    plain = producer_code(USCC)
    assert plain == "0011" + USCC + "00000"
    coded = producer_code(USCC.lower(), model_code="QW15")
    assert coded == "0011" + USCC + "1QW15"
    assert producer_code(USCC, model_code="APP1", service_type="2").endswith("2APP1")
    for code in (plain, coded):
        assert len(code) == PRODUCER_CODE_LENGTH
        assert re.fullmatch(r"[0-9A-Z]{27}", code)


def test_producer_code_rejects_wrong_check_char_and_bad_parts() -> None:
    with pytest.raises(ConfigError) as info:
        producer_code(USCC[:-1] + "4")
    assert info.value.param == "uscc" and "统一社会信用代码" in info.value.message
    with pytest.raises(ConfigError):
        producer_code(USCC[:-1])
    with pytest.raises(ConfigError) as bad:
        producer_code(USCC, model_code="qw1")
    assert bad.value.param == "model_code"


def test_produce_ids_unique_and_time_ordered_over_10k() -> None:
    ids = [new_produce_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(ALLOWED.fullmatch(i) and len(i) == 32 for i in ids)
    stamps = [i[:12] for i in ids]
    assert stamps == sorted(stamps)
    labels = {_label().produce_id for _ in range(200)}
    assert len(labels) == 200


def test_as_json_has_exactly_seven_keys_and_first_write_copies() -> None:
    label = _label()
    obj = label.as_json()
    assert list(obj) == ["AIGC"] and tuple(obj["AIGC"]) == FIELDS
    inner = obj["AIGC"]
    assert inner["Label"] == "1"
    assert inner["ContentPropagator"] == inner["ContentProducer"] == producer_code(USCC)
    assert inner["PropagateID"] == inner["ProduceID"]
    assert inner["ReservedCode2"] == ""
    assert all(ALLOWED.fullmatch(v) for k, v in inner.items() if k != "ReservedCode2")


def test_reserved_code_verifies_and_fails_after_one_char_tamper() -> None:
    content = "贷款年利率为3.5%，详情请咨询客服。"
    label = _label(content)
    assert re.fullmatch(r"[0-9a-f]{64}", label.reserved_code1)
    assert verify_reserved_code(label, content, KEY)
    assert not verify_reserved_code(label, content.replace("3.5", "3.6"), KEY)
    assert not verify_reserved_code(label, content, KEY + b"x")
    moved = ImplicitLabel(
        label.content_producer, new_produce_id(), reserved_code1=label.reserved_code1
    )
    assert not verify_reserved_code(moved, content, KEY)
    with pytest.raises(ConfigError):
        ImplicitLabel.for_content(content, producer="P", key="short")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label", "4"),
        ("content_producer", ""),
        ("produce_id", "has space"),
        ("produce_id", 'q"uote'),
        ("reserved_code2", "back\\slash"),
        ("produce_id", "中文"),
        ("produce_id", "x" * 257),
    ],
)
def test_values_outside_charset_or_limits_raise(field: str, value: str) -> None:
    args = {"content_producer": "P1", "produce_id": "ID1", field: value}
    with pytest.raises(ConfigError) as info:
        ImplicitLabel(**args)
    assert "/" in info.value.message


def test_length_limit_is_configurable() -> None:
    assert ImplicitLabel("P", "x" * 300, max_value_length=512).produce_id == "x" * 300


def test_json_and_header_round_trip() -> None:
    label = _label()
    header = header_value(label)
    assert " " not in header and header.isascii() and header.isprintable()
    assert ImplicitLabel.from_json(json.loads(header)) == label
    doc = label_json({"id": "chatcmpl-1", "AIGC": {"stale": "x"}}, label)
    again = json.loads(json.dumps(doc, ensure_ascii=False))
    assert again["id"] == "chatcmpl-1"
    assert ImplicitLabel.from_json(again) == label
    with pytest.raises(ConfigError):
        ImplicitLabel.from_json({"AIGC": {"Label": "1"}})


def test_front_matter_added_kept_and_idempotent() -> None:
    label = _label()
    once = markdown_front_matter("# 报告\n正文\n", label)
    assert markdown_front_matter(once, label) == once
    meta = yaml.safe_load(once.split("---\n")[1])
    assert meta == label.as_json()
    assert once.endswith("---\n# 报告\n正文\n")

    existing = '---\ntitle: 月报\nAIGC:\n  Label: "2"\n  ProduceID: old\ntags: [a]\n---\n正文\n'
    done = markdown_front_matter(existing, label)
    assert markdown_front_matter(done, label) == done
    meta = yaml.safe_load(done.split("---\n")[1])
    assert meta["title"] == "月报" and meta["tags"] == ["a"]
    assert meta["AIGC"] == label.as_json()["AIGC"]
    assert done.count("AIGC:") == 1 and done.endswith("---\n正文\n")

    relabelled = markdown_front_matter(done, _label())
    assert relabelled.count("AIGC:") == 1 and relabelled != done


def test_front_matter_keeps_crlf() -> None:
    text = "---\r\ntitle: x\r\n---\r\nbody\r\n"
    out = markdown_front_matter(text, _label())
    assert "\n" not in out.replace("\r\n", "")
    assert yaml.safe_load(out.split("---\r\n")[1])["AIGC"]["Label"] == "1"


def test_pdf_info_entry_holds_appendix_e_string() -> None:
    label = _label()
    entries = pdf_info_entries(label)
    assert list(entries) == ["/AIGC"]
    assert json.loads(entries["/AIGC"]) == label.as_json()
