"""`heshi chat` in a real terminal (tmux): typing Chinese, deleting a wide character,
multi-line messages, /clear, /model, the conversation kept between turns, Ctrl-D."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from heshi.store.keys import KeyStore
from tests.fakes.waiting import wait_until
from tests.governance.conftest import GatewayFactory, Upstream, gateway_config

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="needs tmux (.ci/run installs it)"
)


class Terminal:
    """One tmux session running a command, 100 x 30."""

    def __init__(self, command: list[str]) -> None:
        self.name = f"heshi-{uuid.uuid4().hex[:8]}"
        line = " ".join(subprocess.list2cmdline([c]) for c in command)
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "100", "-y", "30",
             f"env LANG=C.UTF-8 {line}"],
            check=True,
        )  # fmt: skip

    def type(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        """What the terminal shows (tmux drops the spaces that end a line)."""
        out = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            check=False,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def wait_for(self, text: str, timeout: float = 30) -> str:
        wait_until(lambda: text in self.screen(), timeout=timeout, interval=0.05,
                   message=lambda: f"{text!r} never appeared:\n{self.screen()}")  # fmt: skip
        return self.screen()

    def alive(self) -> bool:
        done = subprocess.run(
            ["tmux", "has-session", "-t", self.name], check=False, capture_output=True
        )
        return done.returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False, capture_output=True)


@pytest.fixture
def terminal(upstream: Upstream, start_gateway: GatewayFactory, home: Path) -> Iterator[Terminal]:
    upstream.state.echo = True  # the answer repeats the last message: turns are visible
    gw = start_gateway(gateway_config(home, upstream.base_url))
    term = Terminal([sys.executable, "-m", "heshi", "chat", "--url", gw.url + "/v1"])
    try:
        term.wait_for("\n>>>")
        yield term
    finally:
        term.close()


def messages(upstream: Upstream) -> list[dict]:
    return upstream.state.bodies[-1]["messages"]


def test_chinese_input_backspace_and_turns(terminal: Terminal, upstream: Upstream) -> None:
    terminal.type("你好世界")
    terminal.wait_for(">>> 你好世界")
    terminal.type("BSpace")  # one keypress removes one wide character, not half of one
    screen = terminal.wait_for(">>> 你好世\n")
    assert "你好世界" not in screen
    terminal.type("Enter")
    terminal.wait_for("\n你好世\n>>>")  # the answer (the echo), then the prompt again
    assert messages(upstream) == [{"role": "user", "content": "你好世"}]

    terminal.type("再说一遍", "Enter")
    terminal.wait_for("\n再说一遍\n>>>")
    assert [m["content"] for m in messages(upstream)] == ["你好世", "你好世", "再说一遍"]

    terminal.type("/clear", "Enter")
    terminal.wait_for("conversation cleared")
    terminal.type("新话题", "Enter")
    terminal.wait_for("\n新话题\n>>>")
    assert messages(upstream) == [{"role": "user", "content": "新话题"}]


def test_multiline_model_switch_and_ctrl_d(terminal: Terminal, upstream: Upstream) -> None:
    terminal.type('"""第一行', "Enter")
    terminal.wait_for("\n...")
    terminal.type('第二行"""', "Enter")
    terminal.wait_for("第二行\n>>>")
    assert messages(upstream)[-1]["content"] == "第一行\n第二行"

    terminal.type("/model", "Enter")
    terminal.wait_for(f"* {upstream.state.model}")
    terminal.type("/model nope", "Enter")
    terminal.wait_for("no model nope")
    terminal.type("/help", "Enter")
    terminal.wait_for("/clear")

    terminal.type("C-d")
    terminal.wait_for("bye")
    wait_until(lambda: not terminal.alive(), timeout=10, interval=0.05,
               message="heshi chat did not exit on Ctrl-D")  # fmt: skip


def test_piped_chat_says_what_failed_and_exits_1(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path
) -> None:
    """A script piping a question must see a failure: no traceback, exit 1."""
    gw = start_gateway(gateway_config(home, upstream.base_url))

    def chat(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "heshi", "chat", *args], input="你好", text=True,
            capture_output=True, timeout=120, check=False,
            env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin", "HESHI_HOME": str(home)},
        )  # fmt: skip

    closed = chat("--url", "http://127.0.0.1:9/v1")  # nothing listens there
    assert closed.returncode == 1 and "cannot reach" in closed.stderr
    assert "Traceback" not in closed.stdout + closed.stderr
    unknown = chat("nosuch-model", "--url", gw.url + "/v1")
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr


def test_a_refused_key_is_told_where_a_key_goes(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path, keys: KeyStore
) -> None:
    """The gateway's 401 speaks to any client; heshi chat names --key and HESHI_API_KEY."""
    plaintext, _ = keys.create("acme", "bot")
    gw = start_gateway(gateway_config(home, upstream.base_url))
    env = {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin", "HESHI_HOME": str(home)}
    for key in ([], ["--key", "hs-wrong"]):
        refused = subprocess.run(
            [sys.executable, "-m", "heshi", "chat", "--url", gw.url + "/v1", *key],
            input="你好", text=True, capture_output=True, timeout=120, check=False, env=env,
        )  # fmt: skip
        assert refused.returncode == 1, refused.stderr
        assert "--key or HESHI_API_KEY" in " ".join(refused.stderr.split())  # wrapped
    answered = subprocess.run(
        [sys.executable, "-m", "heshi", "chat", "--url", gw.url + "/v1"], input="你好",
        text=True, capture_output=True, timeout=120, check=False,
        env={**env, "HESHI_API_KEY": plaintext},
    )  # fmt: skip
    assert answered.returncode == 0 and "HESHI_API_KEY" not in answered.stderr
