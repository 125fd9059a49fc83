"""Document jobs (``/v1/docs/jobs``) on a real gateway over a fake upstream: files queued in
the store and extracted one after another by the job's key, progress and results,
tenants kept apart, cancellation, files that outlive the gateway that queued them, and
the admin API's view."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from heshi.config import AliasConfig
from heshi.store.db import Database
from heshi.store.docjobs import DocJobStore
from heshi.store.keys import KeyStore
from heshi.store.tables import docs_job_files
from tests.admin.test_admin_docs import run_curl
from tests.conftest import ADMIN
from tests.fakes.upstream import UPSTREAM_MODEL, FakeUpstream
from tests.governance.conftest import (
    ALIAS,
    GatewayFactory,
    bearer,
    gateway_config,
    home,
    keys,
    ledger_rows,
    open_database,
    pg_url,
    start_gateway,
    store_db,
    upstream,
)

__all__ = [
    "home",
    "keys",
    "open_database",
    "pg_url",
    "start_gateway",
    "store_db",
    "upstream",
]  # fixtures used here
SAMPLES = Path(__file__).parent / "samples"
STALE = 120.0
INVOICE = "# 电子发票\n发票号码：25312000000123456789\n价税合计：¥12800.00\n"
FIELDS = {"invoice_number": "25312000000123456789", "total_amount": 12800.0, "buyer_name": "-1"}


def wait_finished(client: httpx.Client, url: str, key: str, files: int) -> dict[str, Any]:
    """The job once ``files`` of its files are finished (fails after 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(url, headers=bearer(key)).json()
        if job["finished"] >= files:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job not finished: {job}")


def test_a_job_extracts_its_files_in_order_for_its_key_and_tenant(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    upstream.state.reply = json.dumps(FIELDS)
    mine, key = keys.create("acme", "docs")
    other, _ = keys.create("globex", "docs")
    gw = start_gateway(gateway_config(home, upstream.base_url))
    base = gw.url + "/v1/docs/jobs"
    with httpx.Client(timeout=30) as client:
        r = client.post(base, json={"schema": "invoice", "model": ALIAS, "name": "十一月发票"},
                        headers=bearer(mine))  # fmt: skip
        assert r.status_code == 201, r.text
        job = r.json()
        url = f"{base}/{job['id']}"
        uploads = [
            ("发票1.md", INVOICE.encode(), "text/markdown"),
            ("空白.txt", b"", "text/plain"),
            ("发票2.md", INVOICE.encode(), "text/markdown"),
        ]
        for name, data, kind in uploads:
            queued = client.post(url + "/files", files={"file": (name, data, kind)},
                                 headers=bearer(mine))  # fmt: skip
            assert queued.status_code == 202 and queued.json()["status"] in ("queued", "running")
        done = wait_finished(client, url, mine, 3)
        assert [f["file"] for f in done["data"]] == ["发票1.md", "空白.txt", "发票2.md"]
        assert [f["status"] for f in done["data"]] == ["done", "failed", "done"]
        assert done["counts"]["done"] == 2 and done["counts"]["failed"] == 1
        first = done["data"][0]
        assert (
            first["type"] == "invoice"
            and first["fields"]["invoice_number"] == FIELDS["invoice_number"]
        )
        assert "no text" in done["data"][1]["error"]
        # another tenant's key does not see it, neither listed nor by id
        assert client.get(url, headers=bearer(other)).status_code == 404
        assert client.get(base, headers=bearer(other)).json()["data"] == []
        assert [j["id"] for j in client.get(base, headers=bearer(mine)).json()["data"]] == [
            job["id"]
        ]
        table = client.get(url + "/results.csv", headers=bearer(mine))
        rows = list(csv.DictReader(io.StringIO(table.text.lstrip("\ufeff"))))
        assert [r["status"] for r in rows] == ["done", "failed", "done"]
        assert rows[0]["total_amount"] == "12800.0" and rows[0]["buyer_name"] == "'-1"
        admin = client.get(gw.url + f"/admin/v1/docs/jobs/{job['id']}", headers=ADMIN).json()
        assert admin["tenant"] == "acme" and len(admin["data"]) == 3
    gw.flush()
    rows = [r for r in ledger_rows(store_db) if r["key_id"] == key.id]
    assert sum(1 for r in rows if r["endpoint"] == "docs") == 3  # one per file, as extract
    assert sum(1 for r in rows if r["endpoint"] == "chat" and r["status"] == 200) == 2
    with store_db.read() as conn:  # the bytes are gone once each file is done
        left = conn.execute(docs_job_files.select().where(docs_job_files.c.data.is_not(None)))
        assert left.first() is None


def test_cancel_stops_the_waiting_files_and_bad_requests_are_refused(
    upstream: FakeUpstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    upstream.state.reply = json.dumps(FIELDS)
    upstream.state.hold = True  # the first file's extraction waits
    mine, _ = keys.create("acme", "docs")
    gw = start_gateway(gateway_config(home, upstream.base_url))
    base = gw.url + "/v1/docs/jobs"
    with httpx.Client(timeout=30) as client:
        assert client.post(base, json={"schema": "nope"}, headers=bearer(mine)).status_code == 400
        assert client.post(base, json={"x": 1}, headers=bearer(mine)).status_code == 400
        assert client.post(base, json={"model": "kb:x"}, headers=bearer(mine)).status_code in (
            400, 404,
        )  # fmt: skip
        assert client.post(base, json={"schema": "invoice", "model": ALIAS}).status_code == 401
        job = client.post(base, json={"schema": "invoice", "model": ALIAS}, headers=bearer(mine))
        url = f"{base}/{job.json()['id']}"
        for i in range(3):
            file = {"file": (f"{i}.md", INVOICE.encode(), "text/markdown")}
            assert client.post(url + "/files", files=file, headers=bearer(mine)).status_code == 202
        deadline = time.monotonic() + 30
        while upstream.state.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cancelled = client.post(url + "/cancel", headers=bearer(mine)).json()
        assert cancelled["status"] == "cancelled" and cancelled["cancelled_files"] == 2
        late = client.post(url + "/files", files={"file": ("x.md", b"x", "text/markdown")},
                           headers=bearer(mine))  # fmt: skip
        assert late.status_code == 409
        upstream.state.release.set()
        done = wait_finished(client, url, mine, 3)
        assert [f["status"] for f in done["data"]] == ["done", "cancelled", "cancelled"]


def _invoice_job(
    upstream: FakeUpstream, keys: KeyStore, store_db: Database
) -> tuple[str, Any, DocJobStore, Any]:
    """An upstream answering the invoice fields, a key of tenant acme, and an empty
    invoice job of that key in the store (the raw key, the key, the store, the job)."""
    upstream.state.reply = json.dumps(FIELDS)
    mine, key = keys.create("acme", "docs")
    jobs = DocJobStore(store_db)
    return mine, key, jobs, jobs.create("acme", key.id, "", "invoice", ALIAS)


def test_queued_and_abandoned_files_are_extracted_by_the_next_gateway(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    mine, key, jobs, job = _invoice_job(upstream, keys, store_db)
    waiting = jobs.add_file(job, "a.md", INVOICE.encode(), key.id)  # before any gateway ran
    dropped = jobs.add_file(job, "b.md", INVOICE.encode(), key.id)
    with store_db.begin() as conn:  # taken by a replica that died 20 minutes ago
        conn.execute(
            update(docs_job_files)
            .where(docs_job_files.c.id == dropped.id)
            .values(
                status="running",
                claim="dead",
                attempts=1,
                started_at=datetime.now(UTC) - timedelta(minutes=20),
            )
        )
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=30) as client:
        done = wait_finished(client, f"{gw.url}/v1/docs/jobs/{job.id}", mine, 2)
    assert {f["id"]: f["status"] for f in done["data"]} == {waiting.id: "done", dropped.id: "done"}


def test_the_curl_lines_of_the_docs_work_in_order(
    upstream: FakeUpstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    doc = (Path(__file__).parents[2] / "docs" / "docs.md").read_text("utf-8")
    section = doc[doc.index("## HTTP: document jobs") :]
    lines = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", section.split("\n## ")[0], re.S)
        for line in block.splitlines()
        if line.strip().startswith("curl ")
    ]
    assert len(lines) == 4
    upstream.state.reply = json.dumps(FIELDS)
    plaintext, _ = keys.create("acme", "docs")
    shutil.copy(SAMPLES / "invoice-scan.pdf", tmp_path / "invoice.pdf")
    config = gateway_config(home, upstream.base_url)
    # the docs' default model, the embedded engine's name, served here by the fake upstream
    default = AliasConfig(backend="up", model=UPSTREAM_MODEL)
    config = config.model_copy(update={"aliases": {**config.aliases, config.engine.name: default}})
    gw = start_gateway(config)
    env = {"KEY": plaintext}
    for line in lines:
        r = run_curl(line, gw.url, env, tmp_path)
        assert r.is_success, (line, r.status_code, r.text)
        if "JOB" not in env:
            env["JOB"] = r.json()["id"]


def test_files_are_charged_to_their_uploader_and_a_rate_limit_delays_not_fails(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    upstream.state.reply = json.dumps(FIELDS)
    owner, _ = keys.create("acme", "owner")
    narrow, _ = keys.create("acme", "narrow", models=["qwen-max"])  # not allowed ALIAS
    slow, slow_key = keys.create("acme", "slow", rpm=1)
    gw = start_gateway(gateway_config(home, upstream.base_url))
    base = gw.url + "/v1/docs/jobs"
    with httpx.Client(timeout=30) as client:
        job = client.post(base, json={"schema": "invoice", "model": ALIAS}, headers=bearer(owner))
        url = f"{base}/{job.json()['id']}"
        file = {"file": ("a.md", INVOICE.encode(), "text/markdown")}
        # a key of the tenant may not smuggle files into a job of a model it may not use
        assert client.post(url + "/files", files=file, headers=bearer(narrow)).status_code == 403
        odd = {"file": ("a.xyz", b"x", "application/octet-stream")}  # refused at once
        assert client.post(url + "/files", files=odd, headers=bearer(slow)).status_code == 400
        bad = {"file": ("a\u202etxt.md", INVOICE.encode(), "text/markdown")}
        assert client.post(url + "/files", files=bad, headers=bearer(slow)).status_code == 400
        long = {"file": ("x" * 300, INVOICE.encode(), "text/markdown")}  # type from the header
        queued = client.post(url + "/files", files=long, headers=bearer(slow)).json()
        assert len(queued["file"]) == 200 and queued["file"].endswith(".md")
        client.post(url + "/files", files=file, headers=bearer(slow))
        # rpm 1: the second file's call is refused for a minute; it waits, it does not fail
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            files = client.get(url, headers=bearer(owner)).json()["data"]
            if files[0]["status"] == "done" and files[1]["status"] == "queued":
                break
            time.sleep(0.1)
        assert [f["status"] for f in files] == ["done", "queued"], files
    gw.flush()
    charged = {r["key_id"] for r in ledger_rows(store_db) if r["endpoint"] == "chat"}
    assert charged == {slow_key.id}  # the uploader's key, not the job's creator's


def test_a_store_outage_does_not_stop_the_worker_and_retries_keep_their_ledger_rows(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    mine, key, jobs, job = _invoice_job(upstream, keys, store_db)
    first = jobs.add_file(job, "a.md", INVOICE.encode(), key.id)
    with store_db.begin() as conn:  # attempt 1 died half-way: it wrote its ledger row
        conn.execute(
            update(docs_job_files)
            .where(docs_job_files.c.id == first.id)
            .values(status="running", claim="dead", attempts=1,
                    started_at=datetime.now(UTC) - timedelta(minutes=20))
        )  # fmt: skip
    gw = start_gateway(gateway_config(home, upstream.base_url))
    url = f"{gw.url}/v1/docs/jobs/{job.id}"
    with httpx.Client(timeout=30) as client:
        wait_finished(client, url, mine, 1)
        # the store goes away while a file is extracted, longer than its busy timeout: the
        # outcome is kept until it can be written, and the worker carries on
        upstream.state.hold = True
        upstream.state.release.clear()
        file = {"file": ("b.md", INVOICE.encode(), "text/markdown")}
        assert client.post(url + "/files", files=file, headers=bearer(mine)).status_code == 202
        deadline = time.monotonic() + 30
        while upstream.state.calls < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        locker = store_db.engine.raw_connection()
        locker.execute("BEGIN EXCLUSIVE")
        upstream.state.release.set()
        time.sleep(7)  # past the 5 s busy timeout: the outcome's first writes fail
        locker.rollback()
        locker.close()
        upstream.state.hold = False
        done = wait_finished(client, url, mine, 2)
        third = {"file": ("c.md", INVOICE.encode(), "text/markdown")}
        assert client.post(url + "/files", files=third, headers=bearer(mine)).status_code == 202
        done = wait_finished(client, url, mine, 3)
    assert [f["status"] for f in done["data"]] == ["done", "done", "done"]
    gw.flush()
    ids = {r["request_id"] for r in ledger_rows(store_db) if r["endpoint"] == "docs"}
    assert f"req_{first.id}.a2" in ids  # the retry's own row, not lost to the first's id


def test_jobs_take_turns_so_one_long_queue_does_not_hold_up_another(store_db: Database) -> None:
    jobs = DocJobStore(store_db)
    big = jobs.create("acme", None, "", "invoice", ALIAS)
    for i in range(5):
        jobs.add_file(big, f"{i}.md", b"x", None)
    small = jobs.create("globex", None, "", "invoice", ALIAS)
    jobs.add_file(small, "only.md", b"x", None)
    order = []
    while (taken := jobs.take(STALE)) is not None:
        job, file = taken
        order.append(job.id)
        assert jobs.finish(file, "done")
        assert not jobs.finish(file, "done")  # the claim is spent: a second finish is refused
    assert len(order) == 6 and small.id in order[:2]  # not after the five of the big job
    jobs.cancel(big)
    assert jobs.add_file(small, "later.md", b"x", None).seq == 2


def test_parallel_uploads_to_one_job_on_postgresql_all_get_their_own_number(pg_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    db = Database(pg_url)
    try:
        db.migrate()
        jobs = DocJobStore(db)
        job = jobs.create("acme", None, "", "invoice", ALIAS)
        with ThreadPoolExecutor(16) as pool:
            added = list(pool.map(lambda i: jobs.add_file(job, f"{i}.md", b"x", None), range(48)))
        assert sorted(f.seq for f in added) == list(range(1, 49))
        assert jobs.get(job.id).counts == {"queued": 48}
    finally:
        db.dispose()
