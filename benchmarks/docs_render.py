"""The gold set's page renderings: a text PDF, a scanned PDF and a phone photo of one page.

The page is laid out once (``layout``: A4, points, y from the top; text lines and a ruled
table grid) and drawn three ways, so the renderings agree on where everything is:

* ``pdf`` — a text PDF (reportlab): every line a text object in the CJK TrueType font,
  embedded as a subset, so pdfium's text layer gives back each line exactly;
* ``scan`` — the page as a greyscale image (Pillow, 150–200 dpi), slightly rotated,
  blurred, with sensor noise and specks, saved as a JPEG-compressed, image-only PDF;
* ``photo`` — a PNG of the paper on a desk as a phone takes it: perspective and rotation,
  a shadow, uneven light, a little blur.

All randomness comes from the ``random.Random`` passed in: the same seed gives the same
pixels (and, with the same library versions, the same bytes). The font is found by
``cjk_font``: ``$HESHI_CJK_FONT``, else WenQuanYi Micro Hei or Zen Hei (Debian's
``fonts-wqy-microhei`` / ``fonts-wqy-zenhei``).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
)
A4 = (595.28, 841.89)  # points
MARGIN, TOP = 56.0, 70.0
TITLE, BODY, CELL = 16.0, 11.5, 10.5  # font sizes, points
ROW, PAD = 21.0, 5.0  # table row height and cell padding, points
INK = 25


def cjk_font() -> Path:
    """The CJK TrueType font the renderings use (a .ttc's first face)."""
    env = os.environ.get("HESHI_CJK_FONT")
    if env:
        if not Path(env).is_file():
            raise RuntimeError(f"HESHI_CJK_FONT={env}: no such file")
        return Path(env)
    for path in FONTS:
        if path.is_file():
            return path
    raise RuntimeError(
        "no CJK font for the gold set's PDFs and images: `apt-get install fonts-wqy-microhei` "
        "(or set HESHI_CJK_FONT to a TrueType font with Chinese glyphs)"
    )


@cache
def _font(size_px: int, path: Path | None = None) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(
        str(path or cjk_font()), size_px, index=0, layout_engine=ImageFont.Layout.BASIC
    )


def width(text: str, size: float) -> float:
    """The advance width of ``text`` at ``size`` points."""
    return _font(1000).getlength(text) * size / 1000


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline, from the top of the page
    size: float
    text: str


@dataclass
class Page:
    width: float = A4[0]
    height: float = A4[1]
    texts: list[Text] = field(default_factory=list)
    rules: list[tuple[float, float, float, float]] = field(default_factory=list)


def layout(lines: list[str], table: list[list[str]]) -> Page:
    """One A4 page: the first line a centred title, then the lines, the table at "\\0"."""
    page = Page()
    room = page.width - 2 * MARGIN
    y = TOP
    for n, line in enumerate(lines):
        if line == "\0":
            if table:
                y = _table(page, table, y + 4) + 10
            continue
        size = TITLE if n == 0 else BODY
        size = min(size, size * room / max(1.0, width(line, size)))  # one line, never wrapped
        x = (page.width - width(line, size)) / 2 if n == 0 else MARGIN
        y += size * (1.2 if n == 0 else 1.0)
        page.texts.append(Text(x, y, size, line))
        y += size * (1.2 if n == 0 else 0.85)
    return page


def _table(page: Page, table: list[list[str]], top: float) -> float:
    """A ruled grid, columns as wide as their longest cell; returns the bottom."""
    room = page.width - 2 * MARGIN
    cols = max(len(row) for row in table)
    need = [max(width(row[c], CELL) if c < len(row) else 0 for row in table) + 2 * PAD
            for c in range(cols)]  # fmt: skip
    scale = room / sum(need)
    widths = [w * scale for w in need]
    edges = [MARGIN + sum(widths[:c]) for c in range(cols + 1)]
    bottom = top + ROW * len(table)
    for r in range(len(table) + 1):
        page.rules.append((MARGIN, top + ROW * r, MARGIN + room, top + ROW * r))
    for x in edges:
        page.rules.append((x, top, x, bottom))
    for r, row in enumerate(table):
        for c, cell in enumerate(row):
            if cell:
                size = min(CELL, CELL * (widths[c] - 2 * PAD) / max(1.0, width(cell, CELL)))
                base = top + ROW * r + (ROW + size * 0.72) / 2
                page.texts.append(Text(edges[c] + PAD, base, size, cell))
    return bottom


# --- text PDF -------------------------------------------------------------------------


def pdf(path: Path, page: Page) -> Path:
    """A text PDF of the page: the CJK font embedded as a subset, lines as text."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    name = "HeshiCJK"
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(cjk_font()), subfontIndex=0))
    sheet = canvas.Canvas(
        str(path), pagesize=(page.width, page.height), invariant=1, initialFontName=name
    )
    sheet.setTitle(path.stem)
    sheet.setAuthor("heshi benchmarks/docs_gold.py")
    sheet.setLineWidth(0.8)
    for x0, y0, x1, y1 in page.rules:
        sheet.line(x0, page.height - y0, x1, page.height - y1)
    for t in page.texts:
        sheet.setFont(name, t.size)
        sheet.drawString(t.x, page.height - t.y, t.text)
    sheet.showPage()
    sheet.save()
    return path


# --- images ---------------------------------------------------------------------------


def raster(page: Page, dpi: float, ink: int = INK) -> Image.Image:
    """The page as a greyscale image at ``dpi``: white paper, ``ink`` text and rules."""
    k = dpi / 72
    image = Image.new("L", (round(page.width * k), round(page.height * k)), 255)
    draw = ImageDraw.Draw(image)
    line = max(1, round(0.8 * k))
    for x0, y0, x1, y1 in page.rules:
        draw.line([(x0 * k, y0 * k), (x1 * k, y1 * k)], fill=ink, width=line)
    for t in page.texts:
        draw.text((t.x * k, t.y * k), t.text, fill=ink, font=_font(round(t.size * k)), anchor="ls")
    return image


def _noise(rng: random.Random) -> np.random.Generator:
    return np.random.default_rng(rng.getrandbits(64))


def scan_image(page: Page, rng: random.Random, dpi: int = 200) -> Image.Image:
    """The page as a flatbed scanner returns it: greyish paper, a slight skew, soft edges,
    noise and specks (greyscale, page-sized)."""
    paper = rng.randint(236, 248)
    image = raster(page, dpi).point(lambda v: round(v * paper / 255))
    angle = rng.uniform(0.5, 2.0) * rng.choice((-1, 1))
    shift = (round(rng.uniform(-0.01, 0.01) * image.width),
             round(rng.uniform(-0.01, 0.01) * image.height))  # fmt: skip
    image = image.rotate(angle, Image.Resampling.BICUBIC, translate=shift, fillcolor=paper)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 0.8) * dpi / 200))
    noise = _noise(rng)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += noise.normal(0, rng.uniform(3.0, 5.0), pixels.shape).astype(np.float32)
    specks = noise.random(pixels.shape) < rng.uniform(2e-4, 6e-4)  # dust: dark specks
    pixels[specks] = noise.uniform(40, 150, int(specks.sum()))
    # the scanner's auto-level: the paper comes out white, the ink stays
    levelled = (pixels - 20) * 255 / (paper - 12 - 20)
    return Image.fromarray(np.clip(levelled, 0, 255).astype(np.uint8), "L")


def scan(path: Path, page: Page, rng: random.Random, dpi: int = 200, quality: int = 60) -> Path:
    """An image-only PDF of ``scan_image`` (JPEG inside, no text layer)."""
    image = scan_image(page, rng, dpi)
    image.save(path, "PDF", resolution=dpi, quality=quality, title=path.stem,
               author="heshi benchmarks/docs_gold.py", creationDate=None, modDate=None)  # fmt: skip
    return path


def _perspective(dest: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    """Pillow's PERSPECTIVE coefficients taking output points ``dest`` to input ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dest, src, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return [float(c) for c in np.linalg.solve(np.array(rows), np.array(rhs))]


DESKS = [(132, 98, 70), (92, 96, 104), (168, 160, 148), (58, 70, 92), (120, 124, 110)]


def photo_image(page: Page, rng: random.Random, long_side: int = 1500) -> Image.Image:
    """The paper on a desk, photographed: tilted and turned, shadowed, unevenly lit."""
    w, h = round(long_side * 3 / 4), long_side
    tall = h * rng.uniform(0.80, 0.86)  # the paper's height in the photo
    dpi = 72 * tall / page.height
    sheet = raster(page, dpi, ink=rng.randint(20, 45))
    tint = (rng.randint(238, 252), rng.randint(236, 250), rng.randint(228, 244))
    paper = Image.merge("RGB", [sheet.point(lambda v, t=t: round(v * t / 255)) for t in tint])
    pw, ph = paper.size
    # where the corners land: centred, a keystone (the phone tilted), turned, jittered
    cx = w / 2 + rng.uniform(-0.03, 0.03) * w
    cy = h / 2 + rng.uniform(-0.02, 0.02) * h
    key = rng.uniform(0.03, 0.07) * rng.choice((-1, 1))  # top narrower (or wider) than bottom
    corners = [(-pw / 2 * (1 - key), -ph / 2), (pw / 2 * (1 - key), -ph / 2),
               (pw / 2 * (1 + key), ph / 2), (-pw / 2 * (1 + key), ph / 2)]  # fmt: skip
    angle = math.radians(rng.uniform(2.0, 5.0) * rng.choice((-1, 1)))
    cos, sin = math.cos(angle), math.sin(angle)
    dest = []
    for x0, y0 in corners:
        x, y = x0 + rng.uniform(-0.008, 0.008) * pw, y0 + rng.uniform(-0.008, 0.008) * ph
        dest.append((cx + x * cos - y * sin, cy + x * sin + y * cos))
    coeffs = _perspective(dest, [(0, 0), (pw, 0), (pw, ph), (0, ph)])
    paper = paper.convert("RGBA").transform(
        (w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC,
        fillcolor=(0, 0, 0, 0),
    )  # fmt: skip
    alpha = paper.getchannel("A")
    # the desk, the paper's shadow on it, the paper
    desk = np.empty((h, w, 3), np.float32)
    desk[:] = [c + rng.randint(-12, 12) for c in rng.choice(DESKS)]
    noise = _noise(rng)
    grain = noise.normal(0, 3.0, (h // 12 + 1, w // 12 + 1)).astype(np.float32)
    desk += np.asarray(Image.fromarray(grain, "F").resize((w, h), Image.Resampling.BICUBIC))[
        ..., None
    ]  # the desk's grain, smooth
    offset = (round(rng.uniform(-0.01, 0.015) * w), round(rng.uniform(0.004, 0.015) * h))
    shadow = alpha.transform((w, h), Image.Transform.AFFINE,
                             (1, 0, -offset[0], 0, 1, -offset[1]))  # fmt: skip
    shadow = shadow.filter(ImageFilter.GaussianBlur(0.012 * w))
    desk *= 1 - 0.45 * np.asarray(shadow, np.float32)[..., None] / 255
    scene = Image.fromarray(np.clip(desk, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    scene.alpha_composite(paper)
    # uneven light: brighter towards one side, darker corners
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    towards = rng.uniform(0, 2 * math.pi)
    along = ((xs - w / 2) * math.cos(towards) + (ys - h / 2) * math.sin(towards)) / (h / 2)
    corner = ((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    light = 1 + rng.uniform(0.08, 0.15) * along - rng.uniform(0.10, 0.22) * corner
    lit = np.asarray(scene.convert("RGB"), np.float32) * light[..., None]
    lit *= [1 + rng.uniform(-0.03, 0.03) for _ in range(3)]  # the light's colour
    image = Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 0.8) * long_side / 1500))


def photo(path: Path, page: Page, rng: random.Random, long_side: int = 1500) -> Path:
    """A PNG of ``photo_image``."""
    photo_image(page, rng, long_side).save(path, "PNG")
    return path
