"""OCR on the committed samples (one invented invoice, scanned and photographed by
``benchmarks/make_samples.py``): the figures that matter come back exactly, in lines, from
a scanned PDF, a photo and an image-only OFD; a bad or oversized picture is refused
before it costs memory; and ``heshi docs extract`` holds its contract on a scan."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from heshi.apps.docs.read import document_text
from heshi.apps.kb.documents import read_document
from heshi.apps.kb.ocr import MAX_PIXELS
from heshi.apps.kb.parse import UnreadableDocument
from tests.apps.ofd import write_ofd
from tests.apps.test_docs_cli import run, tiny_yaml

SAMPLES = Path(__file__).parent / "samples"
GOLD = json.loads((SAMPLES / "invoice-samples.json").read_text("utf-8"))


def squeezed(text: str) -> str:
    """Without spaces, and with full-width brackets and colons as OCR may read them."""
    return re.sub(r"\s", "", text).translate(str.maketrans("（）：", "():"))


def assert_reads_the_invoice(text: str) -> None:
    fields = GOLD["fields"]
    flat = squeezed(text)
    for name in ("invoice_number", "buyer_name", "buyer_tax_id", "seller_name",
                 "seller_tax_id", "total_amount_in_words"):  # fmt: skip
        assert squeezed(fields[name]) in flat, (name, text)
    for name in ("amount_without_tax", "tax_amount", "total_amount"):
        assert f"{fields[name]:,.2f}" in flat, (name, text)
    # in lines, as printed: a table row stays one line, in its order
    lines = [squeezed(line) for line in text.splitlines()]
    row = squeezed("".join(GOLD["table"][1]))
    assert row in lines, text
    assert lines[0] == squeezed(GOLD["lines"][0])


def test_a_scanned_pdf_is_read_by_ocr() -> None:
    document = document_text(SAMPLES / "invoice-scan.pdf")
    assert document.pages == 1
    assert_reads_the_invoice(document.text)


def test_a_photo_is_read_by_ocr() -> None:
    assert_reads_the_invoice(document_text(SAMPLES / "invoice-photo.png").text)


@pytest.mark.parametrize("degrees", [90, 270])
def test_a_photo_taken_sideways_is_read_upright(tmp_path: Path, degrees: int) -> None:
    turned = tmp_path / "sideways.png"
    Image.open(SAMPLES / "invoice-photo.png").rotate(degrees, expand=True).save(turned)
    assert_reads_the_invoice(document_text(turned).text)


def test_an_image_only_ofd_is_read_by_ocr(tmp_path: Path) -> None:
    photo = (SAMPLES / "invoice-photo.png").read_bytes()
    path = write_ofd(tmp_path / "扫描件.ofd", [], image_only=True, image=photo)
    assert_reads_the_invoice(document_text(path).text)


def test_the_knowledge_base_reads_a_scan_too() -> None:
    parsed = read_document(SAMPLES / "invoice-scan.pdf")
    assert parsed.pages == 1 and {block.page for block in parsed.blocks} == {1}
    assert squeezed(GOLD["fields"]["seller_name"]) in squeezed(
        "".join(block.text for block in parsed.blocks)
    )


def test_a_broken_or_oversized_picture_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "坏.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(UnreadableDocument, match="cannot open the image") as refused:
        document_text(broken)
    assert "Truncated" in refused.value.message
    unknown = tmp_path / "坏.png"
    unknown.write_bytes(b"no picture format starts like this")
    with pytest.raises(UnreadableDocument, match="damaged, or not a picture") as refused:
        document_text(unknown)
    assert "object at 0x" not in refused.value.message  # said for a person, not a repr
    huge = tmp_path / "巨.png"
    side = int(MAX_PIXELS**0.5) + 100
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, "PNG")  # a few KB on disk
    huge.write_bytes(buffer.getvalue())
    with pytest.raises(UnreadableDocument, match="image too large"):
        document_text(huge)


def test_extract_holds_its_contract_on_a_scan(long_tiny: Path, tmp_path: Path) -> None:
    cfg = tiny_yaml(long_tiny, tmp_path)
    code, out, err = run(
        "docs", "extract", str(SAMPLES / "invoice-scan.pdf"), "--schema", "invoice", "--json",
        "--config", str(cfg),
    )  # fmt: skip
    assert code == 0, err
    values = json.loads(out)
    assert list(values) == list(GOLD["fields"])
