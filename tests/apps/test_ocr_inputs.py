"""Hostile and awkward inputs to the readers: zip bombs in packages, a PDF page that says
it is enormous, transparent and 16-bit pictures, a fax TIFF of several pages."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heshi.apps.docs.read import document_text
from heshi.apps.kb.documents import read_document
from heshi.apps.kb.ocr import MAX_PIXELS
from heshi.apps.kb.parse import UnreadableDocument

SAMPLES = Path(__file__).parent / "samples"
INVOICE_NUMBER = "24199090414712738008"


def test_a_package_member_in_bzip2_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    path = tmp_path / "炸弹.docx"
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("word/document.xml", b"\0" * 100_000, zipfile.ZIP_BZIP2)
    with pytest.raises(UnreadableDocument, match="unsupported compression"):
        read_document(path)


def test_a_package_member_that_lies_about_its_size_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("OFD.xml", b"<ofd/>" * 200_000)  # 1.2 MB unpacked, small packed
    data = bytearray(buffer.getvalue())
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)  # the directory says 10 bytes
    path = tmp_path / "谎报.ofd"
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableDocument, match="OFD"):
        read_document(path)


def test_a_pdf_page_that_says_it_is_enormous_is_rendered_within_the_pixel_limit(
    tmp_path: Path,
) -> None:
    import pypdfium2

    pdf = pypdfium2.PdfDocument.new()
    pdf.new_page(14400, 14400)  # 200 inches square: 1.6 gigapixels at 200 dpi
    path = tmp_path / "巨页.pdf"
    pdf.save(str(path))
    pdf.close()
    with pytest.raises(UnreadableDocument, match="no text"):  # read (blank), not OOM-killed
        document_text(path)
    assert MAX_PIXELS < 14400 * 14400 * (200 / 72) ** 2


def test_a_transparent_png_with_black_text_is_read(tmp_path: Path) -> None:
    grey = np.asarray(_scan_page())
    rgba = np.zeros((*grey.shape, 4), dtype=np.uint8)  # black everywhere...
    rgba[..., 3] = 255 - grey  # ...opaque only where there is ink
    path = tmp_path / "透明.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert INVOICE_NUMBER in document_text(path).text


def test_a_16_bit_grey_tiff_is_scaled_not_clipped(tmp_path: Path) -> None:
    grey = np.asarray(_scan_page()).astype(np.uint16) * 200  # 0..51000
    path = tmp_path / "十六位.tif"
    picture = Image.fromarray(grey)
    assert picture.mode.startswith("I;16")
    picture.save(path)
    assert INVOICE_NUMBER in document_text(path).text


def test_every_page_of_a_fax_tiff_is_read(tmp_path: Path) -> None:
    page = _scan_page()
    blank = Image.new("L", page.size, 255)
    path = tmp_path / "传真.tif"
    blank.save(path, save_all=True, append_images=[page])
    document = document_text(path)
    assert document.pages == 2 and INVOICE_NUMBER in document.text


def _scan_page() -> Image.Image:
    """The committed scan's page as a greyscale picture (its top half: faster OCR)."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(SAMPLES / "invoice-scan.pdf"))
    try:
        image = pdf[0].render(scale=150 / 72, grayscale=True).to_pil().convert("L")
    finally:
        pdf.close()
    return image.crop((0, 0, image.width, image.height // 2))
