"""``heshi kb``: knowledge bases — create, ingest, list, show, search, remove, handoffs.

Changes (create, ingest, rm, handoff) go through the audited service the admin API uses
(:class:`heshi.admin.kbservice.KnowledgeAdmin`), as ``cli:<login name>``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from heshi.admin.kbservice import KnowledgeAdmin
from heshi.apps.kb.index import E5Vectors, KnowledgeIndex
from heshi.apps.kb.ingest import FileResult, ingest
from heshi.apps.kb.store import KnowledgeBaseStore
from heshi.cli.admin import admin_service, cli_actor
from heshi.cli.chat import ApiKeyOption
from heshi.cli.database import ConfigOption, open_database
from heshi.cli.kb_eval import eval_command
from heshi.cli.reporting import JsonOption, UrlOption, counting, files_below, reporting_errors
from heshi.config import load_config

app = typer.Typer(
    help="知识库：建库、导入文档、检索。/ Knowledge bases: create, ingest documents, search.",
    no_args_is_help=True,
    add_completion=False,
)

KbOption = Annotated[str, typer.Option("--kb", help="知识库名称 / Knowledge base.")]
NameArgument = Annotated[str, typer.Argument(help="知识库名称 / Knowledge-base name.")]
_STATUS = {
    "added": "新增 / added",
    "replaced": "已更新 / replaced",
    "unchanged": "未变 / unchanged",
    "failed": "失败 / failed",
}


@app.command("create", help="新建知识库。/ Create a knowledge base.")
def create(
    name: NameArgument,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            help="所属租户（默认所有租户可用）/ Owning tenant (default: all).",
            show_default=False,
        ),
    ] = None,
    words: Annotated[
        str | None,
        typer.Option(
            "--words",
            help="用户词典，逗号分隔 / User dictionary, comma-separated.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    with reporting_errors():
        settings = load_config(config)
        with admin_service(settings) as service:
            user_words = [w for w in (words or "").split(",") if w.strip()]
            base = KnowledgeAdmin(service).create(cli_actor(), name, tenant, user_words)
            known = tenant is None or tenant in settings.tenants or service.keys.list(tenant)
    owner = base.tenant or "所有租户 / every tenant"
    typer.echo(f"已创建知识库 / created knowledge base {base.name} ({owner})")
    if not known:  # a typo would leave the base invisible to every key
        Console(stderr=True).print(
            f"注意：还没有租户 {tenant} 的密钥，heshi.yaml 也没有配置它；只有该租户的密钥能使用"
            f"这个知识库 / note: no key of tenant {tenant!r} exists and heshi.yaml does not "
            f"name it; only its keys will see this base (heshi keys create --tenant {tenant})",
            style="yellow", markup=False, highlight=False,
        )  # fmt: skip
    typer.echo(f"下一步 / next: heshi kb ingest 文档目录/ --kb {base.name}")


@app.command(
    "ingest",
    help="导入文件或目录中的文档。/ Ingest files, or every supported file below directories.",
)
def ingest_command(
    paths: Annotated[list[Path], typer.Argument(help="文件或目录 / Files or directories.")],
    kb: KbOption,
    config: ConfigOption = None,
) -> None:
    console = Console(stderr=True)
    with reporting_errors(), admin_service(config) as service:
        admin, actor, embed = KnowledgeAdmin(service), cli_actor(), E5Vectors()
        store = admin.store
        store.get(kb)
        files, missing = files_below(paths, console)
        with counting(console) as progress:
            task = progress.add_task("导入 / ingesting", total=len(files))

            def on_file(result: FileResult) -> None:
                line = f"{_STATUS[result.status]:<20} {result.path}"
                if result.status in ("added", "replaced"):
                    line += f"  ({result.chunks} chunks)"
                if result.error:
                    line += f"  {result.error}"
                style = "red" if result.status == "failed" else None
                progress.console.print(line, style=style, markup=False, highlight=False)
                progress.advance(task)  # after the file's line: a log's count follows it

            def one(path: Path, data: bytes) -> FileResult:
                source = str(path.resolve())
                return admin.ingest(actor, kb, path, data, embed, source=source)

            report = ingest(store, kb, files, embed, on_file=on_file, one=one)
        docs, chunks = store.counts(kb)
    rate = report.pages / report.seconds if report.seconds > 0 else 0.0
    typer.echo(
        f"{kb}: {report.count('added')} 新增 / added, {report.count('replaced')} 更新 / replaced, "
        f"{report.count('unchanged')} 未变 / unchanged, {report.count('failed')} 失败 / failed; "
        f"{docs} documents, {chunks} chunks; {report.seconds:.1f} s ({rate:.1f} pages/s)"
    )
    if missing or report.count("failed"):
        raise typer.Exit(1)


@app.command("list", help="列出知识库。/ List knowledge bases.")
def list_command(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    with reporting_errors(), open_database(config) as db:
        store = KnowledgeBaseStore(db)
        rows = [(b, *store.counts(b.name)) for b in store.bases()]
    if as_json:
        out = [
            {
                "name": b.name,
                "tenant": b.tenant,
                "documents": d,
                "chunks": c,
                "revision": b.revision,
            }
            for b, d, c in rows
        ]
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    if not rows:
        typer.echo("还没有知识库 / no knowledge bases yet: heshi kb create NAME")
        return
    table = Table("名称 / name", "租户 / tenant", "文档 / docs", "分块 / chunks")
    for base, docs, chunks in rows:
        table.add_row(base.name, base.tenant or "*", str(docs), str(chunks))
    Console().print(table)


@app.command("show", help="知识库中的文档。/ The documents in a knowledge base.")
def show(name: NameArgument, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    with reporting_errors(), open_database(config) as db:
        store = KnowledgeBaseStore(db)
        base = store.get(name)
        docs = store.documents(name)
    if as_json:
        out = {
            "name": base.name,
            "tenant": base.tenant,
            "user_words": base.user_words,
            "documents": [
                {"doc": d.name, "source": d.source, "chunks": d.chunks, "pages": d.pages,
                 "sha256": d.sha256, "ingested_at": d.ingested_at.isoformat()}
                for d in docs
            ],
        }  # fmt: skip
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    typer.echo(
        f"{base.name}  租户 / tenant: {base.tenant or '*'}  词典 / words: {len(base.user_words)}"
    )
    table = Table("文档 / doc", "分块 / chunks", "页 / pages", "导入时间 / ingested (UTC)")
    for d in docs:
        table.add_row(d.name, str(d.chunks), str(d.pages), d.ingested_at.strftime("%Y-%m-%d %H:%M"))
    Console().print(table)


@app.command("search", help="检索（不生成回答）。/ Retrieve chunks (no answer written).")
def search(
    query: Annotated[str, typer.Argument(help="问题 / Question.")],
    kb: KbOption,
    k: Annotated[int, typer.Option("--k", min=1, max=50, help="返回条数 / Chunks returned.")] = 5,
    method: Annotated[str, typer.Option("--method", help="hybrid | bm25 | dense")] = "hybrid",
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    if method not in ("hybrid", "bm25", "dense"):
        Console(stderr=True).print(
            f"--method 须为 hybrid、bm25 或 dense / must be hybrid, bm25 or dense: {method!r}",
            style="red",
        )
        raise typer.Exit(1)
    _not_empty(query)
    with reporting_errors(), open_database(config) as db:
        store = KnowledgeBaseStore(db)
        index = KnowledgeIndex.load(store, kb, None if method == "bm25" else E5Vectors())
        hits = index.search(query, k, method=method)
        empty = not hits and store.counts(kb)[0] == 0
    if not hits and not as_json:
        Console(stderr=True).print(
            f"知识库 {kb} 还没有文档 / {kb} holds no documents yet: heshi kb ingest 文档目录/ "
            f"--kb {kb}"
            if empty
            else "没有找到相关内容 / nothing found",
            markup=False, highlight=False,
        )  # fmt: skip
    if as_json:
        out = [
            {"doc": h.chunk.doc, "chunk_id": h.chunk.id, "text": h.chunk.text,
             "headings": list(h.chunk.headings), "score": round(h.score, 4)}
            for h in hits
        ]  # fmt: skip
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    for n, hit in enumerate(hits, 1):
        where = " > ".join(hit.chunk.headings)
        typer.echo(f"[{n}] {hit.chunk.doc}  {where}  ({hit.score:.3f})")
        typer.echo("    " + hit.chunk.text.replace("\n", "\n    "))


@app.command("rm", help="删除知识库及其全部内容。/ Remove a knowledge base and all it holds.")
def remove(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="不再确认 / Do not ask.")] = False,
    config: ConfigOption = None,
) -> None:
    with reporting_errors(), admin_service(config) as service:
        admin = KnowledgeAdmin(service)
        admin.store.get(name)  # an unknown base: said before asking
        docs, chunks = admin.store.counts(name)
        if not yes:
            typer.confirm(
                f"删除知识库 {name}（{docs} 个文档，{chunks} 个分块）？/ Remove {name} "
                f"({docs} documents, {chunks} chunks)?",
                abort=True,
            )
        admin.remove(cli_actor(), name)
    typer.echo(f"已删除 / removed {name}")


@app.command(
    "ask",
    help="向知识库提问（默认在本进程运行模型）。"
    "/ Ask a knowledge base (models run in this process unless --url).",
)
def ask(
    question: Annotated[str, typer.Argument(help="问题 / Question.")],
    kb: KbOption,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            help="会话 id：同一 id 延续同一对话 / The same id continues one conversation.",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    key: ApiKeyOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    from heshi.cli.gateway_call import ask_once

    _not_empty(question)
    body: dict[str, object] = {
        "model": f"kb:{kb}",
        "messages": [{"role": "user", "content": question}],
    }
    if session:
        body["session_id"] = session
    with reporting_errors():
        result = ask_once(url, key, config, body)
    out = {
        "answer": result["choices"][0]["message"]["content"],
        "citations": result.get("citations") or [],
        "handoff": bool(result.get("handoff")),
        "grounded": bool(result.get("grounded")),
    }
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    typer.echo(out["answer"])
    for n, citation in enumerate(out["citations"], 1):
        typer.echo(f"  [{n}] {citation['doc']}: {citation['text'][:60]}…")
    if out["handoff"]:
        typer.echo("（已转人工 / handed to a person: heshi kb handoffs）")


app.command(
    "eval",
    help="用自己的问题集评测知识库：检索命中率、答案要点、拒答、转人工。"
    "/ Score a knowledge base on a question set: retrieval, facts, declines, handoffs.",
)(eval_command)


@app.command("handoffs", help="转人工记录。/ Conversations handed to a person.")
def handoffs(
    kb: Annotated[
        str | None, typer.Option("--kb", help="只看此知识库 / Only this base.", show_default=False)
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="open | taken | closed", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    from heshi.apps.kb.sessions import SessionStore

    with reporting_errors(), open_database(config) as db:
        rows = SessionStore(db).handoffs(kb, status, limit)
        if kb is not None and not rows:  # a removed base's handoffs are still shown
            KnowledgeBaseStore(db).get(kb)
    if as_json:
        typer.echo(json.dumps([h.as_json() for h in rows], ensure_ascii=False))
        return
    if not rows:
        typer.echo("没有转人工记录 / no handoffs")
        return
    table = Table(
        "时间 / at (UTC)", "知识库 / kb", "会话 / session", "原因 / reason",
        "状态 / status", "最后一句 / last words",
    )  # fmt: skip
    # the id first, whole, on a column the table cannot squeeze: it is what `heshi kb
    # handoff` takes (a unique start of it will do)
    table.columns.insert(0, Column("id", no_wrap=True, min_width=27))
    for h in rows:
        last = next((m["content"] for m in reversed(h.conversation) if m["role"] == "user"), "")
        table.add_row(
            h.id, h.created_at.strftime("%m-%d %H:%M"), h.kb, h.session_id, h.reason, h.status,
            last[:30],
        )  # fmt: skip
    Console().print(table)


@app.command(
    "handoff",
    help="接手或关闭一条转人工记录。/ Take (taken) or close (closed) a handoff.",
)
def handoff(
    handoff_id: Annotated[str, typer.Argument(help="记录 id（heshi kb handoffs）/ Handoff id.")],
    status: Annotated[
        str, typer.Option("--status", help="taken（接手）| closed（关闭）", show_default=False)
    ],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    with reporting_errors(), admin_service(config) as service:
        moved = KnowledgeAdmin(service).move_handoff(cli_actor(), handoff_id, status)
    if as_json:
        typer.echo(json.dumps(moved.as_json(), ensure_ascii=False))
        return
    typer.echo(f"{moved.id}: {moved.status} ({moved.kb})")


def _not_empty(question: str) -> None:
    """An empty question is a mistake, not a search for everything: exit 1 saying so."""
    if not question.strip():
        Console(stderr=True).print("问题为空 / the question is empty", style="red")
        raise typer.Exit(1)
