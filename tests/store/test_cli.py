"""`heshi keys …` and `heshi usage …` through Typer's CliRunner, on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from heshi.cli.main import app
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from heshi.store.ledger import LedgerWriter
from tests.store.databases import outage
from tests.store.records import record

WIDE = {"COLUMNS": "200"}


@pytest.fixture
def config(database: Database, tmp_path: Path) -> Path:
    path = tmp_path / "heshi.yaml"
    url = database.url.render_as_string(hide_password=False)
    path.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), "store": {"url": url}}))
    return path


def heshi(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=WIDE)
    return result.exit_code, result.stdout, result.stderr


def test_create_json_is_exactly_key_id_tenant(config: Path, database: Database) -> None:
    code, out, err = heshi(
        "keys",
        "create",
        "--tenant",
        "acme",
        "--name",
        "ci",
        "--models",
        "qwen-7b, auto",
        "--rpm",
        "60",
        "--tpm",
        "1000",
        "--budget-tokens",
        "50000",
        "--budget-cny",
        "12.5",
        "--expires",
        "30d",
        "--json",
        "--config",
        str(config),
    )
    assert code == 0, out
    created = json.loads(out)
    assert set(created) == {"key", "id", "tenant"}
    # a spend budget with models the config does not price: said, on stderr (not the JSON)
    assert "qwen-7b" in err and "spend budget" in err
    assert created["tenant"] == "acme" and created["key"].startswith("hs-")
    key = KeyStore(database).get(created["id"])
    assert key.models == ("qwen-7b", "auto")
    assert (key.rpm, key.tpm, key.budget_tokens) == (60, 1000, 50000)
    assert (key.budget_micro, key.budget_cny) == (12_500_000, 12.5)
    assert key.expires_at is not None
    assert abs(key.expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)


def test_create_text_shows_the_key_once_with_a_warning(config: Path) -> None:
    code, out, err = heshi(
        "keys",
        "create",
        "--tenant",
        "acme",
        "--name",
        "n",
        "--expires",
        "2099-01-01",
        "--config",
        str(config),
    )
    assert code == 0
    plaintext = next(line for line in out.splitlines() if line.startswith("hs-"))
    assert "shown only once" in err and "只显示这一次" in err

    code, listed, _ = heshi("keys", "list", "--config", str(config))
    assert code == 0
    assert plaintext[:12] in listed and plaintext not in listed
    assert "2099-01-01 00:00" in listed


def test_list_json_and_tenant_filter(config: Path, database: Database) -> None:
    store = KeyStore(database)
    plaintext, a = store.create("acme", "one", models=["qwen"])
    store.create("beta", "other")
    code, out, _ = heshi("keys", "list", "--tenant", "acme", "--json", "--config", str(config))
    assert code == 0
    [entry] = json.loads(out)
    assert entry == {
        "id": a.id,
        "tenant": "acme",
        "name": "one",
        "prefix": plaintext[:12],
        "status": "active",
        "status_reason": None,
        "models": ["qwen"],
        "rpm": None,
        "tpm": None,
        "budget_tokens": None,
        "budget_cny": None,
        "expires_at": None,
        "created_at": a.created_at.isoformat(),
        "updated_at": a.updated_at.isoformat(),
    }
    assert a.key_hash not in out and plaintext not in out
    _, everyone, _ = heshi("keys", "list", "--json", "--config", str(config))
    assert {k["tenant"] for k in json.loads(everyone)} == {"acme", "beta"}


def test_suspend_resume_revoke(config: Path, database: Database) -> None:
    _, key = KeyStore(database).create("acme", "one")
    code, out, _ = heshi(
        "keys", "suspend", key.id, "--reason", "欠费", "--json", "--config", str(config)
    )
    assert code == 0
    assert (json.loads(out)["status"], json.loads(out)["status_reason"]) == ("suspended", "欠费")
    code, out, _ = heshi("keys", "resume", key.prefix, "--config", str(config))
    assert code == 0 and "resumed" in out and key.id in out
    code, out, _ = heshi("keys", "revoke", key.id, "--json", "--config", str(config))
    assert code == 0 and json.loads(out)["status"] == "revoked"
    code, out, err = heshi("keys", "resume", key.id, "--config", str(config))
    assert code == 1 and out == ""
    assert "已被吊销" in err and "is revoked" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "revoke", "key_nope"], "no API key with id or prefix 'key_nope'"),
        (["keys", "create", "--tenant", "", "--name", "n"], "tenant must be 1–64 printable"),
        (["keys", "create", "--tenant", "a", "--name", "n", "--expires", "soon"], "--expires"),
        (["keys", "create", "--tenant", "a", "--name", "n", "--expires", "2001-01-01"], "past"),
        (["keys", "create", "--tenant", "a", "--name", "n", "--rpm", "0"], "rpm must be ≥ 1"),
        (["usage", "--tenant", "a", "--since", "last week"], "--since: cannot read"),
    ],
)
def test_errors_are_red_text_on_stderr_and_exit_1(
    config: Path, args: list[str], message: str
) -> None:
    code, out, err = heshi(*args, "--config", str(config))
    assert code == 1, out
    assert message in err
    assert out == ""


def test_database_down_is_a_clear_error(config: Path, database: Database) -> None:
    with outage(database):
        code, _, err = heshi("keys", "list", "--config", str(config))
    assert code == 1
    assert "数据库不可用" in err and "database unavailable" in err


def test_missing_config_file(tmp_path: Path) -> None:
    code, _, err = heshi("keys", "list", "--config", str(tmp_path / "nope.yaml"))
    assert code == 1 and "config file not found" in err


def test_a_config_that_is_a_directory_or_not_text_is_a_clear_error(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"store: \x93\xff\x00")
    for path, said in ((tmp_path, "is a directory"), (binary, "is not UTF-8 text")):
        code, out, err = heshi("keys", "list", "--config", str(path))
        assert code == 1 and said in err and "Traceback" not in out + err


def _ledger(database: Database, tmp_path: Path) -> tuple[datetime, str, str]:
    """Rows for acme (keys "alpha" and "bravo") and beta; returns (ts, alpha id, bravo id)."""
    store = KeyStore(database)
    alpha, bravo = store.create("acme", "alpha")[1].id, store.create("acme", "bravo")[1].id
    writer = LedgerWriter(
        database, flush_seconds=0.01, batch_rows=50, buffer_rows=1000, spool_dir=tmp_path / "s"
    )
    ts = datetime.now(UTC) - timedelta(hours=1)
    rows = [
        ("acme", "qwen-7b", alpha),
        ("acme", "qwen-7b", bravo),
        ("acme", "qwen-72b", alpha),
        ("beta", "secret-model", "key_z"),
    ]
    for n, (tenant, model, key) in enumerate(rows):
        writer.submit(record(n, ts=ts, tenant=tenant, model=model, key_id=key))
    writer.submit(record(9, ts=ts - timedelta(days=10), tenant="acme"))  # before --since 7d
    writer.start()
    assert writer.flush(10)
    writer.close()
    return ts, alpha, bravo


def test_usage_csv_json_and_table(config: Path, database: Database, tmp_path: Path) -> None:
    ts, alpha, bravo = _ledger(database, tmp_path)
    base = ["usage", "--tenant", "acme", "--since", "7d", "--config", str(config)]

    code, out, _ = heshi(*base, "--by", "model", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["model"], r["requests"], r["total_tokens"]) for r in rows] == [
        ("qwen-72b", "1", "15"),
        ("qwen-7b", "2", "30"),
    ]
    assert rows[0]["mean_ttft_ms"] == ""

    code, out, _ = heshi(*base, "--by", "day", "--json")
    assert code == 0
    [day] = json.loads(out)
    assert (day["group"], day["requests"]) == (ts.strftime("%Y-%m-%d"), 3)

    code, out, _ = heshi(*base, "--by", "key")
    assert code == 0
    assert f"{alpha} (alpha)" in out and f"{bravo} (bravo)" in out and "total / 合计" in out
    assert "key_z" not in out and "secret-model" not in out

    code, out, _ = heshi("usage", "--tenant", "nobody", "--config", str(config))
    assert code == 0 and "no usage recorded" in out

    # an 80-column terminal (governance.md's commands as typed): the label column stays
    narrow = CliRunner().invoke(app, [*base, "--by", "model"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0 and "qwen-72b" in narrow.stdout and "qwen-7b" in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert "prompt and completion left out" in narrow.stderr


def test_usage_requires_a_tenant(config: Path) -> None:
    result = CliRunner().invoke(app, ["usage", "--config", str(config)])
    assert result.exit_code == 2
    assert "--tenant" in result.stderr
