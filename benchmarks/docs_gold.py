"""The document pipeline's gold set, generated: invented invoices, contracts, bills of
lading and bank statements (fictional companies; valid tax ids; amounts, taxes and
balances that add up; totals also in capitals), each with the field values an extraction
must find, rendered as TXT, DOCX, a text PDF, a scanned PDF and a phone photo — and, for
invoices, OFD (``benchmarks/docs_render.py`` draws the PDFs and images).

    .venv/bin/python benchmarks/docs_gold.py OUT_DIR [--per-type 15] [--seed 7]
        [--formats txt,docx,ofd,pdf,scan,photo]

writes OUT_DIR/gold.json and OUT_DIR/<format>/<id>.<ext>: txt, docx, ofd (invoices only),
pdf (text layer, CJK font embedded), scan (.pdf: a rotated, noisy, JPEG-compressed image,
no text) and photo (.png: perspective, rotation, uneven light, the desk around the
paper). Seeded: the same arguments give the same documents and the same pixels; the
documents do not depend on ``--formats``. PDFs and images need a CJK TrueType font
(``fonts-wqy-microhei``, or ``$HESHI_CJK_FONT``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the OFD writer of the tests
sys.path.append(str(HERE))  # the renderers, when imported from elsewhere

from docs_render import layout, pdf, photo, scan  # noqa: E402
from heshi.guard.ids import org_code_check_char, uscc_check_char  # noqa: E402
from tests.apps.ofd import write_ofd  # noqa: E402

CITIES = ["临江", "云州", "青岚", "南屿", "北沅", "东陵", "西泽", "安川"]
WORDS = [
    "星河", "云帆", "长风", "瑞丰", "嘉禾", "远航", "恒信", "明德", "启元", "华章", "金桥", "润泽",
]  # fmt: skip
TRADES = ["科技", "贸易", "物流", "建材", "食品", "医药", "电子", "纺织"]
FORMS = ["有限公司", "股份有限公司", "有限责任公司"]
SERVICES = [
    ("软件维护费", 6), ("服务器租赁", 13), ("办公桌椅", 13), ("运输服务费", 9), ("咨询服务费", 6),
]  # fmt: skip
GOODS = ["电子元件", "纺织面料", "五金配件", "冷冻食品", "机械设备", "日用百货"]
PORTS = ["上海", "宁波", "深圳盐田", "青岛", "天津", "厦门", "新加坡", "鹿特丹", "汉堡", "洛杉矶"]
BANKS = ["华信银行", "临江农商银行", "云州商业银行", "安川银行"]
PEOPLE = ["王芳", "李强", "张伟", "刘洋", "陈静", "杨帆", "赵磊", "周敏"]
REGIONS = ["110105", "310115", "330106", "440305", "510107", "320583"]
CENT = Decimal("0.01")


def company(rng: random.Random) -> str:
    return f"{rng.choice(CITIES)}市{rng.choice(WORDS)}{rng.choice(TRADES)}{rng.choice(FORMS)}"


def uscc(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    org = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    org = org.replace("I", "1")
    first17 = "91" + rng.choice(REGIONS) + org + org_code_check_char(org)
    assert all(c in alphabet for c in first17)
    return first17 + uscc_check_char(first17)


_DIGITS = "零壹贰叁肆伍陆柒捌玖"


def capitals(value: Decimal) -> str:
    """12800.00 → 壹万贰仟捌佰元整; 345.67 → 叁佰肆拾伍元陆角柒分 (as invoices print them)."""
    fen = int((value * 100).to_integral_value(ROUND_HALF_UP))
    yuan, jiao, cents = fen // 100, fen // 10 % 10, fen % 10
    out = _section_groups(yuan) + "元" if yuan else ""
    if jiao == 0 and cents == 0:
        return (out or "零元") + "整"
    if jiao:
        out += _DIGITS[jiao] + "角"
    elif yuan:
        out += "零"
    if cents:
        out += _DIGITS[cents] + "分"
    return out


def _section_groups(n: int) -> str:
    parts = []
    for unit, size in (("亿", 10**8), ("万", 10**4)):
        if n >= size:
            parts.append(_section(n // size) + unit)
            n %= size
            if 0 < n < size // 10:
                parts.append("零")
    if n:
        parts.append(_section(n))
    return "".join(parts)


def _section(n: int) -> str:
    out, zero = "", False
    for unit, size in (("仟", 1000), ("佰", 100), ("拾", 10), ("", 1)):
        digit = n // size % 10
        if digit:
            if zero and out:
                out += "零"
            out += _DIGITS[digit] + unit
            zero = False
        else:
            zero = True
    return out


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def a_date(rng: random.Random, start: date = date(2024, 1, 1), days: int = 900) -> date:
    return start + timedelta(days=rng.randrange(days))


def cn(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def invoice(rng: random.Random, n: int) -> tuple[dict[str, Any], list[str], list[list[str]]]:
    buyer, seller = company(rng), company(rng)
    item, rate = rng.choice(SERVICES)
    quantity = rng.randint(1, 20)
    price = Decimal(rng.randint(100, 90000)) / 10
    amount = (price * quantity).quantize(CENT)
    tax = (amount * rate / 100).quantize(CENT, ROUND_HALF_UP)
    total = amount + tax
    issued = a_date(rng)
    fields = {
        "invoice_number": f"{issued.year % 100}{rng.randint(10**17, 10**18 - 1)}",
        "issue_date": issued.isoformat(), "buyer_name": buyer, "buyer_tax_id": uscc(rng),
        "seller_name": seller, "seller_tax_id": uscc(rng), "amount_without_tax": float(amount),
        "tax_amount": float(tax), "total_amount": float(total),
        "total_amount_in_words": capitals(total),
    }  # fmt: skip
    lines = [
        "电子发票（增值税专用发票）",
        f"发票号码：{fields['invoice_number']}",
        f"开票日期：{cn(issued)}",
        f"购买方信息　名称：{buyer}",
        f"统一社会信用代码/纳税人识别号：{fields['buyer_tax_id']}",
        f"销售方信息　名称：{seller}",
        f"统一社会信用代码/纳税人识别号：{fields['seller_tax_id']}",
    ]
    table = [
        ["项目名称", "数量", "单价", "金额", "税率", "税额"],
        [f"*服务*{item}", str(quantity), f"{price:.2f}", f"{amount:.2f}", f"{rate}%", f"{tax:.2f}"],
    ]
    tail = [
        f"合计　¥{money(amount)}　¥{money(tax)}",
        f"价税合计（大写）{fields['total_amount_in_words']}　（小写）¥{money(total)}",
        f"开票人：{rng.choice(PEOPLE)}",
    ]
    return fields, [*lines, "\0", *tail], table


def contract(rng: random.Random, n: int) -> tuple[dict[str, Any], list[str], list[list[str]]]:
    a, b = company(rng), company(rng)
    signed = a_date(rng)
    start = signed + timedelta(days=rng.randint(0, 30))
    end = date(start.year + rng.randint(1, 3), start.month, min(start.day, 28)) - timedelta(1)
    total = Decimal(rng.randint(10, 5000) * 100)
    goods = rng.choice(GOODS)
    title = f"{goods}采购合同"
    fields = {
        "contract_number": f"HT-{signed.year}-{rng.randint(1000, 9999)}", "title": title,
        "party_a": a, "party_b": b, "signing_date": signed.isoformat(),
        "start_date": start.isoformat(), "end_date": end.isoformat(),
        "total_amount": float(total), "total_amount_in_words": capitals(total),
    }  # fmt: skip
    lines = [
        title,
        f"合同编号：{fields['contract_number']}",
        f"甲方（采购方）：{a}",
        f"乙方（供应方）：{b}",
        f"甲乙双方经友好协商，就甲方向乙方采购{goods}事宜订立本合同。",
        f"一、合同总金额为人民币{money(total)}元（大写：{fields['total_amount_in_words']}），含税。",
        f"二、合同有效期自{cn(start)}起至{cn(end)}止。",
        "三、乙方应于每次订单确认后 15 个工作日内交货，质量不符的，甲方有权退货。",
        "四、因本合同发生的争议，双方协商解决；协商不成的，提交甲方所在地人民法院诉讼解决。",
        f"签订日期：{cn(signed)}",
    ]
    return fields, lines, []


def bill_of_lading(rng: random.Random, n: int) -> tuple[dict[str, Any], list[str], list[list[str]]]:
    loading, discharge = rng.sample(PORTS, 2)
    packages = rng.randint(10, 2000)
    weight = Decimal(rng.randint(500, 90000)) / 10
    issued = a_date(rng)
    fields = {
        "bl_number": f"HSLU{rng.randint(10**8, 10**9 - 1)}", "shipper": company(rng),
        "consignee": company(rng),
        "vessel": f"COSCO {rng.choice(WORDS)} V.{rng.randint(100, 999)}E",
        "port_of_loading": loading, "port_of_discharge": discharge, "goods": rng.choice(GOODS),
        "packages": packages, "gross_weight_kg": float(weight), "issue_date": issued.isoformat(),
    }  # fmt: skip
    lines = [
        "海运提单 BILL OF LADING",
        f"提单号 B/L No.：{fields['bl_number']}",
        f"托运人 Shipper：{fields['shipper']}",
        f"收货人 Consignee：{fields['consignee']}",
        f"船名航次 Vessel/Voyage：{fields['vessel']}",
        f"装货港 Port of Loading：{loading}",
        f"卸货港 Port of Discharge：{discharge}",
    ]
    table = [
        ["货物名称", "件数", "毛重（千克）"],
        [fields["goods"], f"{packages} 件", f"{weight:.1f}"],
    ]
    return fields, [*lines, "\0", f"签发日期：{cn(issued)}"], table


def bank_statement(rng: random.Random, n: int) -> tuple[dict[str, Any], list[str], list[list[str]]]:
    start = date(2025, rng.randint(1, 12), 1)
    end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    opening = Decimal(rng.randint(1000, 900000)) / 100
    rows, credits, debits, balance = [], Decimal(0), Decimal(0), opening
    for _ in range(rng.randint(3, 6)):
        day = start + timedelta(days=rng.randrange((end - start).days + 1))
        value = Decimal(rng.randint(100, 500000)) / 100
        if rng.random() < 0.5:
            credits += value
            balance += value
            rows.append([day.isoformat(), "货款收入", f"{value:.2f}", "", f"{balance:.2f}"])
        else:
            debits += value
            balance -= value
            rows.append([day.isoformat(), "费用支出", "", f"{value:.2f}", f"{balance:.2f}"])
    fields = {
        "bank_name": rng.choice(BANKS), "account_name": company(rng),
        "account_number": str(rng.randint(10**18, 10**19 - 1)),
        "period_start": start.isoformat(), "period_end": end.isoformat(),
        "opening_balance": float(opening), "total_credits": float(credits),
        "total_debits": float(debits), "closing_balance": float(balance),
    }  # fmt: skip
    lines = [
        f"{fields['bank_name']} 对公账户对账单",
        f"户名：{fields['account_name']}",
        f"账号：{fields['account_number']}",
        f"对账期间：{cn(start)} 至 {cn(end)}",
        f"期初余额：{money(opening)}",
    ]
    table = [["日期", "摘要", "收入", "支出", "余额"], *rows]
    tail = [
        f"本期收入合计：{money(credits)}",
        f"本期支出合计：{money(debits)}",
        f"期末余额：{money(balance)}",
    ]
    return fields, [*lines, "\0", *tail], table


TYPES = {
    "invoice": invoice, "contract": contract, "bill_of_lading": bill_of_lading,
    "bank_statement": bank_statement,
}  # fmt: skip


Generated = tuple[str, str, dict[str, Any], list[str], list[list[str]]]


def generate(seed: int, per_type: int) -> Iterator[Generated]:
    """(id, type, gold fields, lines, table) of each document, ``per_type`` of each type."""
    rng = random.Random(seed)
    for kind, make in TYPES.items():
        for n in range(1, per_type + 1):
            yield (f"{kind}-{n:02d}", kind, *make(rng, n))


FORMATS = ("txt", "docx", "ofd", "pdf", "scan", "photo")
EXT = {"txt": "txt", "docx": "docx", "ofd": "ofd", "pdf": "pdf", "scan": "pdf", "photo": "png"}
ONLY = {"ofd": {"invoice"}}  # OFD is the e-invoice format


def applies(fmt: str, kind: str) -> bool:
    """Whether the gold set renders documents of type ``kind`` as ``fmt``."""
    return kind in ONLY.get(fmt, {kind})


def looks(seed: int, doc_id: str) -> random.Random:
    """The randomness of a document's scan and photo: apart from the generator's, so the
    documents never depend on which formats are drawn."""
    return random.Random(f"{seed}/{doc_id}")


def render(
    out: Path, doc_id: str, lines: list[str], table: list[list[str]],
    formats: Iterable[str] = FORMATS, rng: random.Random | None = None,
) -> None:  # fmt: skip
    """The document in ``formats``, as OUT/<format>/<id>.<ext>; "\\0" in ``lines`` is
    where the table goes. ``rng``: the scan's and the photo's randomness."""
    wanted = set(formats)
    rng = rng or random.Random(doc_id)
    looks = {"scan": rng.getrandbits(64), "photo": rng.getrandbits(64)}  # whatever is wanted
    paths = {}
    for fmt in wanted:
        (out / fmt).mkdir(parents=True, exist_ok=True)
        paths[fmt] = out / fmt / f"{doc_id}.{EXT[fmt]}"
    flat: list[str] = []
    for line in lines:
        flat += [" | ".join(row) for row in table] if line == "\0" else [line]
    if "txt" in wanted:
        paths["txt"].write_text("\n".join(flat) + "\n", "utf-8")
    if "docx" in wanted:
        _fixed_dates(_docx(paths["docx"], lines, table))
    if "ofd" in wanted:
        _fixed_dates(write_ofd(paths["ofd"], flat))
    if wanted & {"pdf", "scan", "photo"}:
        page = layout(lines, table)  # once: the PDF and the images agree
        if "pdf" in wanted:
            pdf(paths["pdf"], page)
        if "scan" in wanted:
            scan(paths["scan"], page, random.Random(looks["scan"]))
        if "photo" in wanted:
            photo(paths["photo"], page, random.Random(looks["photo"]))


def _docx(path: Path, lines: list[str], table: list[list[str]]) -> Path:
    import docx

    document = docx.Document()
    for line in lines:
        if line != "\0":
            document.add_paragraph(line)
        elif table:
            grid = document.add_table(rows=len(table), cols=len(table[0]))
            for r, row in enumerate(table):
                for c, cell in enumerate(row):
                    grid.cell(r, c).text = cell
    document.core_properties.created = document.core_properties.modified = datetime(2024, 1, 1)
    document.save(str(path))
    return path


def _fixed_dates(path: Path) -> None:
    """The zip package rewritten with its members dated 2024-01-01: the same bytes each run."""
    with zipfile.ZipFile(path) as package:
        members = [(info.filename, package.read(info)) for info in package.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in members:
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            package.writestr(info, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-type", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--formats", default=",".join(FORMATS), help="any of " + ",".join(FORMATS))
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    if unknown := sorted(set(formats) - set(FORMATS)):
        parser.error(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    gold = []
    for doc_id, kind, fields, lines, table in generate(args.seed, args.per_type):
        wanted = [f for f in formats if applies(f, kind)]
        render(args.out, doc_id, lines, table, wanted, looks(args.seed, doc_id))
        gold.append({"id": doc_id, "type": kind, "fields": fields})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gold.json").write_text(
        json.dumps({"seed": args.seed, "documents": gold}, ensure_ascii=False, indent=1) + "\n",
        "utf-8",
    )
    print(f"{len(gold)} documents × {', '.join(formats)} → {args.out}")


if __name__ == "__main__":
    main()
