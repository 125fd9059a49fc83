"""Tool calling on the embedded engine: a Chinese evaluation set, in several engine modes.

Every case of ``benchmarks/data/tools_zh.json`` (customer service, logistics, banking,
retail, HR and IT-helpdesk requests, a third of them needing no tool; or the held-out
``tools_zh_holdout.json`` with ``--data``) is sent to ``LlamaCppEngine.chat`` in process —
``tool_choice: "auto"``, temperature 0, ``max_tokens`` 256 — once per mode, by a fresh
engine each: ``decision`` (the default: the which-function question first, then answers
held to the grammar), ``grammar`` (``tool_decision: false``: held to prose or schema-valid
calls only) and ``free`` (``tool_grammar: false``: unconstrained, parsed leniently). The
engines run one after the other, never together, on the same model and threads.

Per case: the calls made; whether each is *valid* (an offered function, arguments a JSON
object that validates against its ``parameters`` schema — checked by the small validator
below; a ``<tool_call>`` block or bare JSON call the engine could not read counts as an
invalid call); whether the *right tool* was chosen (every call names ``expect.tool``, or
no call when it is null); whether the expected argument values appear (strings as
substrings, numbers equal, dotted keys for nested objects); seconds per case.

    .venv/bin/python benchmarks/tools.py [--json FILE] [--quick] [--model PATH]
        [--mode decision,grammar,free] [--data FILE]

Targets (tool-calling issue), default model: ≥ 98% of calls valid, ≥ 90% right tool.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from heshi.config import LocalEngineConfig
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.engines.tooldecision import Decision

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "tools_zh.json"
TARGET_VALID, TARGET_RIGHT = 0.98, 0.90
MAX_TOKENS = 256
QUICK = 10
# mode name -> LocalEngineConfig settings
MODES: dict[str, dict[str, bool]] = {
    "decision": {"tool_grammar": True, "tool_decision": True},  # the default
    "grammar": {"tool_grammar": True, "tool_decision": False},
    "free": {"tool_grammar": False, "tool_decision": False},
}
CALL_TAG = "<tool_call>"


# ----------------------------------------------------------------------------- validator

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}
# Keywords that only describe; anything else this validator does not know is an error, so
# a schema added to the set cannot pass unchecked.
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$schema", "$id"})
_KNOWN = _ANNOTATIONS | {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "anyOf", "oneOf", "allOf",
}  # fmt: skip


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Why ``value`` does not validate against ``schema`` (JSON Schema, the subset the
    tool catalogue uses); empty when it does."""
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"{path}: validator does not support {sorted(unknown)}")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{path}: {value!r} is not of type {kind}"]
    errors: list[str] = []
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    elif isinstance(value, list):
        errors += _array_errors(value, schema, path)
    elif isinstance(value, str):
        errors += _string_errors(value, schema, path)
    elif _TYPES["number"](value):
        errors += _number_errors(value, schema, path)
    for sub in schema.get("allOf", ()):
        errors += schema_errors(value, sub, path)
    if "anyOf" in schema and all(schema_errors(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema and sum(not schema_errors(value, s, path) for s in schema["oneOf"]) != 1:
        errors.append(f"{path}: does not match exactly one of oneOf")
    return errors


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    errors = [f"{path}: missing {k!r}" for k in schema.get("required", ()) if k not in value]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors += schema_errors(item, properties[key], f"{path}.{key}")
        elif extra is False:
            errors.append(f"{path}: unexpected property {key!r}")
        elif isinstance(extra, dict):
            errors += schema_errors(item, extra, f"{path}.{key}")
    return errors


def _array_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    return errors


def _string_errors(value: str, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    return errors


def _number_errors(value: float, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} < minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {value} > maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append(f"{path}: {value} <= exclusiveMinimum {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append(f"{path}: {value} >= exclusiveMaximum {schema['exclusiveMaximum']}")
    return errors


# ------------------------------------------------------------------------------- scoring


def check_call(call: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One returned ``tool_calls`` item: its name, parsed arguments and validity."""
    function = call.get("function") or {}
    name = function.get("name")
    out: dict[str, Any] = {"name": name, "arguments": function.get("arguments")}
    try:
        args = json.loads(function.get("arguments") or "")
    except (TypeError, ValueError) as exc:
        return out | {"valid": False, "errors": [f"arguments are not JSON: {exc}"]}
    out["args"] = args
    if name not in schemas:
        return out | {"valid": False, "errors": [f"{name!r} is not an offered function"]}
    if not isinstance(args, dict):
        return out | {"valid": False, "errors": ["arguments are not a JSON object"]}
    errors = schema_errors(args, schemas[name])
    return out | {"valid": not errors, "errors": errors}


def unread_calls(content: str | None) -> int:
    """Calls the model tried to write but the engine could not read (they came back as
    prose): ``<tool_call>`` blocks, or an answer that is a bare or fenced JSON object
    with a ``"name"``."""
    if not content:
        return 0
    tags = content.count(CALL_TAG)
    if tags:
        return tags
    body = content.strip().removeprefix("```json").removeprefix("```").lstrip()
    return 1 if body[:1] in ("{", "[") and '"name"' in body else 0


def calls_in_prose(content: str | None, names: Iterable[str]) -> int:
    """Calls written inside a prose answer (e.g. a ```json block after an introduction):
    JSON ``"name": "<an offered function>"`` pairs in text the engine returned as prose.
    The client gets no call from them."""
    found = re.findall(r'"name"\s*:\s*"([^"]*)"', content or "")
    return sum(name in set(names) for name in found)


def lookup(args: Any, dotted: str) -> tuple[bool, Any]:
    """``args["a"]["b"]`` for ``"a.b"``; (False, None) when a step is missing."""
    value = args
    for step in dotted.split("."):
        if not isinstance(value, dict) or step not in value:
            return False, None
        value = value[step]
    return True, value


def value_matches(expected: Any, actual: Any) -> bool:
    """Numbers compare as numbers; strings as substrings of the value (a list or object
    as its JSON text); a list of expectations matches if any does."""
    if isinstance(expected, list):
        return any(value_matches(e, actual) for e in expected)
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        if isinstance(actual, str):
            with contextlib.suppress(ValueError):
                actual = float(actual.replace(",", ""))
        return _TYPES["number"](actual) and float(actual) == float(expected)
    text = actual if isinstance(actual, str) else json.dumps(actual, ensure_ascii=False)
    return str(expected) in text


def score(case: dict[str, Any], message: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """What one answer did, against what the case expects."""
    expect_tool = case["expect"]["tool"]
    expect_args = case["expect"].get("args") or {}
    calls = [check_call(c, schemas) for c in message.get("tool_calls") or ()]
    unread = unread_calls(message.get("content"))
    made = len(calls) + unread
    in_prose = 0 if unread else calls_in_prose(message.get("content"), schemas)
    if expect_tool is None:
        right = made == 0
    else:
        right = bool(calls) and all(c["name"] == expect_tool for c in calls)
    arg_detail: dict[str, bool] = {}
    if expect_tool is not None and expect_args:
        mine = [c for c in calls if c["name"] == expect_tool and isinstance(c.get("args"), dict)]
        best: dict[str, bool] = {}
        for call in mine:  # the call matching the most expectations
            detail = {}
            for key, want in expect_args.items():
                found, got = lookup(call["args"], key)
                detail[key] = found and value_matches(want, got)
            if sum(detail.values()) >= sum(best.values()):
                best = detail
        arg_detail = best or dict.fromkeys(expect_args, False)
    content = message.get("content") or ""
    return {
        "called": [c["name"] for c in calls],
        "calls": calls,
        "calls_made": made,
        "unread_calls": unread,
        "calls_in_prose": in_prose,
        "valid_calls": sum(c["valid"] for c in calls),
        "right_tool": right,
        "args_expected": bool(expect_args) and expect_tool is not None,
        "args_match": bool(arg_detail) and all(arg_detail.values()),
        "args_detail": arg_detail,
        # a real answer in prose: no call, and no call written into the text either
        "prose": bool(content.strip()) and made == 0 and in_prose == 0,
    }


# -------------------------------------------------------------------------------- engine


class RecordingEngine(LlamaCppEngine):
    """The engine, keeping the last raw llama.cpp completion (the model's own text) so a
    failure can be reported as the model wrote it."""

    last_raw: dict[str, Any] | None = None
    last_decision: Decision | None = None

    async def _decision(self, prompt: str, body: dict[str, Any]) -> Decision | None:
        self.last_decision = await super()._decision(prompt, body)
        return self.last_decision

    async def _call_once(self, handler: Any, body: dict[str, Any]) -> dict[str, Any]:
        self.last_raw = None
        out = await super()._call_once(handler, body)
        self.last_raw = out
        return out


@contextlib.contextmanager
def engine_log(path: str) -> Iterator[None]:
    """llama.cpp writes its log to file descriptor 2: send it to ``path`` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


async def run_mode(
    mode: str, model: Path, data: dict[str, Any], cases: list[dict[str, Any]], threads: int | None
) -> list[dict[str, Any]]:
    catalogue = {t["function"]["name"]: t for t in data["tools"]}
    config = LocalEngineConfig(
        model=str(model), ctx=4096, parallel=1, threads=threads, **MODES[mode]
    )
    engine = RecordingEngine("qwen", model, config)
    await engine.start()
    results = []
    try:
        warm = {"model": "qwen", "messages": [{"role": "user", "content": "你好"}], "max_tokens": 4}
        await engine.chat(warm)  # first-request setup, untimed
        for n, case in enumerate(cases, 1):
            tools = [catalogue[name] for name in case["tools"]]
            schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
            body = {
                "model": "qwen",
                "messages": case["messages"],
                "tools": tools,
                "tool_choice": "auto",
                "temperature": 0,
                "max_tokens": MAX_TOKENS,
            }
            engine.last_decision = None
            start = time.perf_counter()
            try:
                answer = await engine.chat(body)
                error = None
            except Exception as exc:  # recorded as a failed case; the run goes on
                answer, error = {"choices": [{"message": {}, "finish_reason": None}]}, repr(exc)
            seconds = time.perf_counter() - start
            choice = answer["choices"][0]
            raw = engine.last_raw or {}
            row = {
                "id": case["id"],
                "expect": case["expect"],
                "seconds": seconds,
                "finish_reason": choice.get("finish_reason"),
                "content": choice["message"].get("content"),
                "tool_calls": choice["message"].get("tool_calls"),
                "raw_text": (raw.get("choices") or [{}])[0].get("text"),
                "usage": answer.get("usage"),
                "timings": answer.get("timings"),  # llama.cpp's own: prompt and decode ms
                "load_1min": os.getloadavg()[0],  # others' work on the machine shows here
                # the question asked first (decision mode): P(no call) share, first function
                "decision": None
                if engine.last_decision is None
                else {
                    "none_share": round(engine.last_decision.none_share, 4),
                    "function": engine.last_decision.function,
                },
                "error": error,
                **score(case, choice["message"], schemas),
            }
            results.append(row)
            print(progress_line(mode, n, len(cases), row), flush=True)
    finally:
        await engine.close()
    return results


def progress_line(mode: str, n: int, total: int, row: dict[str, Any]) -> str:
    want = row["expect"]["tool"] or "(prose)"
    got = ",".join(row["called"]) or (
        "(unread call)"
        if row["unread_calls"]
        else "(call in prose)"
        if row["calls_in_prose"]
        else "(prose)"
    )
    marks = "right" if row["right_tool"] else "WRONG"
    if row["calls_made"]:
        marks += f" valid {row['valid_calls']}/{row['calls_made']}"
    if row["args_expected"]:
        marks += " args ok" if row["args_match"] else " args MISS"
    if row["finish_reason"] == "length":
        marks += " (cut at max_tokens)"
    if row["error"]:
        marks += f" ERROR {row['error']}"
    return (
        f"[{mode} {n:>2}/{total}] {row['id']:<13} want {want:<24} got {got:<24} "
        f"{marks}  {row['seconds']:.1f} s"
    )


# ------------------------------------------------------------------------------- summary


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    made = sum(r["calls_made"] for r in rows)
    valid = sum(r["valid_calls"] for r in rows)
    tool_rows = [r for r in rows if r["expect"]["tool"] is not None]
    none_rows = [r for r in rows if r["expect"]["tool"] is None]
    arg_rows = [r for r in rows if r["args_expected"]]
    right = sum(r["right_tool"] for r in rows)
    seconds = [r["seconds"] for r in rows]
    return {
        "cases": len(rows),
        "calls_made": made,
        "valid_calls": valid,
        "unread_calls": sum(r["unread_calls"] for r in rows),
        "answers_with_call_in_prose": sum(r["calls_in_prose"] > 0 for r in rows),
        "valid_rate": valid / made if made else None,
        "right_tool": right,
        "right_rate": right / len(rows) if rows else None,
        "tool_cases": len(tool_rows),
        "tool_cases_right": sum(r["right_tool"] for r in tool_rows),
        "no_tool_cases": len(none_rows),
        "no_tool_cases_right": sum(r["right_tool"] for r in none_rows),
        "no_tool_prose": sum(r["prose"] for r in none_rows),
        "arg_cases": len(arg_rows),
        "arg_match": sum(r["args_match"] for r in arg_rows),
        "arg_rate": sum(r["args_match"] for r in arg_rows) / len(arg_rows) if arg_rows else None,
        "cut_at_max_tokens": sum(r["finish_reason"] == "length" for r in rows),
        "errors": sum(r["error"] is not None for r in rows),
        "mean_s": statistics.fmean(seconds) if seconds else None,
        "median_s": statistics.median(seconds) if seconds else None,
        "total_s": sum(seconds),
        "completion_tokens": sum((r["usage"] or {}).get("completion_tokens", 0) for r in rows),
        "prompt_tok_s": _rate(rows, "prompt_n", "prompt_ms"),
        "decode_tok_s": _rate(rows, "predicted_n", "predicted_ms"),
        # per-case rates are robust to a few cases slowed by other work on the machine
        "median_case_decode_tok_s": _median(
            [t["predicted_per_second"] for r in rows if (t := r.get("timings"))]
        ),
        "mean_load_1min": statistics.fmean(r["load_1min"] for r in rows) if rows else None,
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rate(rows: list[dict[str, Any]], count: str, ms: str) -> float | None:
    """Tokens per second over all cases, from llama.cpp's own timings."""
    timings = [r["timings"] for r in rows if r.get("timings")]
    total_ms = sum(t.get(ms, 0) for t in timings)
    return 1000 * sum(t.get(count, 0) for t in timings) / total_ms if total_ms else None


def _share(part: str, whole: str) -> Callable[[dict[str, Any]], str]:
    def show(s: dict[str, Any]) -> str:
        n, of = s[part], s[whole]
        return f"{n}/{of} = {100 * n / of:.1f}%" if of else "-"

    return show


def _count(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda s: str(s[key])


def _num(key: str, digits: int = 2) -> Callable[[dict[str, Any]], str]:
    return lambda s: "-" if s[key] is None else f"{s[key]:.{digits}f}"


def _made(s: dict[str, Any]) -> str:
    return f"{s['calls_made']} ({s['unread_calls']})"


def report(summary: dict[str, dict[str, Any]]) -> None:
    modes = list(summary)
    rows: list[tuple[str, Callable[[dict[str, Any]], str], str | None]] = [
        ("cases", _count("cases"), None),
        ("calls made (unread by the engine)", _made, None),
        ("valid calls / calls made", _share("valid_calls", "calls_made"), "valid_rate"),
        ("right tool / all cases", _share("right_tool", "cases"), "right_rate"),
        ("  right / cases needing a tool", _share("tool_cases_right", "tool_cases"), None),
        ("  no call / cases needing none", _share("no_tool_cases_right", "no_tool_cases"), None),
        ("argument match / cases with expected args", _share("arg_match", "arg_cases"), "arg_rate"),
        ("no-tool cases answered in prose", _share("no_tool_prose", "no_tool_cases"), None),
        ("answers in prose with a call written inside", _count("answers_with_call_in_prose"), None),
        ("answers cut at max_tokens", _count("cut_at_max_tokens"), None),
        ("completion tokens, all cases", _count("completion_tokens"), None),
        ("mean seconds per case", _num("mean_s"), "mean_s"),
        ("median seconds per case", _num("median_s"), "median_s"),
        ("prompt tokens/s (llama.cpp timings)", _num("prompt_tok_s", 1), "prompt_tok_s"),
        ("decode tokens/s (llama.cpp timings)", _num("decode_tok_s", 1), "decode_tok_s"),
        (
            "  median of the cases' decode tokens/s",
            _num("median_case_decode_tok_s", 1),
            "median_case_decode_tok_s",
        ),
        ("mean 1-min load average", _num("mean_load_1min"), None),
    ]
    header = f"\n{'':<44}" + "".join(f"{m:>22}" for m in modes)
    if len(modes) == 2:
        header += f"{modes[0] + ' ÷ ' + modes[1]:>18}"
    print(header)
    for label, show, key in rows:
        line = f"{label:<44}" + "".join(f"{show(summary[m]):>22}" for m in modes)
        if len(modes) == 2 and key:
            a, b = summary[modes[0]][key], summary[modes[1]][key]
            line += f"{a / b:>18.2f}" if a is not None and b else f"{'-':>18}"
        print(line)
    print()
    for m in modes:
        s = summary[m]
        valid, right = s["valid_rate"], s["right_rate"]
        ok_valid = valid is not None and valid >= TARGET_VALID
        ok_right = right is not None and right >= TARGET_RIGHT
        print(
            f"{m}: valid calls ≥ {TARGET_VALID:.0%} {'✅' if ok_valid else '❌'}   "
            f"right tool ≥ {TARGET_RIGHT:.0%} {'✅' if ok_right else '❌'}"
        )


def machine(model: Path, threads: int | None) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(HERE), *argv], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads or "default (all physical cores)",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "xllamacpp": metadata.version("xllamacpp"),
        "model_file": model.name,
        "git_commit": commit or None,
        # the engine measured is the working tree's: uncommitted changes to it, if any
        "src_uncommitted": git("status", "--porcelain", "--", "../src").splitlines(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def rescore(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A saved run scored again from its stored answers (after a change to the scoring
    here; nothing is generated again)."""
    res: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    catalogue = {t["function"]["name"]: t["function"] for t in data["tools"]}
    cases = {c["id"]: c for c in data["cases"]}
    for mode, rows in res["results"].items():
        for row in rows:
            case = cases[row["id"]]
            schemas = {n: catalogue[n]["parameters"] for n in case["tools"]}
            message = {"content": row["content"], "tool_calls": row["tool_calls"]}
            row.update(expect=case["expect"], **score(case, message, schemas))
        res["summary"][mode] = summarize(rows)
    return res


def default_model() -> Path:
    from heshi.config import DEFAULT_MODEL_REF, default_home
    from heshi.hub.store import ModelStore

    return ModelStore(default_home()).resolve(DEFAULT_MODEL_REF)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, help="GGUF path (default: the embedded default)")
    parser.add_argument("--data", type=Path, default=DATA, help="evaluation set")
    parser.add_argument("--json", type=Path, help="write per-case results and summary here")
    parser.add_argument("--quick", action="store_true", help=f"only the first {QUICK} cases")
    parser.add_argument("--only", help="comma-separated case ids")
    parser.add_argument(
        "--mode",
        default="decision,grammar",
        help=f"comma-separated modes, in order (of {', '.join(MODES)}; default decision,grammar)",
    )
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    parser.add_argument(
        "--rescore", action="store_true", help="score the --json file's answers again, no run"
    )
    parser.add_argument(
        "--engine-log", default=os.devnull, help="where llama.cpp's log goes (default: nowhere)"
    )
    args = parser.parse_args()
    data = json.loads(args.data.read_text(encoding="utf-8"))
    if args.rescore:
        if not args.json:
            parser.error("--rescore needs --json FILE")
        scored = rescore(args.json, data)
        args.json.write_text(json.dumps(scored, indent=1, ensure_ascii=False) + "\n", "utf-8")
        report(scored["summary"])
        return
    cases = data["cases"]
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c["id"] in wanted]
    if args.quick:
        cases = cases[:QUICK]
    model = args.model or default_model()
    modes = args.mode.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; modes: {', '.join(MODES)}")
    res: dict[str, Any] = {
        "machine": machine(model, args.threads),
        "settings": {
            "data": args.data.name,
            "cases": len(cases),
            "tool_choice": "auto",
            "temperature": 0,
            "max_tokens": MAX_TOKENS,
            "ctx": 4096,
            "modes": {m: MODES[m] for m in modes},
        },
        "summary": {},
        "results": {},
    }
    m = res["machine"]
    print(
        f"{len(cases)} cases; {m['model_file']}; {m['cpu']}, {m['cores']} cores; "
        f"python {m['python']}; xllamacpp {m['xllamacpp']}",
        flush=True,
    )
    for mode in modes:
        with engine_log(args.engine_log):
            rows = asyncio.run(run_mode(mode, model, data, cases, args.threads))
        res["results"][mode] = rows
        res["summary"][mode] = summarize(rows)
        if args.json:  # after every mode, so a later failure loses nothing
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    report(res["summary"])


if __name__ == "__main__":
    main()
