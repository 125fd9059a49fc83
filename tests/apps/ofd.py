"""A small OFD (GB/T 33190) writer for tests: a zip package whose one page holds the
given lines as text objects — the structure e-invoice issuers write, without fonts'
glyph data or seals. ``image_only`` writes a page with an image and no text (a scan):
``image``, PNG bytes, as its picture (none: a reference to a picture that is missing)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

NS = 'xmlns:ofd="http://www.ofdspec.org/2016"'


def write_ofd(
    path: Path, lines: list[str], *, image_only: bool = False, image: bytes | None = None
) -> Path:
    objects = []
    if image_only:
        objects.append('<ofd:ImageObject ID="10" Boundary="0 0 210 140" ResourceID="20"/>')
    else:
        for n, line in enumerate(lines):
            y = 10 + 6 * n
            objects.append(
                f'<ofd:TextObject ID="{100 + n}" Boundary="10 {y} 190 6" Font="5" Size="3.5">'
                f'<ofd:TextCode X="0" Y="4">{escape(line)}</ofd:TextCode></ofd:TextObject>'
            )
    files = {
        "OFD.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:OFD {NS} Version="1.1" DocType="OFD">'
            "<ofd:DocBody><ofd:DocInfo><ofd:DocID>heshi-test</ofd:DocID></ofd:DocInfo>"
            "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>"
        ),
        "Doc_0/Document.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:Document {NS}><ofd:CommonData>'
            "<ofd:MaxUnitID>200</ofd:MaxUnitID><ofd:PageArea><ofd:PhysicalBox>0 0 210 140"
            "</ofd:PhysicalBox></ofd:PageArea><ofd:PublicRes>PublicRes.xml</ofd:PublicRes>"
            '</ofd:CommonData><ofd:Pages><ofd:Page ID="1" BaseLoc="Pages/Page_0/Content.xml"/>'
            "</ofd:Pages></ofd:Document>"
        ),
        "Doc_0/PublicRes.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:Res {NS} BaseLoc="Res"><ofd:Fonts>'
            '<ofd:Font ID="5" FontName="宋体" FamilyName="宋体"/></ofd:Fonts>'
            + (
                '<ofd:MultiMedias><ofd:MultiMedia ID="20" Type="Image" Format="PNG">'
                "<ofd:MediaFile>scan.png</ofd:MediaFile></ofd:MultiMedia></ofd:MultiMedias>"
                if image is not None
                else ""
            )
            + "</ofd:Res>"
        ),
        "Doc_0/Pages/Page_0/Content.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:Page {NS}><ofd:Content>'
            f'<ofd:Layer ID="2">{"".join(objects)}</ofd:Layer></ofd:Content></ofd:Page>'
        ),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        for name, text in files.items():
            package.writestr(name, text.encode("utf-8"))
        if image is not None:
            package.writestr("Doc_0/Res/scan.png", image)
    return path
