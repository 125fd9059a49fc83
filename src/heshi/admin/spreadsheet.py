"""Usage as CSV that a spreadsheet opens safely and reads right."""

from __future__ import annotations

import csv
import io

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
        writer.writerow([_cell(row.group or ""), *values])
    return "\ufeff" + out.getvalue()


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run: model and tenant names come from clients,
    and one starting with = + - @ (or a tab or return) would be read as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


_USAGE_COLUMNS = (
    "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors",
    "mean_latency_ms", "mean_ttft_ms", "cost",
)  # fmt: skip
