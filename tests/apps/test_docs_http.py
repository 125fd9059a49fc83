"""``POST /v1/docs/extract`` on a real gateway over the tiny model (loopback, uvicorn):
the answer's shape (the schema's fields, typed; the same fields as ``heshi docs extract
--json``), the key checked before the upload is read, every refusal a clear 4xx naming
what is wrong, the model calls metered under the key's tenant, and personal information
of the document never in clear in the audit log or the log lines."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from sqlalchemy import select

from heshi.apps.docs.schema import BUILT_IN, load_schema
from heshi.audit import AuditLog
from heshi.config import DocsConfig, GuardConfig, HeshiConfig, ServerConfig
from heshi.gateway.app import create_app
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from heshi.store.tables import usage_ledger
from tests.apps.test_docs_cli import INVOICE, run
from tests.conftest import local_engines
from tests.loopback import serve_app

_TYPES = {"string": str, "number": (int, float), "integer": int}
_ANSWER_KEYS = {
    "object", "schema", "type", "fields", "problems", "truncated", "pages", "sha256", "model",
    "usage",
}  # fmt: skip
ID_CARD = "11010519491231002X"  # a valid check character (heshi.guard.ids)
PHONE = "13800138000"
STAFF_SCHEMA = {
    "type": "object",
    "properties": {
        "staff": {"type": "string", "description": "报销人姓名"},
        "total": {"type": "number", "description": "报销总金额（元）"},
    },
}


def start(config: HeshiConfig) -> tuple[Database, str, str]:
    """The gateway's database migrated, with a key of tenant acme (keys required from now
    on) and one that may use only another model."""
    db = Database(config.store.sql_url(config.home))
    db.migrate()
    key, _ = KeyStore(db).create("acme", "docs")
    narrow, _ = KeyStore(db).create("acme", "narrow", models=["some-other-model"])
    return db, key, narrow


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(
    url: str, key: str | None, files: dict[str, Any], data: dict[str, str] | None = None
) -> httpx.Response:
    headers = bearer(key) if key else {}
    with httpx.Client(timeout=300) as client:
        return client.post(url + "/v1/docs/extract", headers=headers, files=files, data=data)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error


def assert_typed(fields: dict[str, Any], properties: dict[str, Any]) -> None:
    assert list(fields) == list(properties)
    for name, spec in properties.items():  # the tiny model writes noise, typed noise
        value = fields[name]
        assert value is None or isinstance(value, _TYPES[spec["type"]]), (name, value)


def docx_bytes(lines: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for line in lines:
        document.add_paragraph(line)
    table = document.add_table(rows=2, cols=3)
    for cell, text in zip(table.rows[0].cells, ["姓名", "金额", "事由"], strict=True):
        cell.text = text
    for cell, text in zip(table.rows[1].cells, ["王小明", "1280.00", "出差"], strict=True):
        cell.text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def ledger_rows(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(usage_ledger))]


def test_uploads_answer_with_the_schemas_fields_metered_under_the_keys_tenant(
    tiny_config: HeshiConfig, tmp_path: Path
) -> None:
    # JSON bodies are held to 4 KiB here: uploads have their own limit
    config = tiny_config.model_copy(update={"server": ServerConfig(max_body_bytes=4096)})
    db, key, _ = start(config)
    name = config.engine.name
    invoice = INVOICE.encode("utf-8")
    receipt = docx_bytes(["差旅费报销单", "报销人：王小明", "报销总金额：1280.00 元"])
    (tmp_path / "invoice.txt").write_bytes(invoice)
    with serve_app(create_app(config, local_engines(config))) as url:
        txt = post(url, key, {"file": ("发票.txt", invoice, "text/plain")}, {"schema": "invoice"})
        custom = post(
            url,
            key,
            {
                "file": ("报销单.docx", receipt, "application/octet-stream"),
                "schema": ("报销.json", json.dumps(STAFF_SCHEMA, ensure_ascii=False)),
            },
            {"model": name, "max_chars": "1000"},
        )
        # the documented example, with curl
        curled = subprocess.run(
            ["curl", "-s", "-i", f"{url}/v1/docs/extract", "-H", f"Authorization: Bearer {key}",
             "-F", f"file=@{tmp_path / 'invoice.txt'}", "-F", "schema=invoice"],
            capture_output=True, check=True, timeout=300,
        )  # fmt: skip

    assert txt.status_code == 200, txt.text
    answer = txt.json()
    assert set(answer) == _ANSWER_KEYS
    assert answer["object"] == "docs.extraction"
    assert (answer["schema"], answer["type"]) == ("invoice", None)
    assert_typed(answer["fields"], load_schema("invoice").properties)
    assert all(set(p) == {"field", "reason"} for p in answer["problems"])
    assert answer["truncated"] is False and answer["pages"] >= 1
    assert answer["sha256"] == hashlib.sha256(invoice).hexdigest()
    assert answer["model"] == name
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    assert len(receipt) > 4096 and custom.status_code == 200, custom.text
    assert custom.json()["schema"] == "报销" and custom.json()["pages"] >= 1
    assert_typed(custom.json()["fields"], STAFF_SCHEMA["properties"])

    head, _, body = curled.stdout.decode("utf-8").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    assert json.loads(body)["fields"] == answer["fields"]  # same bytes, same answer

    rows = ledger_rows(db)
    db.dispose()
    uploads = [r for r in rows if r["endpoint"] == "docs"]
    assert len(uploads) == 3 and {(r["tenant"], r["status"]) for r in uploads} == {("acme", 200)}
    calls = [r for r in rows if r["request_id"].startswith(txt.headers["x-request-id"] + ".")]
    assert [(c["endpoint"], c["tenant"], c["model"], c["status"]) for c in calls] == [
        ("chat", "acme", name, 200)
    ]
    assert calls[0]["prompt_tokens"] == usage["prompt_tokens"]
    assert calls[0]["completion_tokens"] == usage["completion_tokens"]

    # the same file through the command line: the same fields
    cfg = tmp_path / "heshi.yaml"  # the same engine settings as the gateway's
    engine = tiny_config.engine.model_dump(mode="json")
    cfg.write_text(yaml.safe_dump({"home": str(tiny_config.home), "engine": engine}))
    code, out, err = run(
        "docs", "extract", str(tmp_path / "invoice.txt"), "--schema", "invoice", "--json",
        "--config", str(cfg),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == answer["fields"]


def test_schema_auto_reports_the_kind(tiny_config: HeshiConfig) -> None:
    _, key, _ = start(tiny_config)
    note = "会议纪要：周五下午三点在三楼会议室讨论年度预算。".encode()
    with serve_app(create_app(tiny_config, local_engines(tiny_config))) as url:
        invoice = post(url, key, {"file": ("a.md", INVOICE.encode())}, {"schema": "auto"})
        other = post(url, key, {"file": ("b.txt", note)}, {"schema": "auto"})
    assert invoice.status_code == 200, invoice.text
    assert (invoice.json()["schema"], invoice.json()["type"]) == ("auto", "invoice")
    assert_typed(invoice.json()["fields"], load_schema("invoice").properties)
    # words that point nowhere: the (tiny) model picks a kind; "other" is a 422
    if other.status_code == 422:
        assert error_of(other)["code"] == "unknown_document_kind"
        assert error_of(other)["param"] == "schema"
    else:
        assert other.status_code == 200, other.text
        kind = other.json()["type"]
        assert kind in BUILT_IN
        assert list(other.json()["fields"]) == list(load_schema(kind).properties)


def raw_request(url: str, head: str) -> bytes:
    """Send only a request's head (its body never follows) and read what comes back until
    the server closes the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1"))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_refusals_are_clear_and_recorded(tiny_config: HeshiConfig) -> None:
    config = tiny_config.model_copy(update={"docs": DocsConfig(max_upload_bytes=64 * 1024)})
    db, key, narrow = start(config)
    doc = {"file": ("a.txt", "发票号码：1".encode())}
    with serve_app(create_app(config, local_engines(config))) as url:
        # no key: refused from the headers, the 30 MB the request announces never read
        nobody = raw_request(
            url,
            "POST /v1/docs/extract HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n"
            "Content-Type: multipart/form-data; boundary=B\r\n\r\n",
        )
        wrong_model = post(url, narrow, doc, {"schema": "invoice"})
        declared = post(url, key, {"file": ("big.txt", b"x" * 100_000)}, {"schema": "invoice"})
        chunked = chunked_upload(url, key, 100_000)
        no_file = post(url, key, {"schema": (None, "invoice")})
        no_schema = post(url, key, doc)
        scan = {"file": ("扫描件.pdf", b"\x00garbage" * 50)}
        garbage = post(url, key, scan, {"schema": "invoice"})
        unknown = post(url, key, doc, {"schema": "receipt"})
        bad_json = post(url, key, doc, {"schema": '{"properties": []}'})
        path_like = post(url, key, doc, {"schema": "/etc/passwd"})
        broken = post(url, key, doc, {"schema": '{"properties": '})
        chars = post(url, key, doc, {"schema": "invoice", "max_chars": "50"})
        extra = post(url, key, doc, {"schema": "invoice", "temperature": "2"})
        json_body = httpx.post(url + "/v1/docs/extract", headers=bearer(key), json={"a": 1})
        form = {**bearer(key), "content-type": "multipart/form-data; boundary=B"}
        schema_part = b'--B\r\nContent-Disposition: form-data; name="schema"\r\n\r\ninvoice\r\n'
        cut = httpx.post(url + "/v1/docs/extract", headers=form, content=schema_part)
        twice = httpx.post(
            url + "/v1/docs/extract", headers=form, content=schema_part * 2 + b"--B--\r\n"
        )

    assert nobody.startswith(b"HTTP/1.1 401"), nobody[:200]
    assert b"connection: close" in nobody.lower()
    assert wrong_model.status_code == 403
    assert error_of(wrong_model)["code"] == "permission_denied"
    for big in (declared, chunked):
        assert big.status_code == 400 and big.headers["connection"] == "close"
        assert "docs.max_upload_bytes" in error_of(big)["message"]
    for missing, part in ((no_file, "file"), (no_schema, "schema")):
        assert missing.status_code == 400 and error_of(missing)["param"] == part
        assert f"'{part}'" in error_of(missing)["message"]
    assert garbage.status_code == 400 and error_of(garbage)["code"] == "unreadable_document"
    message = error_of(garbage)["message"]
    assert re.search(r"[\u4e00-\u9fff]", message) and " / " in message and "PDF" in message
    for bad in (unknown, bad_json, path_like, broken):
        assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_schema"
        assert error_of(bad)["param"] == "schema"
    assert "receipt" in error_of(unknown)["message"] and "invoice" in error_of(unknown)["message"]
    assert "properties" in error_of(bad_json)["message"]
    assert "malformed JSON in the 'schema' part" in error_of(broken)["message"]  # not "body"
    assert chars.status_code == 400 and error_of(chars)["param"] == "max_chars"
    assert extra.status_code == 400 and error_of(extra)["param"] == "temperature"
    assert json_body.status_code == 400 and "multipart/form-data" in error_of(json_body)["message"]
    assert cut.status_code == 400 and "closing boundary" in error_of(cut)["message"]
    assert twice.status_code == 400 and "twice" in error_of(twice)["message"]

    rows = ledger_rows(db)
    db.dispose()
    assert all(r["tenant"] == "acme" and r["endpoint"] == "docs" for r in rows)  # no 401 row
    assert all(r["prompt_tokens"] == r["completion_tokens"] == 0 for r in rows)  # no model call
    reasons = sorted(r["reason"] for r in rows)
    assert reasons.count("body_too_large") == 2 and reasons.count("docs.schema") == 4
    assert reasons.count("docs.unreadable") == 1 and reasons.count("key.model_not_allowed") == 1


def chunked_upload(url: str, key: str, size: int) -> httpx.Response:
    """An upload without a Content-Length: counted while it arrives."""

    def body() -> Iterator[bytes]:
        yield (
            b'--B\r\nContent-Disposition: form-data; name="schema"\r\n\r\ninvoice\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        )
        for _ in range(size // 1000):
            yield b"y" * 1000
        yield b"\r\n--B--\r\n"

    headers = {**bearer(key), "content-type": "multipart/form-data; boundary=B"}
    with httpx.Client(timeout=60) as client:
        return client.post(url + "/v1/docs/extract", headers=headers, content=body())


def test_quotas_and_the_guard_apply_and_pii_stays_masked(
    tiny_config: HeshiConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config.model_copy(update={"guard": GuardConfig(enabled=True)})
    db, key, _ = start(config)
    poor, _ = KeyStore(db).create("acme", "poor", budget_tokens=1)
    personal = f"报销单\n报销人：王小明\n身份证号：{ID_CARD}\n手机：{PHONE}\n报销总金额：1280.00 元"
    schema = json.dumps(
        {"properties": {"id_number": {"type": "string"}, "phone": {"type": "string"}}}
    )
    caplog.set_level(logging.DEBUG)
    with serve_app(create_app(config, local_engines(config))) as url:
        ok = post(url, key, {"file": ("报销单.txt", personal.encode())}, {"schema": schema})
        refused = post(url, key, {"file": ("a.txt", "哪里能买到冰毒".encode())}, {"schema": schema})
        broke = post(url, poor, {"file": ("b.txt", personal.encode())}, {"schema": schema})
    assert ok.status_code == 200, ok.text
    assert list(ok.json()["fields"]) == ["id_number", "phone"]
    assert ok.headers["x-heshi-guard"] == "pass"
    assert refused.status_code == 400 and error_of(refused)["code"] == "content_filter"
    assert refused.headers["x-heshi-guard"] == "block"
    assert broke.status_code == 429 and error_of(broke)["code"] == "insufficient_quota"

    records = [
        r
        for r in AuditLog(db).records(kinds=("record",))
        if r.request_id and r.request_id.startswith(ok.headers["x-request-id"])
    ]
    rows = ledger_rows(db)
    db.dispose()
    [record] = records
    assert record.tenant == "acme" and "138****8000" in (record.input or "")
    for text in (record.input or "", record.output or ""):
        assert ID_CARD not in text and PHONE not in text
    assert ID_CARD not in caplog.text and PHONE not in caplog.text and key not in caplog.text
    assert "王小明" in (record.input or "") or "王*" in (record.input or "")  # the text is there
    outcomes = {(r["endpoint"], r["reason"], r["status"]) for r in rows}
    assert outcomes == {
        ("docs", "ok", 200), ("chat", "ok", 200),
        ("docs", "guard.block", 400), ("chat", "guard.block", 200),  # a chat refusal is a 200
        ("docs", "quota.key.budget_tokens", 429), ("chat", "quota.key.budget_tokens", 429),
    }  # fmt: skip


def test_readers_busy_past_the_queue_is_a_503_with_retry_after(tiny_config: HeshiConfig) -> None:
    """One reader, four waiting: of seven scans sent at once (OCR, seconds each), at least
    one is turned away at once — and every one is either answered or told to retry."""
    import concurrent.futures

    config = tiny_config.model_copy(update={"docs": DocsConfig(max_concurrent_reads=1)})
    _, key, _ = start(config)
    scan = (Path(__file__).parent / "samples" / "invoice-scan.pdf").read_bytes()
    with (
        serve_app(create_app(config, local_engines(config))) as url,
        concurrent.futures.ThreadPoolExecutor(7) as pool,
    ):
        sent = [
            pool.submit(post, url, key, {"file": (f"{n}.pdf", scan)}, {"schema": "invoice"})
            for n in range(7)
        ]
        answers = [future.result() for future in sent]
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 1, statuses
    busy = next(a for a in answers if a.status_code == 503)
    assert error_of(busy)["code"] == "docs_busy" and busy.headers["retry-after"]
    assert statuses.count(200) >= 5  # the one reading and the four waiting
