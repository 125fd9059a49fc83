"""CSV cells a spreadsheet reads as they were meant: no formula runs, no number is lost."""

from __future__ import annotations

import csv
import io

from heshi.admin.spreadsheet import cell, results_csv


def test_long_digit_strings_stay_text_and_formulas_never_run() -> None:
    # an invoice number of 20 digits, a bank account, a code with a leading zero: Excel
    # would show 2.53E+19 keeping 15 digits, or drop the zero
    assert cell("25312000000123456789") == "\t25312000000123456789"
    assert cell("6222020200112233445") == "\t6222020200112233445"
    assert cell("0571") == "\t0571"
    # what Excel shows right stays as it is: short numbers, phones, amounts, real numbers
    for value in ("12800", "13812345678", "0", "12800.00", "11010519491231002X"):
        assert cell(value) == value
    assert cell(25312000000123456789) == "25312000000123456789"  # a number stays a number
    assert cell("=1+1") == "'=1+1" and cell("－5") == "'－5" and cell("\t1") == "'\t1"
    assert cell("１２３４５６７８９０１２３") == "１２３４５６７８９０１２３"  # not ASCII digits

    text = results_csv(
        [{"file": "发票.pdf", "type": "invoice", "status": "done",
          "fields": {"invoice_number": "25312000000123456789", "total_amount": 12800.0}}]
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0]["invoice_number"].strip() == "25312000000123456789"
    assert rows[0]["invoice_number"].startswith("\t") and rows[0]["total_amount"] == "12800.0"
