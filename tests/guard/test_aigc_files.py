"""``heshi aigc label|verify`` on real files, read back by the libraries people open them with."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import docx
import pypdfium2 as pdfium
import pytest
import yaml
from PIL import Image
from reportlab.pdfgen import canvas
from typer.testing import CliRunner

from heshi.cli.main import app

KEY = "k" * 32
USCC = "91350100M000100Y43"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HESHI_AIGC_KEY", KEY)
    path = tmp_path / "heshi.yaml"
    settings = {"home": str(tmp_path / "home"), "aigc": {"uscc": USCC, "model_code": "QW15"}}
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def heshi(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def samples(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    files = {
        "txt": folder / "答复.txt",
        "md": folder / "report.md",
        "json": folder / "result.json",
        "pdf": folder / "合同摘要.pdf",
        "docx": folder / "letter.docx",
        "png": folder / "chart.png",
        "jpeg": folder / "photo.jpg",
    }
    files["txt"].write_text("您的退款已受理，预计三个工作日内到账。", encoding="utf-8")
    files["md"].write_text("---\ntitle: 月报\n---\n# 月报\n\n本月投诉下降 12%。\n", "utf-8")
    files["json"].write_text(json.dumps({"invoice": "12345678", "total": 12800}), "utf-8")
    pdf = canvas.Canvas(str(files["pdf"]))
    pdf.setTitle("Contract summary")
    pdf.drawString(72, 720, "Summary of contract HT-2026-001")
    pdf.save()
    document = docx.Document()
    document.add_paragraph("尊敬的客户：您的保单已续期。")
    document.save(str(files["docx"]))
    Image.new("RGB", (40, 30), (200, 30, 30)).save(files["png"])
    exif = Image.Exif()
    exif[0x010F] = "Heshi test camera"  # Make
    Image.new("RGB", (40, 30), (30, 200, 30)).save(files["jpeg"], quality=90, exif=exif)
    return files


def test_every_format_is_labelled_and_verified(config: Path, tmp_path: Path) -> None:
    files = samples(tmp_path / "export")
    pixels = {k: _pixels(files[k]) for k in ("png", "jpeg")}
    code, out, err = heshi("aigc", "label", *map(str, files.values()), "--config", str(config))
    assert code == 0, out + err
    assert out.count("已标识 / labelled") == len(files)

    code, out, _ = heshi(
        "aigc", "verify", "--json", *map(str, files.values()), "--config", str(config)
    )
    assert code == 0, out
    results = {Path(r["file"]).suffix: r for r in json.loads(out)}
    assert all(r["reserved_code1"] == "valid" for r in results.values()), results
    assert {r["label"]["ContentProducer"] for r in results.values()} == {"0011" + USCC + "1QW15"}
    assert results[".md"]["explicit"] is True
    assert len({r["label"]["ProduceID"] for r in results.values()}) == len(files)

    # the labelled files still open as what they are, with the label where tools look
    text = files["txt"].read_text("utf-8")
    assert text.startswith("您的退款已受理") and text.endswith(
        "本内容由人工智能生成 / AI-generated content"
    )
    front = yaml.safe_load(files["md"].read_text("utf-8").split("---")[1])
    assert front["title"] == "月报" and front["AIGC"]["Label"] == "1"
    assert json.loads(files["json"].read_text("utf-8"))["total"] == 12800
    document = pdfium.PdfDocument(files["pdf"])
    assert json.loads(document.get_metadata_value("AIGC"))["AIGC"]["ContentProducer"]
    assert document.get_metadata_value("Title") == "Contract summary"  # kept
    assert "HT-2026-001" in document[0].get_textpage().get_text_range()
    props = docx.Document(str(files["docx"]))
    assert props.paragraphs[0].text == "尊敬的客户：您的保单已续期。"
    for kind in ("png", "jpeg"):
        assert _pixels(files[kind]) == pixels[kind]  # the picture is untouched
        with Image.open(files[kind]) as image:
            xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp", b"")
        xmp = xmp.decode() if isinstance(xmp, bytes) else xmp
        assert "http://www.tc260.org.cn/ns/AIGC/1.0/" in xmp and "<TC260:AIGC>" in xmp
    with Image.open(files["jpeg"]) as image:
        assert image.getexif()[0x010F] == "Heshi test camera"  # Exif kept


def _pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def test_a_changed_file_or_a_copied_label_no_longer_fits(config: Path, tmp_path: Path) -> None:
    files = samples(tmp_path / "export")
    heshi("aigc", "label", *map(str, files.values()), "--config", str(config))
    files["md"].write_text(files["md"].read_text("utf-8").replace("12%", "2%"), "utf-8")
    data = json.loads(files["json"].read_text("utf-8"))
    files["json"].write_text(json.dumps(data | {"total": 1}), "utf-8")
    png = files["png"].read_bytes()
    buffer = io.BytesIO()  # the label copied onto another image
    Image.new("RGB", (40, 30), (0, 0, 0)).save(buffer, format="PNG", pnginfo=_xmp_of(png))
    files["png"].write_bytes(buffer.getvalue())

    code, out, _ = heshi(
        "aigc", "verify", "--json", *map(str, files.values()), "--config", str(config)
    )
    assert code == 1
    states = {Path(r["file"]).suffix: r["reserved_code1"] for r in json.loads(out)}
    assert states[".md"] == states[".json"] == states[".png"] == "invalid"
    assert states[".pdf"] == states[".docx"] == states[".jpg"] == "valid"


def _xmp_of(png: bytes) -> object:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    with Image.open(io.BytesIO(png)) as image:
        info.add_itxt("XML:com.adobe.xmp", image.info["XML:com.adobe.xmp"])
    return info


def test_unlabelled_unsupported_and_keyless(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = samples(tmp_path / "export")
    odd = tmp_path / "export" / "table.xlsx"
    odd.write_bytes(b"PK")
    code, out, err = heshi("aigc", "label", str(odd), str(files["png"]), "--config", str(config))
    assert (
        code == 1 and "unsupported file type .xlsx" in err and "labelled" in out
    )  # the rest went on

    code, out, _ = heshi("aigc", "verify", str(files["jpeg"]), "--config", str(config))
    assert code == 1 and "无标识 / no label" in out

    monkeypatch.delenv("HESHI_AIGC_KEY")
    code, out, _ = heshi("aigc", "verify", str(files["png"]), "--config", str(config))
    assert (
        code == 1 and "not checked (no key set)" in out
    )  # a label not checked vouches for nothing
    code, _, err = heshi("aigc", "label", str(files["md"]), "--config", str(config))
    assert code == 1 and "HESHI_AIGC_KEY" in err


def test_labelling_twice_keeps_one_label_and_the_out_folder_leaves_originals(
    config: Path, tmp_path: Path
) -> None:
    files = samples(tmp_path / "export")
    out_dir = tmp_path / "labelled"
    before = {k: p.read_bytes() for k, p in files.items()}
    args = (
        "aigc",
        "label",
        *map(str, files.values()),
        "--out",
        str(out_dir),
        "--config",
        str(config),
    )
    assert heshi(*args)[0] == 0
    assert {k: p.read_bytes() for k, p in files.items()} == before
    again = [str(out_dir / p.name) for p in files.values()]
    assert heshi("aigc", "label", *again, "--config", str(config))[0] == 0
    code, out, _ = heshi("aigc", "verify", "--json", *again, "--config", str(config))
    assert code == 0, out
    md = (out_dir / "report.md").read_text("utf-8")
    assert md.count("AIGC:") == 1 and md.count("本内容由人工智能生成") == 1
    with Image.open(out_dir / "chart.png") as image:
        assert image.info["XML:com.adobe.xmp"].count("<TC260:AIGC>") == 1
    if os.name == "posix":
        assert json.loads(os.getxattr(out_dir / "答复.txt", "user.AIGC"))["AIGC"]["Label"] == "1"


def test_reserved_code1_recomputed_from_the_documented_recipe(config: Path, tmp_path: Path) -> None:
    """docs/guard.md's recipe, followed with the standard library and with OpenSSL."""
    files = samples(tmp_path / "export")
    heshi("aigc", "label", str(files["json"]), str(files["txt"]), "--config", str(config))
    _, out, _ = heshi(
        "aigc", "verify", "--json", str(files["json"]), str(files["txt"]), "--config", str(config)
    )
    labels = [r["label"] for r in json.loads(out)]

    obj = json.loads(files["json"].read_text("utf-8"))
    del obj["AIGC"]
    content = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    for label, body in ((labels[0], content), (labels[1], files["txt"].read_bytes())):
        head = "\x1f".join((label["Label"], label["ContentProducer"], label["ProduceID"]))
        message = head.encode("ascii") + b"\x1e" + body
        assert hmac.new(KEY.encode(), message, hashlib.sha256).hexdigest() == label["ReservedCode1"]

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    label = labels[1]
    script = (
        '{ printf \'1\\x1f%s\\x1f%s\\x1e\' "$PRODUCER" "$PRODUCE_ID"; cat answer.txt; }'
        ' | openssl dgst -sha256 -hmac "$HESHI_AIGC_KEY"'
    )
    (tmp_path / "answer.txt").write_bytes(files["txt"].read_bytes())
    env = {**os.environ, "PRODUCER": label["ContentProducer"], "PRODUCE_ID": label["ProduceID"]}
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().endswith(label["ReservedCode1"])


def test_an_edit_appended_to_a_labelled_pdf_no_longer_fits_and_relabelling_keeps_it(
    config: Path, tmp_path: Path
) -> None:
    files = samples(tmp_path / "export")
    pdf = str(files["pdf"])
    heshi("aigc", "label", pdf, "--config", str(config))
    with open(pdf, "ab") as out:  # an incremental update saved by an editor after labelling
        out.write(b"\n% an edit\n%%EOF\n")
    code, out, _ = heshi("aigc", "verify", "--json", pdf, "--config", str(config))
    assert code == 1 and json.loads(out)[0]["reserved_code1"] == "invalid"
    assert heshi("aigc", "label", pdf, "--config", str(config))[0] == 0
    assert b"% an edit" in files["pdf"].read_bytes()  # the edit is kept under the new label
    code, out, _ = heshi("aigc", "verify", "--json", pdf, "--config", str(config))
    assert code == 0 and json.loads(out)[0]["reserved_code1"] == "valid"


def test_malformed_files_are_reported_one_by_one(config: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    broken = folder / "custom.docx"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("_rels/.rels", "<Relationships/>")
        z.writestr("docProps/custom.xml", "<not-closed")
    bomb = folder / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"0" * (300 * 1024 * 1024))
    good = folder / "ok.md"
    good.write_text("# 报告\n", "utf-8")
    code, out, err = heshi(
        "aigc", "label", str(broken), str(bomb), str(good), "--config", str(config)
    )
    assert code == 1 and "labelled" in out and str(good) in out
    assert "custom.docx" in err and "more than 256 MiB" in err


def test_json_numbers_keep_their_digits_and_a_markdown_rule_is_no_front_matter(
    config: Path, tmp_path: Path
) -> None:
    data = tmp_path / "x.json"
    data.write_text('{"a": 0.1000000000000000055, "big": 12345678901234567890.5}', "utf-8")
    ruled = tmp_path / "ruled.md"
    ruled.write_text("---\n第一段\n---\n第二段\n", "utf-8")  # two horizontal rules
    assert heshi("aigc", "label", str(data), str(ruled), "--config", str(config))[0] == 0
    text = data.read_text("utf-8")
    assert "0.1000000000000000055" in text and "12345678901234567890.5" in text
    assert json.loads(text)["AIGC"]["Label"] == "1"
    assert ruled.read_text("utf-8").split("---\n", 2)[1].startswith("AIGC:")  # its own block
    assert "第一段" in ruled.read_text("utf-8")
    code, out, _ = heshi("aigc", "verify", "--json", str(data), str(ruled), "--config", str(config))
    assert code == 0, out


def test_a_pdfs_own_information_keys_survive_labelling(config: Path, tmp_path: Path) -> None:
    """pdfium reads only the standard information keys; a document's own (/Company, a
    DMS's /DocID) and its strings as written must be kept in the labelled file's new
    dictionary, once, however often it is labelled."""
    from heshi.guard.pdfinfo import info_entries

    path = tmp_path / "报告.pdf"
    pdf = canvas.Canvas(str(path))
    pdf.setTitle("Quarterly report")
    pdf.drawString(72, 720, "Q3")
    pdf.save()
    data = path.read_bytes()
    producer = re.search(rb"/Producer \((?:\\.|[^\\)])*\)", data)
    assert producer is not None
    own = b"/Company (ACME \\(E\\)) /DocID <4142> /Tags [(a)]"
    assert len(own) <= len(producer.group(0))  # same length: the xref offsets still hold
    path.write_bytes(data.replace(producer.group(0), own.ljust(len(producer.group(0)))))
    for _ in range(2):
        assert heshi("aigc", "label", str(path), "--config", str(config))[0] == 0
    labelled = path.read_bytes()
    entries = info_entries(labelled, [labelled[-4096:]])
    assert entries is not None
    assert own in entries and b"/Title (Quarterly report)" in entries
    assert entries.count(b"/Company") == 1  # not doubled by the second labelling
    newest = labelled[labelled.rfind(b" 0 obj") :]
    assert newest.count(b"/AIGC") == 1 and own in newest
    code, out, _ = heshi("aigc", "verify", "--json", str(path), "--config", str(config))
    assert code == 0 and json.loads(out)[0]["reserved_code1"] == "valid"
    document = pdfium.PdfDocument(str(path))
    assert document.get_metadata_value("Title") == "Quarterly report"
    document.close()


def test_information_entries_are_read_as_written() -> None:
    from heshi.guard.pdfinfo import info_entries

    pdf = (
        b"%PDF-1.4\n7 0 obj\n<< /Title (a >> b \\) c) /AIGC <7b7d> % note\n"
        b" /N << /Deep [1 2 (x)] >> /Ref 3 0 R >>\nendobj\ntrailer\n<< /Info 7 0 R >>\n"
    )
    entries = info_entries(pdf, [pdf[-40:]])
    assert entries == b"/Title (a >> b \\) c) /N << /Deep [1 2 (x)] >> /Ref 3 0 R"
    assert info_entries(pdf, [b"<< /Root 1 0 R >>"]) is None  # no /Info
    assert info_entries(pdf.replace(b"7 0 obj", b"8 0 obj"), [pdf[-40:]]) is None
    assert info_entries(b"7 0 obj\n<< /Title (never closed", [b"/Info 7 0 R"]) is None
    trailer = [b"/Info 7 0 R"]
    referenced = b"7 0 obj\n<< /Title 12 0 R /AIGC 9 0 R /Author (y) >>"
    assert info_entries(referenced, trailer) == b"/Title 12 0 R /Author (y)"
    for broken in (b"<< /Title (x) /Broken >>", b"<< /K " + b"[" * 5000 + b"]" * 5000 + b" >>"):
        assert info_entries(b"7 0 obj\n" + broken, trailer) is None  # pdfium's keys then
