"""CSV that a spreadsheet opens safely and reads right: usage, and document-job results."""

from __future__ import annotations

import csv
import io
from typing import Any

from heshi.store.usage import UsageRow


def usage_csv(rows: list[UsageRow], by: str) -> str:
    """Usage rows as CSV (a UTF-8 BOM first, so that Excel reads the Chinese right)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([by, *_USAGE_COLUMNS])
    for row in rows:
        values = [getattr(row, c) for c in _USAGE_COLUMNS]
        cost = row.cost
        values[-1] = "" if cost is None else f"{cost:.6f}"
        writer.writerow([cell(row.group or ""), *values])
    return "\ufeff" + out.getvalue()


def results_csv(files: list[dict[str, Any]]) -> str:
    """Document-job files' outcomes (their ``as_json``) as CSV, a BOM first: file, type,
    status, one column per field, problems, error."""
    names: list[str] = []
    for f in files:
        names += [n for n in f.get("fields") or {} if n not in names]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["file", "type", "status", *names, "problems", "error"])
    for f in files:
        fields = f.get("fields") or {}
        found = f.get("problems") or []
        problems = "; ".join(f"{p.get('field')}: {p.get('reason')}" for p in found)
        row = [f["file"], f.get("type"), f["status"], *(fields.get(n) for n in names)]
        writer.writerow([cell(v) for v in [*row, problems, f.get("error")]])
    return "\ufeff" + out.getvalue()


# What makes a spreadsheet read a cell as a formula (the full-width signs: WPS too).
_FORMULA = ("=", "+", "-", "@", "＝", "＋", "－", "＠")


def cell(value: Any) -> str:
    """A cell a spreadsheet will not run: names and extracted fields come from clients and
    documents, and text starting with = + - @ (after spaces too), a tab or a return would
    be read as a formula. Numbers stay numbers; a long string of digits stays text."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    text = str(value)
    if text.lstrip()[:1] in _FORMULA or text[:1] in ("\t", "\r"):
        return "'" + text
    long_or_zero = len(text) > 11 or (len(text) > 1 and text.startswith("0"))
    if text.isascii() and text.isdigit() and long_or_zero:
        # an invoice, account or ID number: Excel would show 1.23457E+19 and keep only 15
        # digits, or drop a leading zero; a leading tab makes it keep the text
        return "\t" + text
    return text


_USAGE_COLUMNS = (
    "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors",
    "mean_latency_ms", "mean_ttft_ms", "cost",
)  # fmt: skip
