"""`heshi docs extract`: the contract (one JSON object, the schema's top-level properties,
null where absent, typed as the schema says; exit 1 with one line on an unreadable file),
through the gateway in process on the tiny model — and once on the real default model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from heshi.apps.docs.read import document_text
from heshi.apps.docs.schema import BUILT_IN, load_schema
from heshi.cli.main import app
from heshi.config import HeshiConfig
from tests.apps.ofd import write_ofd

INVOICE = """# 电子发票（增值税专用发票）

发票号码：25312000000123456789
开票日期：2025年11月28日

购买方名称：临江市云帆贸易有限公司
销售方名称：临江市星河科技有限公司

| 项目名称 | 数量 | 金额 | 税率 | 税额 |
| 软件维护费 | 1 | 11327.43 | 13% | 1472.57 |

合计金额：¥11327.43　合计税额：¥1472.57
价税合计（大写）：壹万贰仟捌佰元整　（小写）¥12800.00
"""
_JSON_TYPES = {"string": str, "number": (int, float), "integer": int}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def tiny_yaml(long_tiny: Path, tmp_path: Path) -> Path:
    path = tmp_path / "heshi.yaml"
    engine = {"model": str(long_tiny), "ctx": 4096, "parallel": 1, "threads": 1}
    path.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), "engine": engine}))
    return path


def test_extract_prints_exactly_the_schemas_fields_typed(long_tiny: Path, tmp_path: Path) -> None:
    doc = tmp_path / "发票.md"
    doc.write_text(INVOICE, "utf-8")
    cfg = tiny_yaml(long_tiny, tmp_path)
    code, out, err = run(
        "docs", "extract", str(doc), "--schema", "invoice", "--json", "--config", str(cfg)
    )
    assert code == 0, err
    values = json.loads(out.strip().splitlines()[-1])
    schema = load_schema("invoice")
    assert list(values) == list(schema.properties)
    for name, spec in schema.properties.items():  # the tiny model writes noise, typed noise
        value = values[name]
        assert value is None or isinstance(value, _JSON_TYPES[spec["type"]]), (name, value)
        if value is not None and spec.get("format") == "date":
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), value

    mine = tmp_path / "报销.json"
    mine.write_text(json.dumps({"properties": {"staff": {"type": "string"}}}), "utf-8")
    code, out, _ = run("docs", "extract", str(doc), "--schema", str(mine), "--json",
                       "--config", str(cfg))  # fmt: skip
    assert code == 0 and list(json.loads(out.strip().splitlines()[-1])) == ["staff"]


def test_an_ofd_e_invoice_is_read_in_reading_order(long_tiny: Path, tmp_path: Path) -> None:
    lines = [line for line in INVOICE.splitlines() if line.strip() and not line.startswith("#")]
    ofd = write_ofd(tmp_path / "数电票.ofd", lines)
    text = document_text(ofd).text
    assert text.index("发票号码：25312000000123456789") < text.index("壹万贰仟捌佰元整")
    code, out, err = run(
        "docs", "extract", str(ofd), "--schema", "invoice", "--json",
        "--config", str(tiny_yaml(long_tiny, tmp_path)),
    )  # fmt: skip
    assert code == 0, err
    assert list(json.loads(out.strip().splitlines()[-1])) == list(load_schema("invoice").properties)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("坏.docx", b"not a zip", "DOCX"),
        ("坏.ofd", b"PK not really", "OFD"),
        ("图片.ofd", None, "no text"),
        ("扫描.pdf", None, "no text"),
        ("表.bin", b"\0", "unsupported"),
    ],
)
def test_an_unreadable_file_is_one_line_and_exit_1(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is None and name.endswith(".ofd"):  # an image-only OFD (a scanned invoice)
        write_ofd(path, [], image_only=True)
    elif content is None:  # a PDF page without a text layer (what a scan is)
        import pypdfium2

        pdf = pypdfium2.PdfDocument.new()
        pdf.new_page(595, 842)
        pdf.save(str(path))
        pdf.close()
    else:
        path.write_bytes(content)
    code, out, err = run("docs", "extract", str(path), "--schema", "invoice", "--json")
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "/" in lines[0]


def test_an_unknown_schema_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("发票号码：1", "utf-8")
    code, _, err = run("docs", "extract", str(doc), "--schema", "receipt", "--json")
    assert code == 1 and "no such schema" in err and "invoice" in err


@pytest.mark.slow
def test_the_default_model_reads_an_invoice(tmp_path: Path) -> None:
    doc = tmp_path / "发票.md"
    doc.write_text(INVOICE, "utf-8")
    code, out, err = run("docs", "extract", str(doc), "--schema", "invoice", "--json")
    assert code == 0, err
    values = json.loads(out.strip().splitlines()[-1])
    assert values["invoice_number"] == "25312000000123456789"
    assert values["issue_date"] == "2025-11-28"
    assert values["total_amount"] == 12800.0 and values["tax_amount"] == 1472.57
    assert values["total_amount_in_words"] == "壹万贰仟捌佰元整"
    assert values["buyer_tax_id"] is None  # the document does not hold it


def test_a_batch_records_every_file_and_resumes_where_it_stopped(
    long_tiny: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "单据"
    (docs / "子目录").mkdir(parents=True)
    (docs / "发票1.md").write_text(INVOICE, "utf-8")
    (docs / "子目录" / "发票2.txt").write_text(INVOICE.replace("0123456789", "0999999999"), "utf-8")
    write_ofd(docs / "数电票.ofd", ["发票号码：1", "价税合计：¥5.00"])
    (docs / "坏.docx").write_bytes(b"not a zip")
    same = docs / "发票1-副本.md"  # the same bytes under another name: its own row
    same.write_text(INVOICE, "utf-8")
    out = tmp_path / "结果" / "results.jsonl"
    cfg = tiny_yaml(long_tiny, tmp_path)
    code, stdout, err = run(
        "docs", "run", str(docs), "--schema", "invoice", "--out", str(out), "--workers", "2",
        "--config", str(cfg),
    )  # fmt: skip
    assert code == 1, err  # one file failed: the exit status says so, the batch went on
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    by_file = {Path(r["file"]).name: r for r in rows}
    # the same bytes are extracted once: the second file has its own row only when both
    # ran at once
    twins = {"发票1.md", "发票1-副本.md"}
    assert set(by_file) - twins == {"发票2.txt", "数电票.ofd", "坏.docx"}
    assert set(by_file) & twins
    assert by_file["坏.docx"]["status"] == "failed" and "DOCX" in by_file["坏.docx"]["error"]
    good = [r for r in rows if r["status"] == "ok"]
    assert len(good) == len(by_file) - 1
    for row in good:
        assert list(row["fields"]) == list(load_schema("invoice").properties)
        assert len(row["sha256"]) == 64 and row["schema"] == "invoice"
    assert "3 完成 / done" in stdout or "4 完成 / done" in stdout

    # a kill mid-write leaves a torn last line; the rerun skips what is done, retries the
    # failure, and starts its rows on a line of their own
    with out.open("a", encoding="utf-8") as sink:
        sink.write('{"file": "torn')
    (docs / "坏.docx").write_text("修好了", "utf-8")
    (docs / "坏.docx").rename(docs / "修好.txt")
    code, stdout, err = run(
        "docs", "run", str(docs), "--schema", "invoice", "--out", str(out), "--config", str(cfg)
    )
    assert code == 0, err
    assert "1 完成 / done, 0 失败 / failed, 4 已完成跳过 / already done" in stdout
    lines = out.read_text("utf-8").splitlines()
    assert lines[-2] == '{"file": "torn' and json.loads(lines[-1])["file"].endswith("修好.txt")


def test_schema_auto_classifies_then_extracts(long_tiny: Path, tmp_path: Path) -> None:
    doc = tmp_path / "发票.md"
    doc.write_text(INVOICE, "utf-8")
    cfg = tiny_yaml(long_tiny, tmp_path)
    code, out, err = run(
        "docs", "extract", str(doc), "--schema", "auto", "--json", "--config", str(cfg)
    )
    assert code == 0, err
    assert "kind: invoice" in err
    assert list(json.loads(out.strip().splitlines()[-1])) == list(load_schema("invoice").properties)
    # words that point nowhere: the model (here the tiny one) chooses one of the kinds; a
    # document of no built-in kind is refused with one line, exit 1
    note = tmp_path / "纪要.txt"
    note.write_text("会议纪要：周五下午三点在三楼会议室讨论年度预算。", "utf-8")
    code, out, err = run(
        "docs", "extract", str(note), "--schema", "auto", "--json", "--config", str(cfg)
    )
    kind = re.search(r"kind: (\w+)", err)
    assert kind is not None and kind.group(1) in (*BUILT_IN, "other")
    if kind.group(1) == "other":
        assert code == 1 and "no built-in schema" in err
    else:
        assert code == 0 and list(json.loads(out)) == list(load_schema(kind.group(1)).properties)


def test_kinds_by_their_words() -> None:
    from heshi.apps.docs.classify import by_words

    assert by_words(INVOICE) == "invoice"
    assert by_words(
        "采购合同\n合同编号：HT-1\n甲方：A公司\n乙方：B公司\n签订日期：2025年1月1日"
    ) == ("contract")
    assert (
        by_words("提单号 B/L No.: X1\nShipper: A\n装货港：上海\n卸货港：汉堡") == "bill_of_lading"
    )
    assert by_words("对账单\n期初余额：1.00\n期末余额：2.00") == "bank_statement"
    assert by_words("会议纪要：讨论年度预算。") is None
    assert by_words("甲方：A\n发票号码：1\n价税合计：2") is None  # mixed: the model decides


def test_a_batch_with_schema_auto_records_each_files_kind(long_tiny: Path, tmp_path: Path) -> None:
    docs = tmp_path / "混合"
    docs.mkdir()
    (docs / "发票.md").write_text(INVOICE, "utf-8")
    (docs / "合同.txt").write_text(
        "采购合同\n合同编号：HT-2025-0001\n甲方：临江市星河科技有限公司\n乙方：云州市长风贸易有限公司\n"
        "签订日期：2025年3月1日\n合同总金额为人民币50,000.00元。", "utf-8",
    )  # fmt: skip
    out = tmp_path / "results.jsonl"
    code, _, err = run(
        "docs", "run", str(docs), "--schema", "auto", "--out", str(out),
        "--config", str(tiny_yaml(long_tiny, tmp_path)),
    )  # fmt: skip
    assert code == 0, err
    rows = {Path(r["file"]).name: r for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert rows["发票.md"]["type"] == "invoice" and rows["合同.txt"]["type"] == "contract"
    assert all(r["schema"] == "auto" for r in rows.values())
    assert list(rows["合同.txt"]["fields"]) == list(load_schema("contract").properties)


def test_a_batch_resumes_past_a_torn_character_and_knows_its_schema(
    long_tiny: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "in"
    docs.mkdir()
    (docs / "a.txt").write_text(INVOICE, "utf-8")
    (docs / "b.txt").write_text(INVOICE, "utf-8")  # the same bytes: extracted once
    out = tmp_path / "out.jsonl"
    cfg = str(tiny_yaml(long_tiny, tmp_path))
    code, stdout, err = run(
        "docs", "run", str(docs), str(docs / "a.txt"), "--schema", "invoice", "--out", str(out),
        "--config", cfg,
    )  # fmt: skip
    assert code == 0, err
    assert "1 完成 / done, 0 失败 / failed, 1 已完成跳过 / already done" in stdout
    with out.open("ab") as sink:
        sink.write('{"file": "半'.encode()[:-1])  # killed in the middle of a character
    code, stdout, err = run(
        "docs", "run", str(docs), "--schema", "invoice", "--out", str(out), "--config", cfg
    )
    assert code == 0 and "2 已完成跳过 / already done" in stdout, err
    # another schema under the same name is another job: nothing of the first counts
    mine = tmp_path / "invoice.json"
    mine.write_text(json.dumps({"properties": {"invoice_number": {"type": "string"}}}), "utf-8")
    code, stdout, err = run(
        "docs", "run", str(docs), "--schema", str(mine), "--out", str(out), "--config", cfg
    )
    assert code == 0 and "1 完成 / done" in stdout, err
    code, _, err = run("docs", "run", str(docs), "--schema", "invoice", "--out", str(tmp_path))
    assert code == 1 and "is a directory" in err


def test_extract_through_a_running_gateway_with_a_key(
    tiny_config: HeshiConfig, tmp_path: Path
) -> None:
    """``--url`` and ``--key``: the extraction is a request of that gateway's, admitted with
    the key and metered in its ledger under the key's tenant."""
    from sqlalchemy import select

    from heshi.gateway.app import create_app
    from heshi.store.db import Database
    from heshi.store.keys import KeyStore
    from heshi.store.tables import usage_ledger
    from tests.conftest import local_engines
    from tests.loopback import serve_app

    db = Database(tiny_config.store.sql_url(tiny_config.home))
    db.migrate()
    key, _ = KeyStore(db).create("acme", "docs")
    doc = tmp_path / "发票.md"
    doc.write_text(INVOICE, "utf-8")
    with serve_app(create_app(tiny_config, local_engines(tiny_config))) as url:
        code, out, err = run(
            "docs", "extract", str(doc), "--schema", "invoice", "--json", "--url", url,
            "--key", key, "--model", tiny_config.engine.name,
        )  # fmt: skip
        assert code == 0, err
        assert list(json.loads(out)) == list(load_schema("invoice").properties)
        code, _, err = run(
            "docs", "extract", str(doc), "--schema", "invoice", "--url", url, "--key", "sk-wrong",
            "--model", tiny_config.engine.name,
        )  # fmt: skip
        assert code == 1 and "401" in err
    with db.read() as conn:
        tenants = conn.execute(select(usage_ledger.c.tenant)).scalars().all()
    db.dispose()
    assert "acme" in tenants


def test_a_placeholder_key_is_refused_in_one_message(tmp_path: Path) -> None:
    doc = tmp_path / "发票.md"
    doc.write_text(INVOICE, "utf-8")
    code, _, err = run(
        "docs", "extract", str(doc), "--schema", "invoice", "--url", "http://127.0.0.1:9/v1",
        "--key", "sk-heshi-…",
    )  # fmt: skip
    assert code == 2 and "printable ASCII" in err and "Traceback" not in err
