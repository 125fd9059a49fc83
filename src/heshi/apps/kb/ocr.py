"""Text out of pictures: scanned PDF pages, photos (PNG, JPEG, TIFF, BMP, WebP) and the
images of an image-only OFD, by OCR (``rapidocr`` 3.x with the PP-OCRv6 models bundled in
its wheel, on ``onnxruntime``; both Apache-2.0; nothing downloaded).

OCR returns text boxes; they are put back into lines of the page: the page's skew is the
median slant of the wide boxes, each box's centre is turned by it, boxes whose centres
lie within half a line height of each other make one line, read left to right, and the
lines top to bottom — so a table row of a slightly rotated photo stays one line.

onnxruntime's official builds keep a device id and a telemetry database under
``~/.cache/Microsoft`` and may upload events; ``ORT_DISABLE_TELEMETRY=1`` switches all of
it off and is set before onnxruntime is imported (``tests/test_import_writes_nothing.py``
runs OCR with an empty home and checks nothing was written).
"""

from __future__ import annotations

import io
import math
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, Any

from heshi.apps.kb.parse import UnreadableDocument

if TYPE_CHECKING:
    from PIL.Image import Image

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before onnxruntime loads, whoever imports it

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MAX_PIXELS = 60_000_000  # a bigger picture is refused before it is decoded
MAX_OCR_PAGES = 200  # scanned pages OCR'd in one document at most
MAX_OFD_IMAGE_BYTES = 32 * 1024 * 1024  # one image inside an OFD, uncompressed
PAGE_DPI = 200  # scanned PDF pages are rendered at this resolution for OCR
MIN_SCORE = 0.5  # recognised text below this confidence is dropped

_engine: dict[str, Any] = {}  # the process's RapidOCR, made on first use
_engine_lock = threading.Lock()  # one recognition at a time per process (pools scale out)


def ocr_threads() -> int:
    """Threads onnxruntime uses per recognition: ``HESHI_OCR_THREADS``, else every core."""
    value = os.environ.get("HESHI_OCR_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else -1


def _get_engine() -> Any:
    if "ocr" not in _engine:
        from rapidocr import RapidOCR

        threads = ocr_threads()
        _engine["ocr"] = RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.text_score": MIN_SCORE,
                # boxes drawn wider than the default 1.6: a long line on a slanted photo
                # is otherwise clipped at its ends (88 vs 86 of 93 figures on 12 photos)
                "Det.unclip_ratio": 2.0,
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1 if threads > 0 else -1,
            }
        )
    return _engine["ocr"]


@dataclass
class Reading:
    lines: list[str]
    sideways: float  # the share of text boxes taller than wide
    score: float  # the mean confidence of what was recognised


def image_lines(image: Image) -> list[str]:
    """The lines of text in ``image``, top to bottom."""
    return _recognise(image).lines


def _recognise(image: Image, *, turn_lines: bool = True) -> Reading:
    import numpy as np

    picture = np.asarray(image.convert("RGB"))[:, :, ::-1]  # OpenCV's channel order
    with _engine_lock:
        result = _get_engine()(np.ascontiguousarray(picture), use_cls=turn_lines)
    boxes, texts, scores = (getattr(result, name, None) for name in ("boxes", "txts", "scores"))
    if boxes is None or texts is None or scores is None or len(texts) == 0:
        return Reading([], 0.0, 0.0)
    corners = [[(float(x), float(y)) for x, y in box] for box in boxes]
    tall = [
        math.dist(c[0], c[3]) > 1.5 * math.dist(c[0], c[1])
        for c, text in zip(corners, texts, strict=True)
        if len(text.strip()) >= 2
    ]
    return Reading(
        reading_order(corners, list(texts)),
        sum(tall) / len(tall) if tall else 0.0,
        float(sum(scores) / len(scores)),
    )


def reading_order(boxes: list[list[tuple[float, float]]], texts: list[str]) -> list[str]:
    """Text boxes (four corners each: top-left, top-right, bottom-right, bottom-left) put
    back into lines, as the module docstring says."""
    items = []
    for box, text in zip(boxes, texts, strict=True):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = box[:4]
        width = math.hypot(x1 - x0, y1 - y0)
        height = (math.hypot(x3 - x0, y3 - y0) + math.hypot(x2 - x1, y2 - y1)) / 2
        items.append((box, text.strip(), width, max(height, 1.0), math.atan2(y1 - y0, x1 - x0)))
    items = [item for item in items if item[1]]
    if not items:
        return []
    wide = [angle for _, _, width, height, angle in items if width > 2 * height]
    skew = median(wide) if wide else 0.0
    cos, sin = math.cos(skew), math.sin(skew)
    line_height = median(height for *_, height, _ in items)
    placed = []
    for box, text, _, _, _ in items:
        xs = [cos * x + sin * y for x, y in box]  # corners turned by -skew
        ys = [-sin * x + cos * y for x, y in box]
        placed.append((sum(ys) / len(ys), min(xs), max(xs), text))
    placed.sort()
    lines: list[list[tuple[float, float, float, str]]] = []
    for item in placed:
        if lines and abs(item[0] - sum(i[0] for i in lines[-1]) / len(lines[-1])) < (
            line_height / 2
        ):
            lines[-1].append(item)
        else:
            lines.append([item])
    out = []
    for line in lines:
        line.sort(key=lambda item: item[1])
        out.append(" ".join(text for _, _, _, text in line))
    return out


def open_pages(data: bytes) -> Iterator[Image]:
    """A picture file's pages (a fax TIFF has several; at most :data:`MAX_OCR_PAGES`),
    each upright (a phone's EXIF orientation applied) and flattened to 8-bit on white;
    refused before decoding when a page is past :data:`MAX_PIXELS`."""
    from PIL import Image as PILImage
    from PIL import ImageOps, ImageSequence, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > MAX_OCR_PAGES:
                raise UnreadableDocument(
                    f"图片超过 {MAX_OCR_PAGES} 页 / more than {MAX_OCR_PAGES} pages in the image"
                )
            for frame in ImageSequence.Iterator(image):
                width, height = frame.size
                if width * height > MAX_PIXELS:
                    raise UnreadableDocument(
                        f"图片过大 / image too large: {width}×{height} pixels > {MAX_PIXELS}"
                    )
                frame.load()
                yield flattened(ImageOps.exif_transpose(frame) or frame)
    except UnidentifiedImageError as exc:  # its text names an in-memory object, not the file
        raise UnreadableDocument(
            "无法打开图片：文件已损坏或不是图片 / cannot open the image: damaged, or not a picture"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableDocument(f"无法打开图片 / cannot open the image: {exc}") from exc
    except PILImage.DecompressionBombError as exc:
        raise UnreadableDocument(f"图片过大 / image too large: {exc}") from exc


def flattened(image: Image) -> Image:
    """``image`` as 8-bit RGB: transparency laid on white (a transparent PNG's text is
    often black on transparent black), 16- and 32-bit greys scaled, not clipped."""
    from PIL import Image as PILImage

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0 + 255
        return PILImage.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def upright_lines(image: Image) -> list[str]:
    """OCR of ``image``; when most of its text runs vertically (a photo taken sideways),
    of the image turned a quarter whichever way reads with more confidence — read without
    turning single lines, so that text upside down scores as badly as it reads."""
    reading = _recognise(image)
    if reading.sideways <= 0.5:
        return reading.lines
    turned = [_recognise(image.rotate(a, expand=True), turn_lines=False) for a in (90, 270)]
    return max(turned, key=lambda r: r.score * sum(len(line) for line in r.lines)).lines


def read_image_pages(data: bytes) -> list[list[str]]:
    """The lines of each page of a picture file (a fax TIFF has several)."""
    return [upright_lines(page) for page in open_pages(data)]


def pdf_page_lines(page: Any) -> list[str]:
    """OCR of a PDF page (a ``pypdfium2`` page) rendered at :data:`PAGE_DPI` — or less,
    when the page says it is so large that it would pass :data:`MAX_PIXELS`."""
    width, height = page.get_size()  # points
    scale = PAGE_DPI / 72
    if width * height * scale * scale > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / max(width * height, 1.0))
    bitmap = page.render(scale=scale, grayscale=True)
    try:
        return upright_lines(bitmap.to_pil())
    finally:
        bitmap.close()


def ofd_image_texts(data: bytes) -> Iterator[str]:
    """The text of each picture in an OFD package (an image-only e-document: a scan
    wrapped as OFD), in the package's order (at most :data:`MAX_OCR_PAGES`)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            members = [
                m
                for m in package.infolist()
                if m.filename.lower().endswith(IMAGE_SUFFIXES) and not m.is_dir()
            ]
            if len(members) > MAX_OCR_PAGES:
                raise UnreadableDocument(
                    f"OFD 中的图片超过 {MAX_OCR_PAGES} 张 / more than {MAX_OCR_PAGES} images"
                )
            for member in members:
                pages = read_image_pages(bounded_read(package, member, MAX_OFD_IMAGE_BYTES))
                yield "\n\n".join("\n".join(lines) for lines in pages)
    except zipfile.BadZipFile as exc:
        raise UnreadableDocument(f"无法打开 OFD / cannot open the OFD: {exc}") from exc


def bounded_read(package: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, read in pieces and refused once past ``limit`` whatever size the
    archive declares for it (only stored and deflated members are ever read)."""
    return b"".join(bounded_pieces(package, member, limit))


def bounded_pieces(
    package: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int
) -> Iterator[bytes]:
    """:func:`bounded_read`'s pieces, one at a time (a size check need not hold them)."""
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UnreadableDocument(f"不支持的压缩方式 / unsupported compression in {member.filename}")
    size = 0
    with package.open(member) as stream:
        while piece := stream.read(1 << 20):
            size += len(piece)
            if size > limit:
                raise UnreadableDocument(
                    f"压缩包中的文件过大 / a file in the package is too large: {member.filename}"
                )
            yield piece
