"""The document pipeline's generated gold set is right about itself: its tax ids, sums and
capitals pass the pipeline's checks, capitals round-trip through the reader, every text
rendering (TXT, DOCX, OFD, text PDF) reads back with the values in it, the scans are
images without text and the photos phone-sized pictures, drawn the same from the same
seed; the committed OCR samples are what ``benchmarks/make_samples.py`` makes."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from heshi.apps.docs.normalize import capital_amount
from heshi.apps.docs.read import document_text
from heshi.apps.docs.schema import load_schema
from heshi.apps.docs.validate import validate

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from docs_gold import capitals, generate, looks, render  # noqa: E402
from make_samples import described  # noqa: E402

SAMPLES = Path(__file__).resolve().parent / "samples"


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
        [sys.executable, str(BENCHMARKS / "docs_gold.py"), str(tmp_path), "--per-type", "3",
         "--formats", "txt,docx,ofd"],
        check=True, capture_output=True,
    )  # fmt: skip
    gold = json.loads((tmp_path / "gold.json").read_text("utf-8"))["documents"]
    assert len(gold) == 12 and {d["type"] for d in gold} == {
        "invoice", "contract", "bill_of_lading", "bank_statement",
    }  # fmt: skip
    for doc in gold:
        _, problems = validate(load_schema(doc["type"]), doc["fields"])
        assert problems == [], (doc["id"], problems)
        for fmt in ("txt", "docx", "ofd") if doc["type"] == "invoice" else ("txt", "docx"):
            text = document_text(tmp_path / fmt / f"{doc['id']}.{fmt}").text
            for name in ("invoice_number", "contract_number", "bl_number", "account_number"):
                if name in doc["fields"]:
                    assert doc["fields"][name] in text, (fmt, doc["id"], name)
    assert sorted(p.name for p in (tmp_path / "ofd").iterdir()) == [
        "invoice-01.ofd", "invoice-02.ofd", "invoice-03.ofd",
    ]  # fmt: skip
    assert not (tmp_path / "pdf").exists()  # only the formats asked for


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One document of each type as text PDF, scan and photo (and OFD, for the invoice)."""
    out = tmp_path_factory.mktemp("gold")
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "docs_gold.py"), str(out), "--per-type", "1",
         "--formats", "ofd,pdf,scan,photo"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def _printed(seed: int = 7) -> dict[str, list[str]]:
    """Each document's printed strings: its lines and its table's cells."""
    return {
        doc_id: [line for line in lines if line != "\0"] + [c for row in table for c in row if c]
        for doc_id, _, _, lines, table in generate(seed, 1)
    }


def test_the_text_pdf_holds_every_line_exactly_in_an_embedded_font(drawn: Path) -> None:
    printed = _printed()
    assert len(printed) == 4
    for doc_id, strings in printed.items():
        path = drawn / "pdf" / f"{doc_id}.pdf"
        document = pdfium.PdfDocument(path)
        assert len(document) == 1
        assert [round(v) for v in document[0].get_size()] == [595, 842]  # A4
        text = document[0].get_textpage().get_text_range()
        missing = [s for s in strings if s not in text]
        assert missing == [], (doc_id, missing, text)
        document.close()
        raw = path.read_bytes()
        fonts = re.findall(rb"/BaseFont /(\S+)", raw)
        assert fonts and all(re.fullmatch(rb"[A-Z]{6}\+[\w-]+", f) for f in fonts), fonts  # subsets
        assert b"/FontFile2" in raw  # the subset's glyphs are in the file
    assert any("　" in s and "¥" in s for s in printed["invoice-01"])  # the hard glyphs, tested


def _ink(image: Image.Image) -> float:
    """The share of dark pixels."""
    grey = image.convert("L")
    return sum(grey.histogram()[:100]) / (grey.width * grey.height)


def test_the_scan_is_an_image_without_text_the_size_of_the_page(drawn: Path) -> None:
    for doc_id in _printed():
        document = pdfium.PdfDocument(drawn / "scan" / f"{doc_id}.pdf")
        page = document[0]
        assert len(document) == 1
        assert page.get_textpage().get_text_range() == ""  # no text layer
        assert [round(v) for v in page.get_size()] == [595, 842]
        image = page.render(scale=200 / 72).to_pil()
        assert abs(image.width - 1654) <= 2 and abs(image.height - 2339) <= 2
        assert 0.002 < _ink(image) < 0.1, doc_id  # text on it, not a black page
        document.close()


def test_the_photo_is_a_phone_picture_of_the_paper_on_a_desk(drawn: Path) -> None:
    for doc_id in _printed():
        path = drawn / "photo" / f"{doc_id}.png"
        assert path.stat().st_size < 1_500_000
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert 1200 <= max(image.size) <= 1600 and image.height > image.width
            grey = image.convert("L")
        w, h = grey.size
        corners = [grey.crop((x, y, x + 30, y + 30)) for x in (0, w - 30) for y in (0, h - 30)]
        paper = grey.crop((w // 2 - 60, h * 3 // 4 - 60, w // 2 + 60, h * 3 // 4 + 60))
        assert max(_mean(c) for c in corners) + 30 < _mean(paper), doc_id  # the desk shows
        assert _ink(grey) > 0.002, doc_id


def _mean(image: Image.Image) -> float:
    return sum(i * n for i, n in enumerate(image.histogram())) / (image.width * image.height)


def test_the_same_seed_draws_the_same_pixels(tmp_path: Path) -> None:
    doc_id, _, _, lines, table = next(generate(7, 1))
    pixels = []
    for run, seed in (("a", 7), ("b", 7), ("c", 8)):
        render(tmp_path / run, doc_id, lines, table, ["photo", "scan"], looks(seed, doc_id))
        with Image.open(tmp_path / run / "photo" / f"{doc_id}.png") as image:
            pixels.append(image.tobytes())
    assert pixels[0] == pixels[1]
    assert pixels[0] != pixels[2]  # another seed, another photo
    scans = [(tmp_path / run / "scan" / f"{doc_id}.pdf").read_bytes() for run in "abc"]
    assert scans[0] == scans[1] and scans[0] != scans[2]


def test_the_committed_ocr_samples_are_the_generators(tmp_path: Path) -> None:
    committed = json.loads((SAMPLES / "invoice-samples.json").read_text("utf-8"))
    assert committed == described(7)  # regenerate: benchmarks/make_samples.py
    _, problems = validate(load_schema("invoice"), committed["fields"])
    assert problems == []
    for name in ("invoice-scan.pdf", "invoice-photo.png", "invoice-samples.json"):
        assert (SAMPLES / name).stat().st_size < 200_000, name
    document = pdfium.PdfDocument(SAMPLES / "invoice-scan.pdf")
    assert document[0].get_textpage().get_text_range() == ""
    document.close()
    with Image.open(SAMPLES / "invoice-photo.png") as image:
        assert image.size == (1125, 1500)
