"""PII detection: valid identifiers found, near misses not, offsets into the original."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from heshi.cli.main import app
from heshi.guard.ids import (
    luhn_complete,
    resident_id_check_char,
    uscc_check_char,
    valid_resident_id,
)
from heshi.guard.pii import mask_value, redact, scan
from heshi.guard.pseudonym import Pseudonymizer, StreamRestorer

TODAY = date(2026, 11, 29)


def _id(region: str, birth: str, seq: str = "123") -> str:
    first17 = region + birth + seq
    return first17 + resident_id_check_char(first17)


def _types(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.text) for f in scan(text, today=TODAY)]


def test_resident_ids_need_region_real_date_and_check_digit() -> None:
    good = _id("110105", "19491231")
    assert _types(f"身份证{good}。") == [("cn_resident_id", good)]
    wrong_check = good[:17] + ("0" if good[17] != "0" else "1")
    impossible = _id("110105", "19490230")  # 30 February
    future = _id("110105", "20270101")
    no_region = _id("990105", "19491231")
    for bad in (wrong_check, impossible, future, no_region):
        assert not valid_resident_id(bad, TODAY)
        assert ("cn_resident_id", bad) not in _types(f"号码{bad}")
    assert valid_resident_id("110105491231002", TODAY)  # 15-digit legacy card
    spaced = f"{good[:6]} {good[6:14]} {good[14:]}"
    assert _types(f"证件号：{spaced}") == [("cn_resident_id", spaced)]


def test_uscc_needs_both_check_characters() -> None:
    assert _types("信用代码91350100M000100Y43") == [("cn_uscc", "91350100M000100Y43")]
    first17 = "91350100M000100Y4"
    wrong = first17 + ("0" if uscc_check_char(first17) != "0" else "1")
    assert _types(f"信用代码{wrong}") == []


def test_uscc_with_letters_and_email_right_after_chinese() -> None:
    code = "91110108MA01ABCD5T"  # only 8 digits: found by its structure, not digit count
    assert _types(f"代码{code}呢") == [("cn_uscc", code)]
    assert _types("我的邮箱是li@example.com，谢谢") == [("email", "li@example.com")]


def test_bank_cards_pass_luhn_or_sit_next_to_a_card_word() -> None:
    assert _types("付款卡 4111 1111 1111 1111") == [("bank_card", "4111 1111 1111 1111")]
    assert _types("流水 4111111111111112 结束") == []  # fails Luhn, no cue
    assert _types("卡号：4111111111111112") == [("bank_card", "4111111111111112")]
    assert _types("订单号 20241129000123456789") == []  # 20 digits: not a card


def test_phones_full_width_and_separators_with_offsets_into_the_original() -> None:
    text = "手机：＋８６ １３８－００１３－８０００，座机(010)62345678，客服400-810-8888"
    found = scan(text, today=TODAY)
    assert [f.type for f in found] == ["cn_mobile", "cn_landline", "cn_landline"]
    for f in found:
        assert text[f.start : f.end] == f.text
    assert found[0].text == "＋８６ １３８－００１３－８０００"
    assert _types("订单 13800138000123") == []  # a longer number is not a phone


def test_network_documents_and_plates() -> None:
    text = (
        "邮箱 li.si+cs@example.com.cn，IP 10.0.0.1 和 fe80::1，不是 IP：999.1.1.1；"
        "护照 E12345678，通行证 C12345678，车牌 京A·12345 与新能源 粤BD12345。"
    )
    assert _types(text) == [
        ("email", "li.si+cs@example.com.cn"),
        ("ipv4", "10.0.0.1"),
        ("ipv6", "fe80::1"),
        ("cn_passport", "E12345678"),
        ("hk_macau_permit", "C12345678"),
        ("cn_license_plate", "京A·12345"),
        ("cn_license_plate", "粤BD12345"),
    ]


def test_names_need_a_cue_and_addresses_two_levels() -> None:
    assert _types("我遇到一个大麻烦") == []
    assert _types("联系人：欧阳娜娜，王建国先生") == [
        ("person_name", "欧阳娜娜"),
        ("person_name", "王建国"),
    ]
    assert _types("寄到浙江省杭州市西湖区文三路90号5幢") == [
        ("address", "浙江省杭州市西湖区文三路90号5幢")
    ]
    assert _types("我在北京") == []


def test_redact_and_mask() -> None:
    text = "身份证11010519491231002X，手机13800138000"
    found = scan(text, today=TODAY)
    assert redact(text, found) == "身份证[身份证号]，手机[手机号]"
    assert [mask_value(f) for f in found] == ["110105********002X", "138****8000"]


def test_pseudonyms_are_stable_and_restored_across_any_chunking() -> None:
    p = Pseudonymizer()
    masked = p.protect("张三先生，电话13800138000；再说一次13800138000。")
    assert masked == "[姓名_1]先生，电话[手机号_1]；再说一次[手机号_1]。"
    answer = "好的[姓名_1]，我们会打[手机号_1]联系您。[未知_9]保持原样。"
    expected = "好的张三，我们会打13800138000联系您。[未知_9]保持原样。"
    assert p.restore(answer) == expected
    for size in range(1, len(answer) + 1):
        r = StreamRestorer(p)
        chunks = [answer[i : i + size] for i in range(0, len(answer), size)]
        assert "".join(r.feed(c) for c in chunks) + r.flush() == expected


def test_cli_json_and_jsonl_contracts(tmp_path: Path) -> None:
    text = "手机13800138000"
    result = CliRunner().invoke(app, ["guard", "scan", "-", "--json"], input=text)
    assert json.loads(result.stdout) == {
        "findings": [{"type": "cn_mobile", "start": 2, "end": 13, "text": "13800138000"}]
    }
    lines = tmp_path / "in.jsonl"
    lines.write_text(
        json.dumps({"id": "a", "text": text, "lang": "zh"}, ensure_ascii=False)
        + "\n"
        + json.dumps({"id": "b"})
        + "\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["guard", "scan", "--jsonl", str(lines)])
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["id"] == "a" and out[0]["lang"] == "zh" and len(out[0]["findings"]) == 1
    assert out[1] == {"line": 2, "error": "no string field `text`"}


def test_runs_that_pass_luhn_are_not_cards_without_an_issuer_or_a_cue() -> None:
    # an invalid resident ID (wrong check digit) from Gansu (62…) that passes Luhn
    first17 = "620102" + "19880512" + "123"
    wrong = next(
        v
        for v in (first17 + c for c in "0123456789X")
        if v[17] != resident_id_check_char(first17) and v.isdigit() and luhn_complete(v[:-1]) == v
    )
    assert _types(f"证件号{wrong}") == []
    assert _types(f"卡号{wrong}") == [("bank_card", wrong)]  # said to be a card: it is one
    order = luhn_complete("202612041234567")  # date-led order number, 16 digits
    assert _types(f"订单号 {order}") == []
    prefix17 = luhn_complete("9135010000012345")  # digits of a credit code, no issuer 91
    assert _types(f"代码{prefix17}") == []
    card = luhn_complete("622202123456789")
    assert _types(f"运单JD{card}") == [] and _types(f"序列号{card}A") == []  # glued letters
    assert _types(f"卡 {card}") == [("bank_card", card)]


def test_forms_people_write_identifiers_in() -> None:
    good = _id("110105", "19491231")
    grouped = f"{good[:3]} {good[3:6]} {good[6:10]} {good[10:14]} {good[14:]}"  # 3-3-4-4-4
    assert _types(f"身份证 {grouped}") == [("cn_resident_id", grouped)]
    hidden = good[:9] + "\u200b" + good[9:]  # a zero-width space inside
    assert _types(f"身份证{hidden}。") == [("cn_resident_id", hidden)]
    card = luhn_complete("622202123456789")
    slashed = "/".join(card[i : i + 4] for i in range(0, 16, 4))
    assert _types(f"卡号 {slashed}") == [("bank_card", slashed)]
    assert _types("电话 1380 013 8000 找我") == [("cn_mobile", "1380 013 8000")]
    assert _types("邮箱 zhang.wei(at)example.com 或 li [at] example.cn") == [
        ("email", "zhang.wei(at)example.com"),
        ("email", "li [at] example.cn"),
    ]
    assert _types("座机 010-12345678") == [("cn_landline", "010-12345678")]
    assert _types("（0755）26688888") == [("cn_landline", "（0755）26688888")]
    assert _types("编号 0101234") == []  # too short for an area code and a number


def test_addresses_without_a_province_and_names_in_a_contact_field() -> None:
    assert _types("请寄到朝阳区建国路88号院3号楼，谢谢") == [("address", "朝阳区建国路88号院3号楼")]
    assert _types("浦东新区世纪大道100号") == [("address", "浦东新区世纪大道100号")]
    assert _types("朝阳区今天的天气怎么样？") == []
    assert _types("联系人：张伟先生，电话稍后给") == [("person_name", "张伟")]
    assert _types("收件人是王芳，放门卫") == [("person_name", "王芳")]
    assert _types("联系人：欧阳娜娜女士") == [("person_name", "欧阳娜娜")]


def test_second_round_forms_and_near_misses() -> None:
    assert _types("银行客户经理闫振东称稍后回电") == [("person_name", "闫振东")]
    for ordinary in ("客户关心的问题", "客户方便的话请回电", "患者康复的情况", "乘客安全第一"):
        assert _types(ordinary) == [], ordinary  # words after a cue that are not names
    assert _types("请把快递寄到科华北路53号，段洋收。") == [
        ("address", "科华北路53号"),
        ("person_name", "段洋"),
    ]
    assert _types("谢谢袁伟经理") == [("person_name", "袁伟")]
    assert _types("本人信息已核实") == []
    assert _types("地址：人民南路四段78号16栋6单元3002室") == [
        ("address", "人民南路四段78号16栋6单元3002室")
    ]
    assert _types("我在青岛市南区，能当天送达吗？") == []  # a place, not an address
    assert _types("发到 kevin_li(at)sina(dot)com") == [("email", "kevin_li(at)sina(dot)com")]
    assert _types("切图导出 btn_close@2x.png") == []
    assert _types("致电4006-880-881") == [("cn_landline", "4006-880-881")]
    assert _types("前台 0871 5828 4017") == [("cn_landline", "0871 5828 4017")]
    assert _types("发票代码 033329929149") == []
    assert _types("流水编号 690103 19670620 054X") == []  # not a phone split 8-3
    hidden = "1380\u200b0138000"
    assert _types(f"电话{hidden}") == [("cn_mobile", hidden)]
