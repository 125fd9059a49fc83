"""The ``curl`` lines of docs/admin-api.md, run in order against a gateway on loopback
(the doc's host and port replaced by the test gateway's), so the examples cannot drift."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import (
    GatewayFactory,
    gateway_config,
    start_gateway,
    upstream,
)

__all__ = ["start_gateway", "upstream"]  # fixtures used here
DOC = Path(__file__).parents[2] / "docs" / "admin-api.md"
_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def curl_lines() -> list[str]:
    lines = []
    for block in _BLOCK.findall(DOC.read_text("utf-8")):
        lines += [line.strip() for line in block.splitlines() if line.strip().startswith("curl ")]
    return lines


def run_curl(line: str, base: str, env: dict[str, str], cwd: Path) -> httpx.Response:
    """The subset of curl the doc uses: -s, -X, -H, -d, -o, -F name=@file (in ``cwd``)."""
    for name, value in env.items():
        line = line.replace(f"${name}", value)
    args = shlex.split(line)[1:]
    method, url, headers, data = "GET", "", {}, None
    files: dict[str, tuple[str, bytes]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-s":
            i += 1
            continue
        if arg in ("-X", "-H", "-d", "-o", "-F"):
            value = args[i + 1]
            if arg == "-F":
                name, _, path = value.partition("=@")
                files[name] = (path, (cwd / path).read_bytes())
                method = "POST" if method == "GET" else method
            elif arg == "-X":
                method = value
            elif arg == "-H":
                key, _, val = value.partition(":")
                headers[key.strip()] = val.strip()
            elif arg == "-d":
                data = value.encode()
                method = "POST" if method == "GET" else method  # as curl does
            i += 2
            continue
        assert arg.startswith("http://127.0.0.1:8000/"), f"unexpected curl argument {arg!r}"
        url = base + arg.removeprefix("http://127.0.0.1:8000")
        i += 1
    if files:
        return httpx.request(method, url, headers=headers, files=files, timeout=60)
    return httpx.request(method, url, headers=headers, content=data, timeout=30)


def test_every_curl_line_of_the_doc_works_in_order(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    lines = curl_lines()
    assert len(lines) >= 8
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    env = {"HESHI_ADMIN_TOKEN": ADMIN_TOKEN}
    (tmp_path / "常见问题.md").write_text("# 退货\n签收后七天内可以无理由退货。\n", "utf-8")
    for line in lines:
        r = run_curl(line, gw.url, env, tmp_path)
        assert r.is_success, (line, r.status_code, r.text)
        if "/admin/v1/keys -H" in line and "-X POST" in line:
            env["KEY_ID"] = r.json()["id"]
    assert "KEY_ID" in env
