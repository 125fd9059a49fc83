"""Gateway overhead: Heshi vs LiteLLM proxy vs calling the upstream directly.

One run starts a fast loopback mock upstream (``mock_upstream.py``, its own process), Heshi
(``heshi serve --no-local`` with one backend: the mock) and LiteLLM proxy (one worker, its
own venv, the same mock as its only model), and measures, with the same client and the
same request bodies, one target at a time, alternating the order:

1. RSS of each gateway process (``/proc/<pid>/status`` VmRSS) after 10k and after 100k
   requests since it started (wrk at concurrency 8, one request in ten streamed);
2. latency at concurrency 1, non-streaming (a blocking keep-alive client in this
   process); "added" = gateway percentile − direct percentile over the same request count;
3. time to first SSE event at concurrency 1, streaming; "added" likewise;
4. maximum requests/s with p99 under 50 ms: wrk (C, one thread) at concurrency 1, 2, 4,
   … 64 for a fixed time per step; the best throughput among steps whose p99 is under
   the limit and that had no errors. A target stops stepping after two steps over the
   limit. The direct row shows the load generator's own ceiling.

It also verifies what it compares: a request without a key must be refused by each
gateway, and Heshi's ledger (``heshi usage``) must have counted the requests; when either
fails, the output says loudly that the run was WITHOUT auth/quota/metering.

Then prints a table and the ratios against the targets (Heshi added p99 ≤ 2 ms; Heshi
max RPS ≥ 3× LiteLLM's; RSS growth 10k→100k ≤ 10%).

    .venv/bin/python benchmarks/gateway_overhead.py                 # full run, ~40 min
                                        # (mostly LiteLLM's 100k requests at ~100 req/s)
    .venv/bin/python benchmarks/gateway_overhead.py --quick         # smoke test, ~4 min
    .venv/bin/python benchmarks/gateway_overhead.py --only direct,heshi --json out.json

Needs ``wrk`` (Debian package; installed with apt-get when missing and running as root)
and LiteLLM in its own venv (created at ``--litellm-venv`` when missing, or pass
``--litellm-bin``). All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import yaml

import mock_upstream

REPO = Path(__file__).resolve().parent.parent
MODEL = mock_upstream.MODEL
PATH = "/v1/chat/completions"
CHAT = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "你是一个乐于助人的客服助手。"},
        {"role": "user", "content": "请问我的快递什么时候能到？单号 SF1234567890。"},
    ],
    "max_tokens": 128,
}
CHAT_BODY = orjson.dumps(CHAT)
STREAM_BODY = orjson.dumps({**CHAT, "stream": True})
LOOPBACK = "127.0.0.1"
P99_LIMIT_MS = 50.0
TARGET_ADDED_P99_MS = 2.0
TARGET_RPS_RATIO = 3.0
TARGET_RSS_GROWTH = 0.10
DEFAULT_LITELLM_VENV = Path("/work/.bench-venvs/litellm")
# Everything LiteLLM would otherwise fetch from the internet at start-up or on first use
# (cost map, beta headers, presets, blog posts, policy templates, HF tokenizers) comes
# from the copies bundled in the package; usage telemetry stays off.
LITELLM_ENV = {
    "LITELLM_TELEMETRY": "False",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DISABLE_ADMIN_UI": "True",
    "LITELLM_LOG": "WARNING",  # like Heshi's --log-level warning: no per-request access log
}
# Never inherited by a gateway: a proxy would take loopback traffic elsewhere, a database
# or Redis URL would put LiteLLM on its database path.
_DROPPED_ENV = ("http_proxy", "https_proxy", "all_proxy", "database_url", "redis_url")


@dataclass(frozen=True)
class Sizes:
    """How much of each measurement a run does."""

    latency_n: int  # requests per target per round at concurrency 1
    stream_n: int
    warmup: int  # untimed requests before each timed batch
    rounds: int
    step_seconds: int  # per concurrency step of the max-RPS search
    rss_marks: tuple[int, int]  # requests since start at which RSS is read
    rss_concurrency: int = 8


FULL = Sizes(5000, 2000, 200, 2, 10, (10_000, 100_000))
QUICK = Sizes(500, 200, 50, 1, 2, (1_000, 5_000))


@dataclass
class Target:
    """Something the client calls: the mock itself or a gateway in front of it."""

    name: str
    port: int
    headers: dict[str, str]
    pid: int | None = None  # the serving process, for RSS; None for the direct row
    sent: int = 0  # /v1 requests answered so far, for the RSS marks
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # printed again beside the verdicts
    service: Service | None = None
    heshi_config: Path | None = None


# --------------------------------------------------------------------------- client


class Reply:
    """One response: status, body, and seconds to the first SSE event and to the end."""

    __slots__ = ("body", "first", "status", "total")

    def __init__(self, status: int, body: bytes, first: float, total: float) -> None:
        self.status, self.body, self.first, self.total = status, body, first, total


class LoopbackClient:
    """One blocking keep-alive HTTP/1.1 connection: the least client overhead Python has.

    The same client times every target, so its own cost cancels out of "added" latency.
    """

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.sock: socket.socket | None = None
        self.buf = b""

    def build(self, path: str, body: bytes) -> bytes:
        """The raw request bytes for a POST of ``body`` to ``path``."""
        lines = [f"POST {path} HTTP/1.1", f"Host: {LOOPBACK}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    def call(self, raw: bytes) -> Reply:
        """Send ``raw`` and read the whole response; reconnect once if the server dropped
        the idle connection (keep-alive timeouts between phases)."""
        for attempt in range(2):
            if self.sock is None:
                self.sock = socket.create_connection((LOOPBACK, self.port), timeout=30)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.perf_counter()
            try:
                self.sock.sendall(raw)
                return self._read(t0)
            except ConnectionError:
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _recv(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _until(self, sep: bytes) -> int:
        while (i := self.buf.find(sep)) < 0:
            self._recv()
        return i

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._recv()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read(self, t0: float) -> Reply:
        end = self._until(b"\r\n\r\n")
        head, self.buf = self.buf[:end].lower(), self.buf[end + 4 :]
        status = int(head[9:12])
        length, chunked = 0, b"transfer-encoding: chunked" in head
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        first = 0.0
        if chunked:
            parts: list[bytes] = []
            while size := int(self._take(self._until(b"\r\n") + 2).split(b";")[0], 16):
                parts.append(self._take(size + 2)[:-2])
                if not first and b"data:" in b"".join(parts):
                    first = time.perf_counter() - t0
            while self._take(self._until(b"\r\n") + 2) != b"\r\n":
                pass  # trailers, then the blank line
            body = b"".join(parts)
        else:
            body = self._take(length)
        total = time.perf_counter() - t0
        if b"connection: close" in head:
            self.close()
        return Reply(status, body, first or total, total)


def _check(reply: Reply, target: str, stream: bool) -> None:
    """Fail loudly on anything but a well-formed success, so a broken gateway never
    looks fast."""
    ok = reply.status == 200
    if ok and stream:
        ok = b"data: [DONE]" in reply.body and b'"error"' not in reply.body
    elif ok:
        with contextlib.suppress(orjson.JSONDecodeError):
            ok = bool(orjson.loads(reply.body).get("choices"))
    if not ok:
        raise RuntimeError(f"{target}: bad response {reply.status}: {reply.body[:300]!r}")


def timed_calls(target: Target, n: int, warmup: int, stream: bool) -> list[float]:
    """``n`` sequential requests (concurrency 1) after ``warmup`` untimed ones: seconds to
    the whole JSON body, or to the first SSE event when ``stream``."""
    return interleaved_calls([target], n, warmup, stream)[target.name]


def interleaved_calls(
    targets: list[Target], n: int, warmup: int, stream: bool
) -> dict[str, list[float]]:
    """:func:`timed_calls` against several targets at once, interleaved request by
    request (each target takes each place in turn), so a slow spell of the host falls on
    all of them alike: per target, ``n`` timings after ``warmup`` untimed requests."""
    clients = {t.name: LoopbackClient(t.port, t.headers) for t in targets}
    body = STREAM_BODY if stream else CHAT_BODY
    raw = {name: client.build(PATH, body) for name, client in clients.items()}
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for target in targets:
            for _ in range(warmup):
                _check(clients[target.name].call(raw[target.name]), target.name, stream)
        gc.collect()
        gc.disable()  # no collector pause inside the client's own timing
        for i in range(n):
            for target in rotated(targets, i):
                reply = clients[target.name].call(raw[target.name])
                _check(reply, target.name, stream)
                samples[target.name].append(reply.first if stream else reply.total)
    finally:
        gc.enable()
        for client in clients.values():
            client.close()
    for target in targets:
        target.sent += n + warmup
    return samples


def check_key_enforced(target: Target) -> None:
    """Send one request without a key: a gateway that answers it is not checking keys."""
    client = LoopbackClient(target.port, {})
    try:
        status = client.call(client.build(PATH, CHAT_BODY)).status
    finally:
        client.close()
    target.sent += 1
    if status in {401, 403}:
        target.notes.append(f"key check verified: a request without a key gets HTTP {status}")
    elif status >= 400:
        target.notes.append(
            f"key check verified: a request without a key is refused, but with HTTP {status}"
            + (" (its 401 path imports the optional `prisma` package)" if status >= 500 else "")
        )
    else:
        target.warnings.append(
            f"!!! a request WITHOUT a key got HTTP {status}: {target.name} did not check "
            "keys, so this run is WITHOUT auth/quota/metering for it !!!"
        )


# --------------------------------------------------------------------------- wrk

_DONE_LUA = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %.0f, "duration_us": %.0f, "p50_us": %.0f, '
    .. '"p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f, "connect": %.0f, "read": %.0f, '
    .. '"write": %.0f, "status": %.0f, "timeout": %.0f}\\n', summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
_LIMIT_LUA = """
local plain, streamed
local sent, seen = 0, 0
function init(args)
  plain = wrk.format("POST", "{path}", nil, [==[{body}]==])
  streamed = wrk.format("POST", "{path}", nil, [==[{stream}]==])
end
function request()
  sent = sent + 1
  if sent % {every} == 0 then return streamed end
  return plain
end
function response(status, headers, body)
  seen = seen + 1
  if seen == {limit} then
    io.write("WRKLIMIT\\n")
    io.flush()
    wrk.thread:stop()
  end
end
"""


@dataclass
class WrkResult:
    """One wrk run."""

    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # connect/read/write/timeout errors plus non-2xx/3xx statuses

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """The path of ``wrk``; installs the Debian package when missing and running as root."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing the Debian package (apt-get install -y wrk) …")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
    if found is None:
        sys.exit(
            "error: wrk is not installed and could not be installed here.\n"
            "Install it (Debian/Ubuntu: apt-get update && apt-get install -y wrk) and re-run."
        )
    return found


def wrk_script(target: Target, tmp: Path, limit: int | None = None, every: int = 10) -> Path:
    """A wrk Lua script that POSTs the chat body with ``target``'s headers; with ``limit``,
    one request in ``every`` streams and wrk signals after ``limit`` responses."""
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{CHAT_BODY.decode()}]==]"]
    headers = {**target.headers, "Content-Type": "application/json"}
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    text = "\n".join(lines) + "\n" + _DONE_LUA
    if limit is not None:
        text += (
            _LIMIT_LUA.replace("{path}", PATH)
            .replace("{body}", CHAT_BODY.decode())
            .replace("{stream}", STREAM_BODY.decode())
            .replace("{every}", str(every))
            .replace("{limit}", str(limit))
        )
    path = tmp / f"wrk-{target.name}-{limit or 'sweep'}.lua"
    path.write_text(text, encoding="utf-8")
    return path


def run_wrk(wrk: str, target: Target, script: Path, concurrency: int, seconds: int) -> WrkResult:
    """Run wrk (one thread) against ``target`` for at most ``seconds``; a limit script
    ends it early with SIGINT (wrk then reports what it did, as on Ctrl-C)."""
    argv = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    argv += ["-s", str(script), f"http://{LOOPBACK}:{target.port}{PATH}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.startswith("WRKLIMIT"):
                proc.send_signal(signal.SIGINT)
        stderr = proc.stderr.read() if proc.stderr else ""
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    found = [x for x in out if x.startswith("WRKJSON ")]
    if not found:
        raise RuntimeError(f"wrk gave no result for {target.name}:\n{''.join(out)}{stderr}")
    r = json.loads(found[-1][8:])
    errors = sum(int(r[k]) for k in ("connect", "read", "write", "status", "timeout"))
    target.sent += int(r["requests"])
    return WrkResult(
        concurrency,
        int(r["requests"]),
        r["duration_us"] / 1e6,
        r["p50_us"] / 1e3,
        r["p90_us"] / 1e3,
        r["p99_us"] / 1e3,
        r["max_us"] / 1e3,
        errors,
    )


# --------------------------------------------------------------------------- processes


class Service:
    """A child process with its output in a log file; stopped by its own id only."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches workers
            )

    def tail(self, lines: int = 25) -> str:
        """The last lines of its log."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT (graceful), then SIGTERM, then SIGKILL to its process group."""
        for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers in the group, if any


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_healthy(service: Service, port: int, path: str, timeout: float) -> None:
    """Poll ``GET path`` until 200, the process exits, or ``timeout`` seconds pass."""
    import http.client  # not urllib: it would honour *_proxy variables

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited at start-up:\n{service.tail()}")
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.25)
    raise RuntimeError(f"{service.name} not healthy after {timeout:.0f}s:\n{service.tail()}")


def _proc_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        tree += frontier
    return tree


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def _tcp_rows() -> Iterator[tuple[str, str, str, str]]:
    """(local, remote, state, inode) of every TCP socket, hex as in /proc/net/tcp*."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                yield f[1], f[2], f[3], f[9]


def serving_pid(root: int, port: int) -> int:
    """The process (``root`` or a descendant) that owns the socket listening on ``port``."""
    listening = {
        inode
        for local, _, state, inode in _tcp_rows()
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    }
    for pid in _proc_tree(root):
        if _socket_inodes(pid) & listening:
            return pid
    return root


def foreign_peers(pid: int) -> list[str]:
    """Remote addresses outside loopback that ``pid`` has a TCP socket to, right now."""
    mine = _socket_inodes(pid)
    peers = []
    for _, remote, _, inode in _tcp_rows():
        host = remote.rsplit(":", 1)[0]
        if inode not in mine or set(host) == {"0"}:
            continue
        v4 = bytes.fromhex(host[-8:])[::-1] if len(host) == 8 or "FFFF" in host else None
        loopback = (v4 is not None and v4[0] == 127) or host.endswith("01000000")
        if not loopback:
            peers.append(remote)
    return peers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without proxies or database URLs, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _DROPPED_ENV}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return {**env, **(extra or {})}


# --------------------------------------------------------------------------- gateways


def _heshi_cli(
    python: str, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "heshi", *args], env=env, capture_output=True, text=True, check=False
    )


def _parse_json_object(text: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        return dict(json.loads(text))
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                return parsed
    raise RuntimeError(f"no JSON object in: {text[:300]!r}")


def start_heshi(
    python: str,
    mock_port: int,
    tmp: Path,
    stack: contextlib.ExitStack,
    store_url: str | None = None,
    extra_settings: dict[str, Any] | None = None,
    name: str = "heshi",
) -> Target:
    """``heshi serve`` in front of the mock, with an API key when ``heshi keys`` exists;
    ``extra_settings`` are merged into its heshi.yaml (e.g. ``tracing``)."""
    home = tmp / f"{name}-home"
    home.mkdir()
    config = tmp / f"{name}.yaml"
    backend = {"base_url": f"http://{LOOPBACK}:{mock_port}/v1", "models": [MODEL]}
    settings: dict[str, Any] = {
        "home": str(home),
        "engine": {"enabled": False},
        "backends": {"mock": backend},
    }
    if store_url:
        settings["store"] = {"url": store_url}
    settings.update(extra_settings or {})
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    env = child_env({"HESHI_HOME": str(home)})
    extra: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    if _heshi_cli(python, ["keys", "--help"], env).returncode == 0:
        create = ["keys", "create", "--tenant", "bench", "--name", "bench"]
        create += ["--rpm", "100000000", "--tpm", "10000000000", "--json", "--config", str(config)]
        done = _heshi_cli(python, create, env)
        if done.returncode != 0:
            raise RuntimeError(f"heshi keys create failed:\n{done.stdout}{done.stderr}")
        headers = {"Authorization": f"Bearer {_parse_json_object(done.stdout)['key']}"}
        notes.append("API key from `heshi keys create` (rpm 1e8, tpm 1e10) sent as Bearer")
    else:
        headers = {"Authorization": "Bearer sk-unused-no-auth-yet"}  # same request shape
        if "--open" in _heshi_cli(python, ["serve", "--help"], env).stdout:
            extra.append("--open")
        warnings.append(
            "!!! Heshi ran WITHOUT auth/quota/metering: `heshi keys` does not exist yet in "
            "this checkout, so it was started "
            + ("with --open" if extra else "without a key (no --open option exists yet)")
            + " !!!"
        )
    port = free_port()
    argv = [python, "-m", "heshi", "serve", "--config", str(config), "--no-local"]
    argv += ["--port", str(port), "--log-level", "warning", *extra]
    service = Service(name, argv, env, tmp / f"{name}.log")
    stack.callback(service.stop)
    wait_healthy(service, port, "/healthz", timeout=60)
    pid = serving_pid(service.proc.pid, port)
    target = Target(name, port, headers, pid, notes=notes, warnings=warnings)
    target.service, target.heshi_config = service, config
    return target


def check_metering(python: str, target: Target) -> None:
    """Stop Heshi (so its ledger is flushed) and compare the ledger with what was sent."""
    assert target.service is not None and target.heshi_config is not None
    target.service.stop()
    config = target.heshi_config
    env = child_env({"HESHI_HOME": str(config.parent / "heshi-home")})
    args = ["usage", "--tenant", "bench", "--json", "--config", str(config)]
    done = _heshi_cli(python, args, env)
    try:
        metered = _sum_field(json.loads(done.stdout), "requests") if done.returncode == 0 else -1
    except ValueError:
        metered = -1
    if metered < 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        target.warnings.append(f"could not read Heshi's ledger with `heshi usage`: {detail[0]}")
    elif metered == 0:
        target.warnings.append(
            f"!!! Heshi's ledger has 0 requests for tenant bench of {target.sent} sent: "
            "metering was not on the request path in this run !!!"
        )
    else:
        target.notes.append(
            f"metering verified: `heshi usage` counts {metered} requests for tenant bench; "
            f"the clients saw {target.sent} answered (wrk does not count requests still in "
            "flight when it stops)"
        )


def _sum_field(data: Any, key: str) -> int:
    """The sum of every integer ``key`` anywhere in a JSON value."""
    if isinstance(data, dict):
        own = data.get(key)
        return (own if isinstance(own, int) else 0) + sum(
            _sum_field(v, key) for k, v in data.items() if k != key
        )
    if isinstance(data, list):
        return sum(_sum_field(v, key) for v in data)
    return 0


def ensure_litellm(bin_arg: str | None, venv: Path) -> Path:
    """The ``litellm`` executable: ``--litellm-bin``, or the venv's, creating it if missing."""
    if bin_arg:
        path = Path(bin_arg)
        if not os.access(path, os.X_OK):
            sys.exit(f"error: --litellm-bin {path} is not an executable")
        return path
    path = venv / "bin" / "litellm"
    if path.exists():
        return path
    if venv.resolve().is_relative_to(REPO):
        sys.exit(f"error: refusing to create LiteLLM's venv inside the repository ({venv})")
    python = shutil.which("python3") or sys.executable
    print(f"LiteLLM not found: creating {venv} and installing 'litellm[proxy]' (a few minutes) …")
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--progress-bar", "off", "litellm[proxy]"]
    subprocess.run(pip, check=True)
    if not path.exists():
        sys.exit(f"error: installing litellm[proxy] into {venv} gave no {path}")
    return path


def _litellm_facts(litellm: Path) -> tuple[str, bool]:
    python = litellm.parent / "python"
    code = (
        "import importlib.metadata as m, importlib.util as u;"
        "print(m.version('litellm'), u.find_spec('httptools') is not None)"
    )
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=False, env=child_env()
    )
    version, _, httptools = done.stdout.strip().rpartition(" ")
    return version or "?", httptools == "True"


def start_litellm(litellm: Path, mock_port: int, tmp: Path, stack: contextlib.ExitStack) -> Target:
    """LiteLLM proxy, one worker, a master key and no database, in front of the mock."""
    master_key = "sk-bench-" + secrets.token_hex(16)
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://{LOOPBACK}:{mock_port}/v1",
                    "api_key": "dummy",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "disable_hf_tokenizer_download": True},
        "general_settings": {"master_key": master_key},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    argv = [str(litellm), "--config", str(path), "--host", LOOPBACK, "--port", str(port)]
    argv += ["--num_workers", "1"]
    service = Service("litellm", argv, child_env(LITELLM_ENV), tmp / "litellm.log")
    stack.callback(service.stop)
    wait_healthy(service, port, "/health/liveliness", timeout=240)
    version, httptools = _litellm_facts(litellm)
    notes = [
        f"litellm {version}; key check = general_settings.master_key, no database "
        "(LiteLLM's key check without a DB: no per-key quotas or spend logs)",
        "uvicorn HTTP parser: "
        + ("httptools" if httptools else "h11 (httptools is not in litellm[proxy]'s deps)"),
    ]
    pid = serving_pid(service.proc.pid, port)
    return Target("litellm", port, {"Authorization": f"Bearer {master_key}"}, pid, notes=notes)


# --------------------------------------------------------------------------- phases


def note_idle_cpu(gateways: list[Target], seconds: float = 3.0) -> None:
    """Note how much CPU each gateway burns while idle: it competes with the one under load."""
    before = {t.name: cpu_seconds(t.pid) for t in gateways if t.pid}
    time.sleep(seconds)
    for t in gateways:
        if t.pid:
            share = (cpu_seconds(t.pid) - before[t.name]) / seconds
            t.notes.append(f"idle CPU while nothing calls it: {share * 100:.1f}% of a core")


def rotated(targets: list[Target], k: int) -> list[Target]:
    """``targets`` starting at position ``k`` (mod len): each gets each slot in turn."""
    k %= len(targets)
    return targets[k:] + targets[:k]


def measure_rss(wrk: str, target: Target, sizes: Sizes, tmp: Path) -> list[dict[str, int]]:
    """VmRSS at start and after ``sizes.rss_marks`` requests since the gateway started."""
    assert target.pid is not None
    samples = [{"requests": target.sent, "rss_kib": rss_kib(target.pid)}]
    for mark in sizes.rss_marks:
        need = mark - target.sent
        if need > 0:
            script = wrk_script(target, tmp, limit=need)
            bound = 60 + need // 20  # seconds; a gateway under 20 req/s is broken anyway
            result = run_wrk(wrk, target, script, sizes.rss_concurrency, bound)
            if result.errors:
                raise RuntimeError(f"{target.name}: {result.errors} errors during the RSS run")
        time.sleep(1.0)  # let batched background work (ledger flushes) settle
        samples.append({"requests": target.sent, "rss_kib": rss_kib(target.pid)})
        print(
            f"  {target.name:<8} RSS after {target.sent:>7} requests: "
            f"{samples[-1]['rss_kib'] / 1024:7.1f} MiB",
            flush=True,
        )
    return samples


def measure_c1(
    targets: list[Target], sizes: Sizes, stream: bool
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Concurrency-1 samples per target (seconds), same count each, order rotated; and
    each gateway's CPU milliseconds per request over those calls (less noisy than time)."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    cpu: dict[str, float] = {t.name: 0.0 for t in targets if t.pid is not None}
    n = sizes.stream_n if stream else sizes.latency_n
    for rnd in range(sizes.rounds):
        for target in rotated(targets, rnd):
            before = cpu_seconds(target.pid) if target.pid else 0.0
            got = timed_calls(target, n, sizes.warmup, stream)
            if target.pid:
                cpu[target.name] += cpu_seconds(target.pid) - before
            samples[target.name] += got
            print(
                f"  round {rnd + 1} {target.name:<8} {'ttfc' if stream else 'latency'} "
                f"p50 {pct(got, 0.5) * 1e3:6.2f} ms  p99 {pct(got, 0.99) * 1e3:6.2f} ms",
                flush=True,
            )
    calls = (n + sizes.warmup) * sizes.rounds
    return samples, {name: secs * 1e3 / calls for name, secs in cpu.items()}


def search_max_rps(
    wrk: str, targets: list[Target], sizes: Sizes, levels: list[int], tmp: Path
) -> dict[str, list[list[WrkResult]]]:
    """Per target, per round: the wrk steps of the concurrency search."""
    scripts = {t.name: wrk_script(t, tmp) for t in targets}
    steps: dict[str, list[list[WrkResult]]] = {t.name: [] for t in targets}
    for rnd in range(sizes.rounds):
        misses = {t.name: 0 for t in targets}
        for t in targets:
            steps[t.name].append([])
        for i, conc in enumerate(levels):
            for target in rotated(targets, rnd + i):
                if misses[target.name] >= 2:
                    continue
                r = run_wrk(wrk, target, scripts[target.name], conc, sizes.step_seconds)
                steps[target.name][rnd].append(r)
                over = r.p99_ms > P99_LIMIT_MS or r.errors > 0
                misses[target.name] = misses[target.name] + 1 if over else 0
                print(
                    f"  round {rnd + 1} c={conc:<3} {target.name:<8} {r.rps:9.0f} req/s  "
                    f"p50 {r.p50_ms:7.2f}  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
                    + ("  (over limit)" if over else ""),
                    flush=True,
                )
    return steps


def best_step(steps: list[WrkResult]) -> WrkResult | None:
    """The highest-throughput step with p99 under the limit and no errors."""
    ok = [s for s in steps if s.p99_ms <= P99_LIMIT_MS and s.errors == 0]
    return max(ok, key=lambda s: s.rps) if ok else None


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- report


def summarize(results: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per target: percentiles in ms, added-vs-direct, max RPS, RSS growth."""
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        row: dict[str, Any] = {}
        for phase, key in (("latency", "lat"), ("ttfc", "ttfc")):
            got = results[phase].get(name)
            if got:
                row[f"{key}_p50_ms"] = pct(got, 0.5) * 1e3
                row[f"{key}_p99_ms"] = pct(got, 0.99) * 1e3
        rounds = results["max_rps_steps"].get(name, [])
        bests = [best_step(steps) for steps in rounds]
        if rounds:
            row["max_rps"] = statistics.median(b.rps if b else 0.0 for b in bests)
            row["max_rps_at_conc"] = [b.concurrency if b else None for b in bests]
        for key in ("cpu_ms_per_request", "cpu_ms_per_stream"):
            if name in results.get(key, {}):
                row[key] = results[key][name]
        rss = results["rss"].get(name)
        if rss:
            row["rss_mib"] = [s["rss_kib"] / 1024 for s in rss]
            row["rss_requests"] = [s["requests"] for s in rss]
            row["rss_growth"] = rss[-1]["rss_kib"] / rss[-2]["rss_kib"] - 1
        rows[name] = row
    direct = rows.get("direct", {})
    for name, row in rows.items():
        if name == "direct":
            continue
        for key in ("lat_p50_ms", "lat_p99_ms", "ttfc_p50_ms", "ttfc_p99_ms"):
            if key in row and key in direct:
                row["added_" + key] = row[key] - direct[key]
    return rows


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _fmt(value: Any, spec: str = "8.2f") -> str:
    width = int(spec.split(".", maxsplit=1)[0]) if "." in spec else int(spec[:-1])
    return f"{value:{spec}}" if isinstance(value, int | float) else f"{'-':>{width}}"


def print_table(rows: dict[str, dict[str, Any]], sizes: Sizes) -> None:
    """The summary table: one row per target."""
    small, large = (_k(m) for m in sizes.rss_marks)
    print()
    print(
        f"{'':<8}{'c=1 latency ms':^18}{'added ms':^18}{'c=1 TTFC ms':^18}{'added ms':^18}"
        f"{'max req/s':>10}{'RSS MiB':^26}{'':>8}{'CPU ms/req':>11}"
    )
    print(
        f"{'target':<8}" + f"{'p50':>9}{'p99':>9}" * 4 + f"{'p99<50ms':>10}"
        f"{'start':>8}{'@' + small:>9}{'@' + large:>9}{'growth':>8}{'at c=1':>11}"
    )
    for name, r in rows.items():
        cells = [
            r.get(k)
            for k in (
                "lat_p50_ms",
                "lat_p99_ms",
                "added_lat_p50_ms",
                "added_lat_p99_ms",
                "ttfc_p50_ms",
                "ttfc_p99_ms",
                "added_ttfc_p50_ms",
                "added_ttfc_p99_ms",
            )
        ]
        rss = r.get("rss_mib", [None, None, None])
        growth = r.get("rss_growth")
        print(
            f"{name:<8}"
            + "".join(_fmt(c, "9.3f") for c in cells)
            + _fmt(r.get("max_rps"), "10.0f")
            + "".join(_fmt(m, "8.1f") if i == 0 else _fmt(m, "9.1f") for i, m in enumerate(rss))
            + (f"{growth * 100:+7.1f}%" if growth is not None else f"{'-':>8}")
            + _fmt(r.get("cpu_ms_per_request"), "11.3f")
        )
    if "direct" in rows:
        print(
            "direct = the same clients straight to the mock: the ceiling of the load "
            "generator and mock on this machine; 'added' = target minus direct."
        )


def print_ratios(rows: dict[str, dict[str, Any]], sizes: Sizes) -> None:
    """The three numbers the issue sets targets for, with PASS / FAIL."""

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print()
    heshi, litellm = rows.get("heshi", {}), rows.get("litellm", {})
    if "added_lat_p99_ms" in heshi:
        v = heshi["added_lat_p99_ms"]
        print(
            f"Heshi added p99 at concurrency 1: {v:.3f} ms "
            f"(target <= {TARGET_ADDED_P99_MS:g} ms) {verdict(v <= TARGET_ADDED_P99_MS)}"
        )
    if heshi.get("max_rps") and litellm.get("max_rps"):
        v = heshi["max_rps"] / litellm["max_rps"]
        print(
            f"Heshi max RPS / LiteLLM max RPS (p99 < {P99_LIMIT_MS:g} ms): "
            f"{heshi['max_rps']:.0f} / {litellm['max_rps']:.0f} = x{v:.2f} "
            f"(target >= {TARGET_RPS_RATIO:g}) {verdict(v >= TARGET_RPS_RATIO)}"
        )
    if heshi.get("cpu_ms_per_request") and litellm.get("cpu_ms_per_request"):
        h, lt = heshi["cpu_ms_per_request"], litellm["cpu_ms_per_request"]
        print(
            f"(info) gateway CPU per non-streaming request at concurrency 1: Heshi {h:.3f} ms, "
            f"LiteLLM {lt:.3f} ms, x{lt / h:.1f} (CPU time is less noisy than latency here)"
        )
    small, large = (_k(m) for m in sizes.rss_marks)
    scaled = "" if sizes.rss_marks == FULL.rss_marks else " [scaled down: the target is 10k->100k]"
    for name, row in (("Heshi", heshi), ("LiteLLM", litellm)):
        if "rss_growth" in row:
            v = row["rss_growth"]
            print(
                f"{name} RSS growth {small}->{large} requests: {v * 100:+.1f}% "
                f"(target <= {TARGET_RSS_GROWTH * 100:g}%) "
                f"{verdict(v <= TARGET_RSS_GROWTH)}{scaled}"
            )


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="scaled-down smoke run (~4 min)")
    p.add_argument("--only", default="direct,heshi,litellm", help="comma list of targets")
    p.add_argument("--json", type=Path, help="write raw numbers to this file")
    p.add_argument("--rounds", type=int, help="rounds per phase (order alternates)")
    p.add_argument("--step-seconds", type=int, help="wrk duration per concurrency step")
    p.add_argument("--levels", default="1,2,4,8,16,32,64", help="concurrency steps")
    p.add_argument(
        "--rss-marks", help="requests since start at which RSS is read, e.g. 10000,100000"
    )
    p.add_argument("--litellm-bin", help="an existing litellm executable")
    p.add_argument("--litellm-venv", type=Path, default=DEFAULT_LITELLM_VENV)
    p.add_argument("--heshi-python", help="python that has heshi (default: the repo's .venv)")
    p.add_argument(
        "--heshi-store-url", help="Heshi's store.url (default: SQLite under its temp home)"
    )
    args = p.parse_args()
    args.targets = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(args.targets) - {"direct", "heshi", "litellm"}
    if unknown or not args.targets:
        p.error(f"--only takes direct, heshi, litellm; got {args.only!r}")
    return args


def sizes_for(args: argparse.Namespace) -> Sizes:
    """FULL or QUICK, with --rounds / --step-seconds applied."""
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = replace(sizes, rounds=args.rounds)
    if args.step_seconds:
        sizes = replace(sizes, step_seconds=args.step_seconds)
    if args.rss_marks:
        small, large = (int(x) for x in args.rss_marks.split(","))
        sizes = replace(sizes, rss_marks=(small, large))
    return sizes


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Start everything, measure, return the raw results."""
    sizes = sizes_for(args)
    levels = [int(x) for x in args.levels.split(",")]
    wrk = ensure_wrk()
    litellm_bin = (
        ensure_litellm(args.litellm_bin, args.litellm_venv) if "litellm" in args.targets else None
    )
    venv_python = REPO / ".venv" / "bin" / "python"
    heshi_python = args.heshi_python or (
        str(venv_python) if venv_python.exists() else sys.executable
    )
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="heshi-bench-")))
    mock = stack.enter_context(mock_upstream.running(sys.executable))
    targets: list[Target] = []
    if "direct" in args.targets:
        targets.append(Target("direct", mock.port, {"Authorization": "Bearer sk-direct"}))
    for name in ("heshi", "litellm"):
        if name in args.targets:
            print(f"starting {name} …", flush=True)
            if name == "heshi":
                target = start_heshi(heshi_python, mock.port, tmp, stack, args.heshi_store_url)
            else:
                assert litellm_bin is not None
                target = start_litellm(litellm_bin, mock.port, tmp, stack)
            check_key_enforced(target)
            targets.append(target)
    gateways = [t for t in targets if t.pid is not None]
    note_idle_cpu(gateways)
    results: dict[str, Any] = {"latency": {}, "ttfc": {}, "rss": {}, "max_rps_steps": {}}
    results["meta"] = meta(args, sizes, levels, targets, mock.pid)
    print_meta(results["meta"])
    print(
        "\n[1/4] RSS after requests since start (wrk, concurrency "
        f"{sizes.rss_concurrency}, 1 in 10 streamed)"
    )
    for target in gateways:
        results["rss"][target.name] = measure_rss(wrk, target, sizes, tmp)
    print(f"\n[2/4] latency at concurrency 1, non-streaming, {sizes.latency_n} x {sizes.rounds}")
    results["latency"], results["cpu_ms_per_request"] = measure_c1(targets, sizes, False)
    print(f"\n[3/4] time to first SSE event at concurrency 1, {sizes.stream_n} x {sizes.rounds}")
    results["ttfc"], results["cpu_ms_per_stream"] = measure_c1(targets, sizes, True)
    print(f"\n[4/4] max req/s with p99 < {P99_LIMIT_MS:g} ms, {sizes.step_seconds}s per step")
    results["max_rps_steps"] = search_max_rps(wrk, targets, sizes, levels, tmp)
    for target in gateways:
        assert target.pid is not None
        results["rss"][target.name + "_end"] = {
            "requests": target.sent,
            "rss_kib": rss_kib(target.pid),
            "non_loopback_peers": foreign_peers(target.pid),
        }
        if target.heshi_config is not None:
            check_metering(heshi_python, target)
    results["meta"]["targets"] = target_facts(targets)  # with the notes added since
    return results


def meta(
    args: argparse.Namespace, sizes: Sizes, levels: list[int], targets: list[Target], mock: int
) -> dict[str, Any]:
    """What this run was: machine, sizes, targets and their notes."""
    return {
        "quick": args.quick,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "sizes": asdict(sizes),
        "levels": levels,
        "p99_limit_ms": P99_LIMIT_MS,
        "mock_pid": mock,
        "targets": target_facts(targets),
    }


def target_facts(targets: list[Target]) -> dict[str, Any]:
    """Port, pid and notes of each target, for the JSON file."""
    return {
        t.name: {"port": t.port, "pid": t.pid, "notes": t.notes, "warnings": t.warnings}
        for t in targets
    }


def print_meta(m: dict[str, Any]) -> None:
    """The run's conditions, before any number."""
    print(
        f"\npython {m['python']}, {m['cores']} cores, loadavg {m['loadavg_before'][0]:.2f}. "
        "The mock upstream, the gateway and the load generator share these cores: "
        "absolute numbers are low, compare ratios."
    )
    for name, t in m["targets"].items():
        for note in t["notes"] + t["warnings"]:
            print(f"  {name}: {note}")


def main() -> int:
    """Run the benchmark; exit 0 when it completed (whatever the verdicts)."""
    args = parse_args()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # so the finally blocks stop every child

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            results = run(args, stack)
            print("\nstopping gateways …", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: children stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    sizes = sizes_for(args)
    rows = summarize(results, list(results["meta"]["targets"]))
    results["summary"] = rows
    results["meta"]["loadavg_after"] = os.getloadavg()
    results["meta"]["seconds"] = time.monotonic() - started
    print_table(rows, sizes)
    print_ratios(rows, sizes)
    print("\nconditions:")
    for name, facts in results["meta"]["targets"].items():
        for note in facts["notes"] + facts["warnings"]:
            print(f"  {name}: {note}")
    for name in rows:
        end = results["rss"].get(name + "_end")
        if end and end["non_loopback_peers"]:
            print(f"WARNING: {name} had TCP peers outside loopback: {end['non_loopback_peers']}")
    print(
        f"\n{results['meta']['seconds']:.0f}s, loadavg after "
        f"{results['meta']['loadavg_after'][0]:.2f}"
    )
    if args.json:
        results["latency"] = {
            k: [round(x * 1e6, 1) for x in v] for k, v in results["latency"].items()
        }
        results["ttfc"] = {k: [round(x * 1e6, 1) for x in v] for k, v in results["ttfc"].items()}
        results["raw_units"] = "latency and ttfc lists in microseconds"
        args.json.write_text(json.dumps(results, default=_jsonable, indent=1), encoding="utf-8")
        print(f"raw numbers written to {args.json}")
    return 0


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, WrkResult):
        return {**asdict(obj), "rps": obj.rps}
    raise TypeError(type(obj).__name__)


if __name__ == "__main__":
    sys.exit(main())
