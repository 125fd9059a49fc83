"""Document extraction's reading and checking of values: dates, amounts, amounts in
capitals, tax ids, totals, schemas (no model needed)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from heshi.apps.docs.normalize import Unreadable, amount, capital_amount, iso_date
from heshi.apps.docs.schema import BUILT_IN, SchemaError, load_schema
from heshi.apps.docs.validate import validate
from heshi.guard.ids import org_code_check_char, uscc_check_char


def uscc(body16: str) -> str:
    """A valid code from 2 + 6 region digits + 8 organisation characters."""
    org = body16[8:16] + org_code_check_char(body16[8:16])
    first17 = body16[:8] + org
    return first17 + uscc_check_char(first17)


SELLER = uscc("91330106MA2CFPQ7")


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("壹万贰仟捌佰元整", "12800"),
        ("人民币叁佰肆拾伍元陆角柒分", "345.67"),
        ("零元伍角", "0.5"),
        ("伍角", "0.5"),
        ("壹拾万零伍佰元整", "100500"),
        ("壹亿贰仟万元整", "120000000"),
        ("玖仟玖佰玖拾玖元玖角玖分", "9999.99"),
        ("拾元整", "10"),
    ],
)
def test_capital_amounts_are_read_exactly(written: str, value: str) -> None:
    assert capital_amount(written) == Decimal(value)
    assert amount(written) == Decimal(value)


@pytest.mark.parametrize(
    "written",
    [
        "壹万贰仟捌佰美元", "壹万贰仟捌佰元伍", "", "壹万壹万贰仟捌佰元整", "壹佰万万元", "伍伍元",
        "壹贰叁元", "万", "元整", "壹佰佰元", "壹拾佰元", "壹元伍分伍角",
    ],
)  # fmt: skip
def test_a_capital_amount_that_cannot_be_read_is_refused(written: str) -> None:
    with pytest.raises(Unreadable):
        capital_amount(written)


def test_figures_and_dates_as_documents_write_them() -> None:
    assert amount("¥12,800.00") == Decimal("12800.00")
    assert amount("12800元") == Decimal("12800")
    assert amount("1.28万") == Decimal("12800.00")
    assert amount(3.5) == Decimal("3.5")
    assert amount("-¥12,800.00") == amount("−12800") == amount("(12,800.00)") == Decimal(-12800)
    assert amount("ⓧ壹萬貳仟捌佰圓整") == Decimal(12800)  # as invoices print them
    for nonsense in ("NaN", "inf", "1e400", "12e3", "元", "万", 1e300):
        with pytest.raises(Unreadable):
            amount(nonsense)
    with pytest.raises(Unreadable):
        amount("约一万")
    with pytest.raises(Unreadable):
        amount(True)
    for written in ("2025年11月28日", "2025/11/28", "2025.11.28", "20251128", "2025-11-28"):
        assert iso_date(written) == "2025-11-28"
    with pytest.raises(Unreadable, match="no such date"):
        iso_date("2026年2月30日")
    with pytest.raises(Unreadable, match="not a date"):
        iso_date("下周一")


def test_an_invoice_is_typed_and_its_arithmetic_checked() -> None:
    invoice = load_schema("invoice")
    good = {
        "invoice_number": "25312000000123456789", "issue_date": "2025年11月28日",
        "seller_tax_id": SELLER, "buyer_tax_id": None, "amount_without_tax": "11327.43",
        "tax_amount": 1472.57, "total_amount": "¥12,800.00",
        "total_amount_in_words": "壹万贰仟捌佰元整", "seller_name": "  ", "buyer_name": None,
    }  # fmt: skip
    values, problems = validate(invoice, good)
    assert problems == []
    assert list(values) == list(invoice.properties)  # every field, in the schema's order
    assert values["issue_date"] == "2025-11-28" and values["total_amount"] == 12800.0
    assert values["seller_name"] is None and values["buyer_name"] is None

    bad = {
        **good, "seller_tax_id": SELLER[:-1] + ("0" if SELLER[-1] != "0" else "1"),
        "total_amount_in_words": "壹万贰仟伍佰元整", "tax_amount": 1400, "issue_date": "下周一",
    }  # fmt: skip
    values, problems = validate(invoice, bad)
    reasons = {p.field: p.reason for p in problems}
    assert set(reasons) == {"seller_tax_id", "total_amount_in_words", "total_amount", "issue_date"}
    assert "check fails" in reasons["seller_tax_id"]
    assert "12500" in reasons["total_amount_in_words"]
    assert "does not add up" in reasons["total_amount"]
    assert values["issue_date"] == "下周一"  # returned as extracted, never "fixed"


def test_a_bank_statement_balances() -> None:
    statement = load_schema("bank_statement")
    row = {
        "opening_balance": 1000,
        "total_credits": 500.5,
        "total_debits": 200,
        "closing_balance": 1300.5,
    }
    row = {**dict.fromkeys(statement.properties), **row}
    assert validate(statement, row)[1] == []
    _, problems = validate(statement, {**row, "closing_balance": 1300})
    assert [p.field for p in problems] == ["closing_balance"]


def test_built_in_schemas_and_a_users_schema(tmp_path: Path) -> None:
    for name in BUILT_IN:
        schema = load_schema(name)
        model = schema.for_model()
        assert model["required"] == list(schema.properties)
        assert "x-check" not in json.dumps(model) and "x-capital-of" not in json.dumps(model)
    mine = tmp_path / "报销单.json"
    mine.write_text(
        json.dumps({"type": "object", "properties": {
            "staff": {"type": "string", "description": "报销人"},
            "days": {"type": "integer", "description": "出差天数"},
        }}, ensure_ascii=False), "utf-8",
    )  # fmt: skip
    schema = load_schema(mine)
    assert schema.name == "报销单"
    values, problems = validate(schema, {"staff": "王芳", "days": "3.5"})
    assert values["days"] == "3.5" and "whole number" in problems[0].reason
    values, problems = validate(schema, {"staff": [{"name": "王芳"}], "days": 3})
    assert values == {"staff": [{"name": "王芳"}], "days": 3}  # as extracted, and flagged
    assert [p.field for p in problems] == ["staff"] and "not text" in problems[0].reason
    number = 24112000000012345678.0  # a 20-digit invoice number written as a number
    values, problems = validate(load_schema("invoice"), {"invoice_number": number})
    assert values["invoice_number"] == number and "not text" in problems[0].reason


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "object schema"),
        ('{"type": "object", "properties": {}}', "needs properties"),
        ('{"properties": {"a": {"type": "string", "x-check": "iban"}}}', "x-check"),
        ('{"properties": {"a": {"type": "string", "x-capital-of": "b"}}}', "x-capital-of"),
        (
            '{"properties": {"a": {"type": "number"}}, "x-sums": [{"field": "a", "of": ["b"]}]}',
            "x-sums",
        ),
        ("{", "cannot read"),
        ('{"properties": {"a": {"type": "number"}}, "x-sums": 5}', "list of objects"),
        ('{"properties": {"a": {"type": "number"}}, "x-sums": ["a"]}', "list of objects"),
        ('{"properties": {"a": {"type": "number"}}, "x-sums": [{"field": "a"}]}', "'of' list"),
        ('{"properties": {"a": {"type": "string", "x-capital-of": ["a"]}}}', "x-capital-of"),
    ],
)
def test_a_bad_schema_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content, "utf-8")
    with pytest.raises(SchemaError, match=message):
        load_schema(path)
    with pytest.raises(SchemaError, match=r"schema file not found: .*absent\.json"):
        load_schema(tmp_path / "absent.json")
    with pytest.raises(SchemaError, match="no such schema: invoce"):  # a mistyped name
        load_schema("invoce")
    with pytest.raises(SchemaError, match="not a regular file"):  # a directory, a pipe
        load_schema(tmp_path)


def test_a_users_schema_with_refs_and_nullable_types(tmp_path: Path) -> None:
    path = tmp_path / "refs.json"
    path.write_text(
        json.dumps({
            "$defs": {"money": {"type": "number", "description": "金额"}},
            "properties": {"fee": {"$ref": "#/$defs/money"}, "n": {"type": ["integer", "null"]}},
        }), "utf-8",
    )  # fmt: skip
    schema = load_schema(path)
    assert schema.for_model()["$defs"] == {"money": {"type": "number", "description": "金额"}}
    values, problems = validate(schema, {"fee": None, "n": "12"})
    assert values["n"] == 12 and problems == []


def test_keys_the_model_left_out_or_made_up_are_reported() -> None:
    """The grammar gives every key and no other; a backend that ignores it may not: a key
    left out is null *and* a problem (not "the document does not say"), keys not in the
    schema are named."""
    invoice = load_schema("invoice")
    raw = {**dict.fromkeys(invoice.properties), "remark": "备注", "buyer": "甲"}
    del raw["buyer_name"]
    values, problems = validate(invoice, raw)
    assert list(values) == list(invoice.properties) and values["buyer_name"] is None
    reasons = {p.field: p.reason for p in problems}
    assert "missing from the model's output" in reasons["buyer_name"]
    assert "not in the schema: remark, buyer" in reasons["*"]
