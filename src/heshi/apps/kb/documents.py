"""Which reader reads a file: by its suffix, after its size is checked."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

from heshi.apps.kb.ocr import IMAGE_SUFFIXES, bounded_pieces
from heshi.apps.kb.office import read_csv, read_docx, read_image, read_ofd, read_pdf, read_xlsx
from heshi.apps.kb.parse import Parsed, UnreadableDocument, read_html, read_markdown, read_text

MAX_FILE_BYTES = 64 * 1024 * 1024  # bigger files are refused before they are read
MAX_UNPACKED_BYTES = 256 * 1024 * 1024  # a DOCX/XLSX/OFD package's content, unpacked
MAX_PACKAGE_MEMBERS = 10_000
NO_TEXT = "文件中没有文字 / no text in the file (OCR found none either)"
PACKAGES = (".docx", ".xlsx", ".ofd")  # zip packages: checked before their readers open them
_SCANNED = (".pdf", ".ofd", *IMAGE_SUFFIXES)  # read by OCR where they hold no text


def no_text(suffix: str) -> str:
    """Why a file gave no text: OCR is named only for the types it reads."""
    return NO_TEXT if suffix.lower() in _SCANNED else "文件中没有文字 / no text in the file"


def load_bytes(path: Path) -> bytes:
    """The file's bytes, refused before they cost memory when past :data:`MAX_FILE_BYTES`."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # reading a pipe or a device would never end
            raise UnreadableDocument(
                "不是普通文件（目录、管道或设备）/ not a regular file (a directory, pipe or device)"
            )
        size = info.st_size
        if size > MAX_FILE_BYTES:
            raise UnreadableDocument(
                f"文件过大 / file too large: {size} bytes > {MAX_FILE_BYTES} bytes"
            )
        return path.read_bytes()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and path.is_symlink():
            raise UnreadableDocument(
                f"链接指向的文件不存在 / broken link: {path.name} -> {path.readlink()}"
            ) from exc
        raise UnreadableDocument(
            f"无法读取 / cannot read {path.name}: {exc.strerror or exc}"
        ) from exc


def read_document(path: Path, data: bytes | None = None) -> Parsed:
    """The blocks of the document at ``path`` (its bytes ``data`` when already read: the
    same bytes that were hashed are parsed), by its suffix."""
    suffix = path.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise UnreadableDocument(
            f"不支持的文件类型 / unsupported file type {suffix or '(none)'}: "
            f"supported: {', '.join(sorted(READERS))}"
        )
    content = load_bytes(path) if data is None else data
    if suffix in PACKAGES:
        check_package(content, suffix)
    parsed = reader(content)
    if not any(b.text.strip() for b in parsed.blocks):
        raise UnreadableDocument(no_text(suffix))
    return parsed


def check_package(data: bytes, suffix: str) -> None:
    """A zip package (DOCX, XLSX, OFD) unpacked once in bounded pieces before any reader
    opens it: only stored or deflated members, each its declared size (a member that
    lies about it fails its CRC), all of them within :data:`MAX_UNPACKED_BYTES` — so a
    zip bomb is refused, not unpacked into memory by a library that trusts the archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            members = package.infolist()
            if len(members) > MAX_PACKAGE_MEMBERS:
                raise UnreadableDocument(
                    f"压缩包成员过多 / too many members in the package: {len(members)}"
                )
            budget = MAX_UNPACKED_BYTES
            for member in members:
                if member.is_dir():
                    continue
                budget -= sum(map(len, bounded_pieces(package, member, budget)))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        kind = suffix.lstrip(".").upper()
        raise UnreadableDocument(f"无法打开 {kind} / cannot open the {kind}: {exc}") from exc


def supported(path: Path) -> bool:
    return path.suffix.lower() in READERS


READERS: dict[str, Callable[[bytes], Parsed]] = {
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".txt": read_text,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".ofd": read_ofd,
    ".csv": read_csv,
    ".xlsx": read_xlsx,
    **dict.fromkeys(IMAGE_SUFFIXES, read_image),
}
