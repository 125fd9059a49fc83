"""Document extraction on the generated gold set: field precision / recall / F1 per
document type and per input format, with the schema's grammar and without it.

    .venv/bin/python benchmarks/docs.py [--per-type N] [--formats txt,docx,ofd,pdf,scan,photo]
        [--modes grammar,free] [--json FILE]

Generates the gold set (``benchmarks/docs_gold.py``, seeded; only the formats asked for)
into a temporary directory — TXT, DOCX, text PDF (``pdf``), scanned PDF (``scan``) and
phone photo (``photo``, PNG) of every document, OFD of the invoices only — then extracts
each document through the gateway built in this process with the embedded default model
(``heshi docs extract``'s path). *grammar*: the request carries the schema as
``response_format`` (grammar-constrained decoding, the shipped behaviour); *free*: the
same prompt without it, the JSON read from the text. A field counts as right when it
equals the gold value (strings without spaces; numbers to the fen). Also measured: pages
read per second by format (text layer vs OCR), and of the outputs an independent
validator (``jsonschema``) finds schema-invalid, how many Heshi caught: refused as not
JSON, a problem reported, or typed into valid values (a date made ISO 8601). Batch wall
times: ``docs_batch.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from docs_gold import EXT, FORMATS, applies  # noqa: E402
from heshi.apps.docs.extract import request  # noqa: E402
from heshi.apps.docs.read import document_text  # noqa: E402
from heshi.apps.docs.schema import load_schema  # noqa: E402
from heshi.apps.docs.validate import validate  # noqa: E402
from heshi.cli.gateway_call import asking  # noqa: E402
from heshi.config import load_config  # noqa: E402

_FENCE = re.compile(r"```(?:json)?\s*(\{.*\})\s*```", re.S)


def same(gold: Any, got: Any) -> bool:
    if isinstance(gold, int | float) and not isinstance(gold, bool):
        return isinstance(got, int | float) and abs(float(got) - float(gold)) <= 0.005
    return isinstance(got, str) and re.sub(r"\s", "", got) == re.sub(r"\s", "", str(gold))


def count(gold: dict[str, Any], got: dict[str, Any] | None) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) over a document's fields."""
    tp = fp = fn = 0
    for name, value in gold.items():
        predicted = (got or {}).get(name)
        right = value is not None and predicted is not None and same(value, predicted)
        tp += right
        fp += predicted is not None and not right
        fn += value is not None and not right
    return tp, fp, fn


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3)}


async def run(gold: list[dict[str, Any]], root: Path, formats: list[str], modes: list[str]
) -> list[dict[str, Any]]:  # fmt: skip
    model = load_config(None).engine.name
    rows = []
    async with asking(None, None, None) as ask:
        for mode in modes:
            for fmt in formats:
                docs = [doc for doc in gold if applies(fmt, doc["type"])]  # OFD: invoices
                for n, doc in enumerate(docs, 1):
                    schema = load_schema(doc["type"])
                    path = root / fmt / f"{doc['id']}.{EXT[fmt]}"
                    read_started = time.perf_counter()
                    document = document_text(path)
                    read_seconds = time.perf_counter() - read_started
                    body, _ = request(schema, document.text, model, 4000)
                    if mode == "free":
                        body.pop("response_format")
                    started = time.perf_counter()
                    result = await ask(body)
                    seconds = time.perf_counter() - started
                    content = str(result["choices"][0]["message"].get("content") or "")
                    raw = _json_of(content)
                    values, problems = (
                        validate(schema, raw) if isinstance(raw, dict) else (None, [])
                    )
                    tp, fp, fn = count(doc["fields"], values)
                    invalid = not isinstance(raw, dict) or not schema_valid(schema, raw)
                    rows.append({
                        "id": doc["id"], "type": doc["type"], "format": fmt, "mode": mode,
                        "valid_json": isinstance(raw, dict), "tp": tp, "fp": fp, "fn": fn,
                        "problems": [p.as_json() for p in problems], "seconds": seconds,
                        "read_seconds": read_seconds, "pages": document.pages,
                        "schema_invalid": invalid,
                        # caught: refused, or a problem reported — or what Heshi returns is
                        # valid after typing (a date written 2025年4月1日 made ISO)
                        "caught": not isinstance(raw, dict) or bool(problems)
                        or schema_valid(schema, values or {}),
                        "values": values, "raw": raw,
                    })  # fmt: skip
                    print(
                        f"[{mode} {fmt} {n:2d}/{len(docs)}] {doc['id']:<18} tp {tp} fp {fp} "
                        f"fn {fn} {seconds:5.1f}s",
                        flush=True,
                    )
    return rows


def schema_valid(schema: Any, raw: dict[str, Any]) -> bool:
    """Whether the model's object satisfies the schema by an independent validator
    (``jsonschema``, Draft 2020-12, with ``format`` checked)."""
    import jsonschema

    checker = jsonschema.Draft202012Validator(
        schema.for_model(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return bool(checker.is_valid(raw))


def _json_of(content: str) -> Any:
    fenced = _FENCE.search(content)
    try:
        return json.loads(fenced.group(1) if fenced else content)
    except json.JSONDecodeError:
        return None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("mode", "format", "type"):
        groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in rows:
            name = r["mode"] if key == "mode" else f"{r['mode']}/{r[key]}"
            for i, k in enumerate(("tp", "fp", "fn")):
                groups[name][i] += r[k]
        out[f"by_{key}"] = {name: prf(*c) for name, c in sorted(groups.items())}
    out["valid_json"] = {
        m: round(sum(r["valid_json"] for r in rows if r["mode"] == m)
                 / max(1, sum(1 for r in rows if r["mode"] == m)), 3)
        for m in sorted({r["mode"] for r in rows})
    }  # fmt: skip
    out["seconds_per_document"] = round(sum(r["seconds"] for r in rows) / max(1, len(rows)), 2)
    reads: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        if r["mode"] == rows[0]["mode"]:  # each file read once per mode; count one mode
            reads[r["format"]][0] += r["pages"]
            reads[r["format"]][1] += r["read_seconds"]
    out["pages_per_second"] = {f: round(p / s, 2) for f, (p, s) in sorted(reads.items()) if s}
    invalid = [r for r in rows if r["schema_invalid"]]
    modes = sorted({r["mode"] for r in rows})
    out["schema_invalid"] = {
        "outputs": len(invalid), "caught": sum(r["caught"] for r in invalid),
        "by_mode": {m: sum(1 for r in invalid if r["mode"] == m) for m in modes},
    }  # fmt: skip
    return out


def machine() -> dict[str, Any]:
    commit = subprocess.run(  # noqa: PLW1510 - outside git: empty
        ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(), "python": platform.python_version(), "git_commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--per-type", type=int, default=15)
    parser.add_argument(
        "--formats",
        default="txt,docx,ofd",
        help=f"any of {','.join(FORMATS)} (default %(default)s)",
    )
    parser.add_argument("--modes", default="grammar,free")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    formats = args.formats.split(",")
    if unknown := sorted(set(formats) - set(FORMATS)):
        parser.error(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [sys.executable, str(HERE / "docs_gold.py"), str(root), "--per-type",
             str(args.per_type), "--seed", str(args.seed), "--formats", ",".join(formats)],
            check=True,
        )  # fmt: skip
        gold = json.loads((root / "gold.json").read_text("utf-8"))["documents"]
        rows = asyncio.run(run(gold, root, formats, modes))
    out = {"machine": machine(), "per_type": args.per_type, "summary": summary(rows), "rows": rows}
    print(json.dumps(out["summary"], ensure_ascii=False, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
