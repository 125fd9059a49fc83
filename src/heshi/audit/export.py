"""Audit records as JSON Lines or CSV, one line at a time (exports of any size stream)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Iterable
from typing import Literal

from heshi.audit.records import AuditRecord, canonical_json

ExportFormat = Literal["jsonl", "csv"]
COLUMNS = (
    "seq",
    "ts",
    "tenant",
    "key_id",
    "request_id",
    "client_ip",
    "input",
    "output",
    "verdicts",
    "lexicon_version",
    "policy_version",
    "model_version",
    "prev_hash",
    "hash",
    "produce_id",
)


def export_lines(records: Iterable[AuditRecord], fmt: ExportFormat) -> Generator[str]:
    """Each record as one line ending in ``\\n`` (CSV: a header line first).

    JSON Lines keep the verdicts as a list; CSV puts them in one cell as canonical JSON.
    Empty values are ``null`` in JSON and empty cells in CSV, but for ``produce_id``,
    which a JSON line holds only when the record has one — exactly as its hash covers it,
    so the line without ``hash`` (and with ``"kind": "record"``) hashes to ``hash``.
    Text is written as stored: a spreadsheet may read a cell starting with ``=`` as a
    formula.
    """
    if fmt == "jsonl":
        for record in records:
            hashed = record.hashed_fields()  # the fields its hash covers, and the hash
            row = {k: v for k, v in record.as_json().items() if k in COLUMNS}
            row = {k: v for k, v in row.items() if k in hashed or k == "hash"}
            yield json.dumps(row, ensure_ascii=False) + "\n"
        return
    if fmt != "csv":
        raise ValueError(f"format must be jsonl or csv, not {fmt!r}")
    yield _csv_line(COLUMNS)
    for record in records:
        row = record.as_json()
        row["verdicts"] = canonical_json(record.verdicts).decode("utf-8")
        yield _csv_line(["" if row[k] is None else str(row[k]) for k in COLUMNS])


def _csv_line(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()
