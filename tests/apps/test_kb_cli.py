"""`heshi kb create|ingest|list|show|search|rm` through Typer's CliRunner, on the real
store and the built-in embedder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from heshi.cli.main import app

WIDE = {"COLUMNS": "200"}
WARRANTY = "# 暖居空调\n## 保修\n整机保修 3 年，压缩机保修 10 年。\n"
REFUND = "# 退货政策\n## 七天无理由\n签收后 7 天内可申请退货，运费由买家承担。\n"
HOTLINE = "问题,答案\n客服电话是多少？,400-820-1234，每天 8:00-22:00。\n"


def heshi(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--config", str(config)], env=WIDE)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "heshi.yaml"
    path.write_text(yaml.safe_dump({"home": str(tmp_path / "home")}))
    return path


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "暖居空调手册.md").write_text(WARRANTY, "utf-8")
    (root / "sub" / "退货政策.md").write_text(REFUND, "utf-8")
    (root / "客服.csv").write_text(HOTLINE, "utf-8")
    (root / "坏文件.docx").write_bytes(b"not a zip")
    (root / ".hidden.md").write_text("# 不应导入\n秘密", "utf-8")
    (root / "notes.bin").write_bytes(b"\0\1")
    return root


def test_ingest_a_directory_reports_a_bad_file_and_keeps_the_rest(config: Path, docs: Path) -> None:
    assert heshi(config, "kb", "create", "shop", "--words", "暖居")[0] == 0
    code, out, err = heshi(config, "kb", "ingest", str(docs), "--kb", "shop")
    assert code == 1  # one file failed: the exit status says so
    assert "坏文件.docx" in err and "DOCX" in err
    # a file no reader takes is said, not silently passed over, and is not a failure
    assert "notes.bin  不支持的文件类型 / unsupported file type .bin" in err
    assert ".hidden.md" not in err
    assert "3 新增 / added" in out and "1 失败 / failed" in out and "3 documents" in out
    code, out, _ = heshi(config, "kb", "show", "shop", "--json")
    shown = json.loads(out)
    assert sorted(d["doc"] for d in shown["documents"]) == [
        "客服.csv",
        "暖居空调手册.md",
        "退货政策.md",
    ]
    assert shown["user_words"] == ["暖居"]

    code, out, _ = heshi(config, "kb", "search", "保修多久", "--kb", "shop", "--json", "--k", "1")
    assert code == 0
    [hit] = json.loads(out)
    assert hit["doc"] == "暖居空调手册.md" and "3 年" in hit["text"]
    assert hit["headings"] == ["暖居空调", "保修"]
    code, out, _ = heshi(
        config, "kb", "search", "kefu dianhua", "--kb", "shop", "--json", "--method", "bm25"
    )
    assert json.loads(out)[0]["doc"] == "客服.csv"  # pinyin meets the words


def test_reingest_skips_unchanged_files_and_replaces_changed_ones(config: Path, docs: Path) -> None:
    heshi(config, "kb", "create", "shop")
    (docs / "坏文件.docx").unlink()
    assert heshi(config, "kb", "ingest", str(docs), "--kb", "shop")[0] == 0
    (docs / "暖居空调手册.md").write_text(
        WARRANTY.replace("3 年", "5 年") + "\n## 安装\n免费安装。\n", "utf-8"
    )
    code, out, err = heshi(config, "kb", "ingest", str(docs), "--kb", "shop")
    assert code == 0, err
    assert "1 更新 / replaced" in out and "2 未变 / unchanged" in out and "3 documents" in out
    code, out, _ = heshi(config, "kb", "search", "保修几年", "--kb", "shop", "--json")
    texts = [h["text"] for h in json.loads(out)]
    assert any("5 年" in t for t in texts) and not any("3 年" in t for t in texts)


def test_list_rm_and_errors_name_the_problem(config: Path, docs: Path) -> None:
    assert heshi(config, "kb", "create", "shop", "--tenant", "acme")[0] == 0
    code, _, err = heshi(config, "kb", "create", "shop")
    assert code == 1 and "already exists" in err
    code, _, err = heshi(config, "kb", "create", "bad name!")
    assert code == 1 and "invalid knowledge-base name" in err
    code, _, err = heshi(config, "kb", "ingest", str(docs), "--kb", "nope")
    assert code == 1 and "no knowledge base named 'nope'" in err
    code, out, _ = heshi(config, "kb", "list", "--json")
    assert json.loads(out) == [
        {"name": "shop", "tenant": "acme", "documents": 0, "chunks": 0, "revision": 0}
    ]
    assert heshi(config, "kb", "rm", "shop", "--yes")[0] == 0
    code, out, _ = heshi(config, "kb", "list", "--json")
    assert json.loads(out) == []


def test_every_change_is_an_audit_record_and_a_handoff_is_taken_then_closed(
    config: Path, docs: Path
) -> None:
    from heshi.apps.kb.sessions import Session, SessionStore
    from heshi.config import load_config
    from heshi.store.db import Database

    assert heshi(config, "kb", "create", "shop")[0] == 0
    assert heshi(config, "kb", "ingest", str(docs / "sub"), "--kb", "shop")[0] == 0
    assert heshi(config, "kb", "ingest", str(docs / "sub"), "--kb", "shop")[0] == 0  # unchanged
    cfg = load_config(config)
    db = Database(cfg.store.sql_url(cfg.home))
    sessions = SessionStore(db)
    session = Session(id="s-1", kb="shop", tenant=None)
    session.messages = [{"role": "user", "content": "转人工"}]
    sessions.save(session)
    opened = sessions.hand_off(session, "asked", None)
    code, out, _ = heshi(config, "kb", "handoffs")
    assert code == 0 and opened.id in out and "open" in out
    # a unique start of the id will do, as the table may show no more of it
    code, out, _ = heshi(config, "kb", "handoff", opened.id[:12], "--status", "taken", "--json")
    assert code == 0 and json.loads(out)["status"] == "taken"
    code, _, err = heshi(config, "kb", "handoff", opened.id, "--status", "taken")
    assert code != 0 and "cannot become taken" in err
    assert heshi(config, "kb", "handoff", opened.id, "--status", "closed")[0] == 0
    assert heshi(config, "kb", "rm", "shop", "--yes")[0] == 0
    db.dispose()
    code, out, _ = heshi(config, "audit", "export", "--format", "jsonl")
    assert code == 0, out
    actions = [
        (json.loads(r["input"])["admin_action"], json.loads(r["output"])["result"])
        for r in map(json.loads, out.splitlines())
        if "admin_action" in (r.get("input") or "")
    ]
    assert actions == [
        ("kb.create", "ok"),
        ("kb.ingest", "ok"),
        ("kb.ingest", "unchanged"),
        ("kb.handoff", "ok"),
        ("kb.handoff", "refused"),
        ("kb.handoff", "ok"),
        ("kb.remove", "ok"),
    ]
    code, out, _ = heshi(config, "audit", "verify")
    assert code == 0, out


def test_a_named_pipe_or_missing_file_is_reported_not_waited_on(
    config: Path, docs: Path, tmp_path: Path
) -> None:
    """Named on the command line, a pipe was read until someone wrote to it: forever."""
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)
    assert heshi(config, "kb", "create", "shop")[0] == 0
    code, out, err = heshi(
        config, "kb", "ingest", str(pipe), str(tmp_path / "缺失.md"),
        str(docs / "暖居空调手册.md"), "--kb", "shop",
    )  # fmt: skip
    assert code == 1 and "not a regular file" in err and "1 新增 / added" in out
    assert "缺失.md" in err


def test_nothing_to_read_empty_questions_and_unknown_names_are_said(
    config: Path, docs: Path, tmp_path: Path
) -> None:
    """A newcomer's mistakes each get a line that says what happened, and exit 1."""
    assert heshi(config, "kb", "create", "shop")[0] == 0
    (docs / "旧手册.md").symlink_to(tmp_path / "已删除.md")  # a link to nothing
    (docs / "空白.txt").write_text("  \n", "utf-8")
    code, out, err = heshi(config, "kb", "ingest", str(docs), "--kb", "shop")
    assert code == 1 and "broken link: 旧手册.md" in err
    assert "no text in the file" in err and "OCR" not in err  # OCR never reads a .txt
    assert "3 新增 / added" in out and "3 失败 / failed" in out

    empty = tmp_path / "空目录"
    empty.mkdir()
    code, out, err = heshi(config, "kb", "ingest", str(empty), "--kb", "shop")
    assert code == 1 and "no file to work on" in err and out == ""
    code, out, err = heshi(config, "kb", "ingest", str(tmp_path / "缺失"), "--kb", "shop")
    assert code == 1 and "not found" in err and out == ""  # no summary of nothing

    code, out, err = heshi(config, "kb", "search", "  ", "--kb", "shop")
    assert code == 1 and "the question is empty" in err and out == ""
    code, out, err = heshi(config, "kb", "ask", "", "--kb", "shop")
    assert code == 1 and "the question is empty" in err
    assert heshi(config, "kb", "create", "new")[0] == 0
    code, out, err = heshi(config, "kb", "search", "保修", "--kb", "new")
    assert code == 0 and out == "" and "new holds no documents yet" in err
    code, out, err = heshi(config, "kb", "search", "qqqq", "--kb", "shop", "--method", "bm25")
    assert code == 0 and "nothing found" in err

    code, _, err = heshi(config, "kb", "handoffs", "--kb", "nosuch")
    assert code == 1 and "no knowledge base named 'nosuch'" in err
    assert heshi(config, "kb", "handoffs", "--kb", "shop")[0] == 0  # a base with none

    code, _, err = heshi(config, "kb", "create", "typo", "--tenant", "acmee")
    assert code == 0 and "no key of tenant 'acmee' exists" in err
    assert heshi(config, "keys", "create", "--tenant", "acme", "--name", "bot")[0] == 0
    code, _, err = heshi(config, "kb", "create", "ok", "--tenant", "acme")
    assert code == 0 and "no key of tenant" not in err
