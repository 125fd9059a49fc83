"""``heshi aigc label|verify``: GB 45438 labels in files a service lets users download.

The producer code comes from ``aigc.uscc`` / ``aigc.model_code`` and the wording from
``aigc.wording`` in heshi.yaml; the HMAC key from the variable ``aigc.key_env`` names
(``HESHI_AIGC_KEY``) — the same ones the gateway labels its answers with.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any
from xml.etree import ElementTree as ET

import typer
from rich.console import Console

from heshi.cli.database import ConfigOption
from heshi.cli.reporting import reporting_errors
from heshi.config import AigcConfig, load_config
from heshi.errors import ConfigError, HeshiError
from heshi.guard.aigc import (
    ImplicitLabel,
    Position,
    key_bytes,
    metadata_string,
    producer_code,
    verify_reserved_code,
)
from heshi.guard.filelabel import TEXT_KINDS, content_of, kind_of, label_file, read_label

XATTR = "user.AIGC"  # where a plain-text file's implicit label is kept, when it can be
# what a malformed file can raise while it is read: reported for that file, the rest go on
FILE_ERRORS = (HeshiError, ValueError, KeyError, zipfile.BadZipFile, ET.ParseError, OSError)

app = typer.Typer(
    help="生成合成内容标识（GB 45438）：为导出文件添加与校验标识。"
    "/ AI-generated content labels (GB 45438) on exported files: add and verify.",
    no_args_is_help=True,
    add_completion=False,
)
FilesArgument = Annotated[list[Path], typer.Argument(help="文件 / files", show_default=False)]


def _key(cfg: AigcConfig, *, required: bool) -> str | None:
    key = os.environ.get(cfg.key_env) or None
    if key is None and required:
        raise ConfigError(
            f"未设置 AIGC 签名密钥环境变量 {cfg.key_env} / the AIGC signing key variable "
            f"{cfg.key_env} is not set"
        )
    if key is not None:
        key_bytes(key)
    return key


@app.command("label", help="写入显式与隐式标识 / write the explicit and implicit labels.")
def label(
    files: FilesArgument,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="写到此目录（默认原地替换）/ write into DIR (default: in place)"
        ),
    ] = None,
    explicit: Annotated[
        str, typer.Option("--explicit", help="显式标识位置 / explicit label: start|end|off")
    ] = "end",
    mark: Annotated[
        str, typer.Option("--label", help="1 属于 / 2 可能为 / 3 疑似为 AI 生成 (Label)")
    ] = "1",
    config: ConfigOption = None,
) -> None:
    """Label every file; one that fails is reported and the others go on (exit 1)."""
    err = Console(stderr=True)
    with reporting_errors():
        cfg = load_config(config).aigc
        if not cfg.uscc:
            raise ConfigError(
                "请在 heshi.yaml 中设置 aigc.uscc（统一社会信用代码）/ set aigc.uscc (the "
                "provider's Unified Social Credit Code) in heshi.yaml"
            )
        if explicit not in ("start", "end", "off"):
            raise ConfigError("--explicit 只能是 start、end 或 off / must be start, end or off")
        producer = producer_code(cfg.uscc, model_code=cfg.model_code)
        key = _key(cfg, required=True)
        assert key is not None
        position: Position = explicit  # type: ignore[assignment]

        def make(content: bytes) -> ImplicitLabel:
            return ImplicitLabel.for_content(content, producer=producer, key=key, label=mark)

        failed = 0
        for path in files:
            try:
                kind = kind_of(path)
                done = label_file(kind, _read(path), make, explicit=position, wording=cfg.wording)
                target = (out / path.name) if out is not None else path
                _write(target, done.data)
                note = _keep_text_label(target, done.label) if kind == "text" else ""
            except FILE_ERRORS as exc:
                failed += 1
                err.print(
                    f"失败 / failed  {path}  {exc}", style="red", markup=False, soft_wrap=True
                )
                continue
            typer.echo(f"已标识 / labelled  {target}  ProduceID {done.label.produce_id}{note}")
    if failed:
        raise typer.Exit(1)


@app.command("verify", help="读取并校验标识 / read and check the labels.")
def verify(
    files: FilesArgument,
    as_json: Annotated[bool, typer.Option("--json", help="JSON 输出 / print JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Exit 0 when every file carries a label that fits it (its ReservedCode1 checked
    when the key is set), else 1."""
    with reporting_errors():
        cfg = load_config(config).aigc
        key = _key(cfg, required=False)
        results = [_check(path, key, cfg.wording) for path in files]
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False))
    else:
        for r in results:
            typer.echo(_line(r))
    if not all(r["labelled"] and r["reserved_code1"] == "valid" for r in results):
        raise typer.Exit(1)  # no label, one that does not fit, or one not checked (no key)


def _check(path: Path, key: str | None, wording: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "file": str(path), "labelled": False, "explicit": None, "label": None,
        "reserved_code1": None, "error": None,
    }  # fmt: skip
    try:
        kind = kind_of(path)
        data = _read(path)
        found = _text_label(path) if kind == "text" else read_label(kind, data)
        content = content_of(kind, data)
        if kind in TEXT_KINDS:
            text = content.decode("utf-8", "replace").strip()
            result["explicit"] = text.startswith(wording) or text.endswith(wording)
    except FILE_ERRORS as exc:
        result["error"] = str(exc)
        return result
    if found is None:
        return result
    result["labelled"] = True
    result["label"] = found.values()
    if key is None:
        result["reserved_code1"] = "unchecked"
        return result
    fits = verify_reserved_code(found, content, key)
    result["reserved_code1"] = "valid" if fits else "invalid"
    return result


_CODE_STATES = {
    "valid": "ReservedCode1 有效 / valid",
    "invalid": "ReservedCode1 不符：文件或标识被改动 / does not fit: the file or label changed",
    "unchecked": "ReservedCode1 未校验（未设置密钥）/ not checked (no key set)",
}


def _line(r: dict[str, Any]) -> str:
    if r["error"]:
        return f"错误 / error  {r['file']}  {r['error']}"
    if not r["labelled"]:
        return f"无标识 / no label  {r['file']}"
    shown = ""
    if r["explicit"] is not None:
        shown = (
            "; 显式标识 / explicit label ✓" if r["explicit"] else "; 无显式标识 / no explicit label"
        )
    label = r["label"]
    return (
        f"已标识 / labelled  {r['file']}  Label {label['Label']}, ContentProducer "
        f"{label['ContentProducer']}, ProduceID {label['ProduceID']}; "
        f"{_CODE_STATES[r['reserved_code1']]}{shown}"
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"无法读取 {path} / cannot read {path}: {exc.strerror}") from exc


def _write(target: Path, data: bytes) -> None:
    """Write beside ``target`` and rename: a failure never leaves half a file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"无法写入 {target} / cannot write {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        with contextlib.suppress(OSError):  # keep the file's permissions when replacing it
            os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _keep_text_label(path: Path, found: ImplicitLabel) -> str:
    try:
        os.setxattr(path, XATTR, metadata_string(found).encode("ascii"))
    except (OSError, AttributeError):
        return ("（纯文本没有元数据，此文件系统也不保存扩展属性：仅显式标识）/ (plain text "
                "has no metadata and this file system keeps no extended attributes: explicit "
                "label only)")  # fmt: skip
    return f"（隐式标识在扩展属性 {XATTR} / implicit label in the extended attribute {XATTR}）"


def _text_label(path: Path) -> ImplicitLabel | None:
    try:
        raw = os.getxattr(path, XATTR)
    except (OSError, AttributeError):
        return None
    return ImplicitLabel.from_json(json.loads(raw))
