"""Documents read into blocks and cut into chunks (real files in each format)."""

from __future__ import annotations

from pathlib import Path

import pytest

from heshi.apps.kb.chunk import MAX_CHARS, chunk_blocks
from heshi.apps.kb.documents import read_document
from heshi.apps.kb.parse import UnreadableDocument

MARKDOWN = """# 暖居空调手册
## 保修
整机保修 3 年，压缩机保修 10 年。

问：保修期从哪天算？
答：从发票日期算起。

| 项目 | 费用 |
|---|---|
| 上门费 | 50 元 |
"""


def chunks_of(path: Path) -> list[tuple[tuple[str, ...], str, str]]:
    return [(c.headings, c.kind, c.text) for c in chunk_blocks(read_document(path).blocks)]


def test_markdown_headings_faq_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "手册.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    assert chunks_of(path) == [
        (("暖居空调手册", "保修"), "text", "整机保修 3 年，压缩机保修 10 年。"),
        (("暖居空调手册", "保修"), "faq", "问：保修期从哪天算？\n答：从发票日期算起。"),
        (("暖居空调手册", "保修"), "table", "项目 | 费用\n上门费 | 50 元"),
    ]


def test_plain_text_in_gb18030_with_numbered_headings(tmp_path: Path) -> None:
    path = tmp_path / "条款.txt"
    path.write_bytes("一、寄件\n（一）上门取件\n每天 9:00-18:00 可预约取件。\n".encode("gb18030"))
    assert chunks_of(path) == [
        (("一、寄件", "（一）上门取件"), "text", "每天 9:00-18:00 可预约取件。")
    ]


def test_html_skips_scripts_and_keeps_tables(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>x</title><script>var a='不要';</script></head><body>"
        "<h1>酒店取消政策</h1><p>入住前 48 小时免费取消。</p>"
        "<table><tr><th>时间</th><th>费用</th></tr><tr><td>24 小时内</td><td>首晚房费</td></tr>"
        "</table></body></html>",
        encoding="utf-8",
    )
    assert chunks_of(path) == [
        (("酒店取消政策",), "text", "入住前 48 小时免费取消。"),
        (("酒店取消政策",), "table", "时间 | 费用\n24 小时内 | 首晚房费"),
    ]


def test_faq_sheets_in_csv_and_xlsx(tmp_path: Path) -> None:
    import openpyxl

    csv_path = tmp_path / "faq.csv"
    csv_path.write_text('问题,答案\n"积分多久过期?","每年 12 月 31 日清零, 逐年滚动"\n', "utf-8")
    xlsx_path = tmp_path / "faq.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Question", "Answer"])
    sheet.append(["怎么改签？", "起飞前 2 小时可在 App 改签。"])
    book.save(xlsx_path)
    assert chunks_of(csv_path) == [
        ((), "faq", "问：积分多久过期?\n答：每年 12 月 31 日清零, 逐年滚动")
    ]
    assert chunks_of(xlsx_path) == [((), "faq", "问：怎么改签？\n答：起飞前 2 小时可在 App 改签。")]


def test_docx_headings_and_merged_cells_once(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("报销制度", level=1)
    document.add_paragraph("差旅费须在出差结束后 30 天内报销。")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "城市"
    table.cell(0, 2).text = "住宿标准"
    table.cell(1, 0).text = "北京"
    table.cell(1, 1).text = "一线"
    table.cell(1, 2).text = "600 元/晚"
    path = tmp_path / "制度.docx"
    document.save(str(path))
    assert chunks_of(path) == [
        (("报销制度",), "text", "差旅费须在出差结束后 30 天内报销。"),
        (("报销制度",), "table", "城市 | 住宿标准\n北京 | 一线 | 600 元/晚"),
    ]


def _pdf(text: str) -> bytes:
    """A one-page PDF with a text layer (Helvetica, ASCII), written by hand."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


def test_pdf_text_layer_with_pages(tmp_path: Path) -> None:
    path = tmp_path / "fees.pdf"
    path.write_bytes(_pdf("Annual fee: 200 CNY. Hotline 400-820-1234."))
    parsed = read_document(path)
    assert parsed.pages == 1
    assert [(b.kind, b.text, b.page) for b in parsed.blocks] == [
        ("text", "Annual fee: 200 CNY. Hotline 400-820-1234.", 1)
    ]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.exe", b"MZ", "unsupported"),
        ("empty.md", b"   \n", "no text"),
        ("bad.docx", b"not a zip", "DOCX"),
        ("bad.pdf", b"%PDF-1.4 broken", "PDF"),
        ("bad.txt", b"\xff\xfe\x00\xd8\x00", "GB18030"),
    ],
)
def test_unreadable_files_say_why(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UnreadableDocument, match=reason):
        read_document(path)


def test_long_text_is_cut_at_sentence_ends_and_faq_keeps_its_question(tmp_path: Path) -> None:
    sentence = "本行借记卡年费为零元，小额账户管理费已全部取消。"
    answer = sentence * 40
    path = tmp_path / "long.md"
    path.write_text(f"# 费用\n{sentence * 40}\n\n问：要交年费吗？\n答：{answer}\n", "utf-8")
    chunks = chunk_blocks(read_document(path).blocks)
    texts = [c for c in chunks if c.kind == "text"]
    faqs = [c for c in chunks if c.kind == "faq"]
    assert len(texts) > 1 and len(faqs) > 1
    assert all(len(c.text) <= MAX_CHARS for c in chunks)
    assert all(c.text.endswith("。") for c in texts)
    assert all(c.text.startswith("问：要交年费吗？\n答：") for c in faqs)
    assert "".join(c.text for c in texts) == sentence * 40
