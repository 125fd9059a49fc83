"""The document pipeline's generated gold set is right about itself: its tax ids, sums and
capitals pass the pipeline's checks, capitals round-trip through the reader, and every
rendering (TXT, DOCX, OFD) reads back with the values in it."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from heshi.apps.docs.normalize import capital_amount
from heshi.apps.docs.read import document_text
from heshi.apps.docs.schema import load_schema
from heshi.apps.docs.validate import validate

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from docs_gold import capitals  # noqa: E402


def test_capitals_round_trip_through_the_reader() -> None:
    rng = random.Random(3)
    for _ in range(5000):
        value = Decimal(rng.randint(0, 10**12)) / 100
        assert capital_amount(capitals(value)) == value, value
    assert capitals(Decimal("12800")) == "壹万贰仟捌佰元整"
    assert capitals(Decimal("100500")) == "壹拾万零伍佰元整"
    assert capitals(Decimal("10000.05")) == "壹万元零伍分"


def test_the_generated_set_passes_its_own_checks_in_every_format(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "docs_gold.py"), str(tmp_path), "--per-type", "3"],
        check=True, capture_output=True,
    )  # fmt: skip
    gold = json.loads((tmp_path / "gold.json").read_text("utf-8"))["documents"]
    assert len(gold) == 12 and {d["type"] for d in gold} == {
        "invoice", "contract", "bill_of_lading", "bank_statement",
    }  # fmt: skip
    for doc in gold:
        _, problems = validate(load_schema(doc["type"]), doc["fields"])
        assert problems == [], (doc["id"], problems)
        for fmt in ("txt", "docx", "ofd"):
            text = document_text(tmp_path / fmt / f"{doc['id']}.{fmt}").text
            for name in ("invoice_number", "contract_number", "bl_number", "account_number"):
                if name in doc["fields"]:
                    assert doc["fields"][name] in text, (fmt, doc["id"], name)
