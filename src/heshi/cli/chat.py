"""``heshi chat``: a conversation in the terminal, like ``ollama run``.

Streams the answer as it comes (a thinking model's thought dimmed before it), keeps the
conversation, and reads input with prompt_toolkit, which edits Chinese correctly: wide
characters take two columns, one backspace removes one character, and text an input
method commits arrives whole. Works against the local gateway or any OpenAI-compatible
``--url``.

Commands: ``/clear`` forgets the conversation, ``/model [name]`` lists or switches
models, ``/system <text>`` sets the system prompt, ``\"\"\"`` starts and ends a multi-line
message (Esc-Enter / Alt-Enter also breaks a line), ``/bye`` or Ctrl-D leaves; Ctrl-C
stops an answer.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from heshi.cli.database import ConfigOption
from heshi.config import load_config

HELP = (
    "命令 / commands: /clear 清空对话 forget the conversation · /model [名称 name] 列出或切换模型 "
    'list or switch models · /system <文本 text> 系统提示 system prompt · """ 多行 multi-line '
    "· /bye 退出 leave (Ctrl-D) · Ctrl-C 停止回答 stop an answer"
)


class ChatError(Exception):
    """The gateway refused or could not be reached: shown, the conversation goes on."""


@dataclass
class Conversation:
    """What is sent with each turn."""

    model: str
    system: str | None = None
    max_tokens: int | None = None
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns


class Client:
    """The OpenAI-compatible endpoint the chat talks to."""

    def __init__(self, base_url: str, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(600, connect=10))

    def models(self) -> list[str]:
        try:
            reply = self.http.get(self.base_url + "/models")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        data = self._json(reply)
        return [str(m["id"]) for m in data.get("data") or ()]

    def _unreachable(self, exc: Exception) -> ChatError:
        return ChatError(
            f"无法连接 {self.base_url}（网关在运行吗？）/ cannot reach {self.base_url} "
            f"(is the gateway running?): {exc}"
        )

    def stream(self, conversation: Conversation) -> Iterator[tuple[str, str]]:
        """("reasoning" | "content", text) pieces of the answer as they arrive."""
        body: dict[str, Any] = {
            "model": conversation.model,
            "messages": conversation.messages(),
            "stream": True,
        }
        if conversation.max_tokens is not None:
            body["max_tokens"] = conversation.max_tokens
        try:
            with self.http.stream("POST", self.base_url + "/chat/completions", json=body) as r:
                if r.status_code >= 400:
                    r.read()
                    self._json(r)
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise ChatError(str(chunk["error"].get("message", chunk["error"])))
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if delta.get("reasoning_content"):
                            yield "reasoning", str(delta["reasoning_content"])
                        if delta.get("content"):
                            yield "content", str(delta["content"])
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def _json(self, r: httpx.Response) -> dict[str, Any]:
        try:
            data = r.json()
        except ValueError:
            data = {}
        if r.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise ChatError((message or f"HTTP {r.status_code}") + key_hint(r.status_code))
        return data if isinstance(data, dict) else {}


def key_hint(status: int) -> str:
    """What a command-line user does about a 401: the gateway's message speaks to any
    client, this names the option and the variable."""
    if status != 401:
        return ""
    return (
        " — 用 --key 或环境变量 HESHI_API_KEY 给出密钥 / give the key with --key or HESHI_API_KEY"
    )


def _printable_key(value: str | None) -> str | None:
    """A key goes into an HTTP header: printable ASCII only (a placeholder copied from the
    docs, ``sk-heshi-…``, is refused here rather than by the HTTP library's traceback)."""
    if value is not None and not (value.isascii() and value.isprintable() and " " not in value):
        raise typer.BadParameter(
            "密钥只能含可打印 ASCII 字符（是否粘贴了文档中的占位符？）/ a key is printable "
            "ASCII without spaces (a placeholder from the docs pasted?)"
        )
    return value


ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        callback=_printable_key,
        envvar="HESHI_API_KEY",
        help="API 密钥（或环境变量 HESHI_API_KEY）/ API key (or HESHI_API_KEY).",
        show_default=False,
    ),
]


def chat(
    model: Annotated[
        str | None,
        typer.Argument(help="模型名（默认：网关的对话模型）/ Model name.", show_default=False),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="OpenAI 兼容地址（默认本地网关 http://127.0.0.1:8000/v1）/ An OpenAI-compatible "
            "base URL (default: the local gateway).",
            show_default=False,
        ),
    ] = None,
    key: ApiKeyOption = None,
    system: Annotated[
        str | None, typer.Option("--system", help="系统提示 / System prompt.", show_default=False)
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, help="每次回答的上限 / Most tokens an answer may use."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """在终端里与模型对话。/ Chat with a model in the terminal."""
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    client = Client(url or _local_url(config), key)
    try:
        models = client.models()
    except ChatError as exc:
        err.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from exc
    if model is None:
        model = _default_model(models, config)
    if model is None:
        err.print("网关没有可用的模型 / the gateway serves no model", style="red", markup=False)
        raise typer.Exit(1)
    conversation = Conversation(model, system, max_tokens)
    if not sys.stdin.isatty():  # piped: the whole input is one message
        text = sys.stdin.read().strip()
        if text and not _answer(client, conversation, text, console, err):
            raise typer.Exit(1)  # a script piping a question must see the failure
        return
    _repl(client, conversation, models, console, err)


def _repl(
    client: Client,
    conversation: Conversation,
    models: list[str],
    console: Console,
    err: Console,
) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory

    session: PromptSession[str] = PromptSession(history=InMemoryHistory())
    console.print(f"{conversation.model} · /help", style="dim", markup=False)
    while True:
        try:
            text = _read(session)
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            console.print("再见 / bye", style="dim", markup=False)
            return
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("/") and not stripped.startswith(("/think", "/no_think")):
            if not _command(stripped, client, conversation, models, console, err):
                return
            continue
        _answer(client, conversation, text, console, err)


def _read(session: Any) -> str:
    """One message: a line, or the lines between two ``\"\"\"``."""
    first = str(session.prompt(">>> "))
    if not first.strip().startswith('"""'):
        return first
    lines: list[str] = [first.strip()[3:]]
    if lines[0].endswith('"""'):
        return lines[0][:-3]
    while True:
        line = str(session.prompt("... "))
        if line.rstrip().endswith('"""'):
            lines.append(line.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        lines.append(line)


def _command(
    text: str,
    client: Client,
    conversation: Conversation,
    models: list[str],
    console: Console,
    err: Console,
) -> bool:
    """Run a ``/command``; False to leave."""
    name, _, arg = text.partition(" ")
    arg = arg.strip()
    if name in ("/bye", "/exit", "/quit"):
        console.print("再见 / bye", style="dim", markup=False)
        return False
    if name == "/clear":
        conversation.turns.clear()
        console.print("已清空对话 / conversation cleared", style="dim", markup=False)
    elif name == "/model":
        if not arg:
            for m in models:
                mark = "*" if m == conversation.model else " "
                console.print(f"{mark} {m}", markup=False)
        else:
            try:
                models[:] = client.models()
            except ChatError as exc:
                err.print(str(exc), style="red", markup=False)
                return True
            if arg not in models:
                err.print(
                    f"没有模型 {arg} / no model {arg}; 可用 available: {', '.join(models)}",
                    style="red",
                    markup=False,
                )
            else:
                conversation.model = arg
                console.print(f"已切换到 / now using {arg}", style="dim", markup=False)
    elif name == "/system":
        conversation.system = arg or None
        console.print("已设置系统提示 / system prompt set", style="dim", markup=False)
    elif name == "/help":
        console.print(HELP, style="dim", markup=False)
    else:
        err.print(f"未知命令 / unknown command {name}. {HELP}", style="red", markup=False)
    return True


def _answer(
    client: Client, conversation: Conversation, text: str, console: Console, err: Console
) -> bool:
    """Ask ``text`` and print the answer as it comes; False when it failed (said on
    stderr)."""
    conversation.turns.append({"role": "user", "content": text})
    answer: list[str] = []
    thinking = False
    try:
        for kind, piece in client.stream(conversation):
            if kind == "reasoning":
                thinking = True
                console.print(piece, style="dim italic", end="", markup=False, soft_wrap=True)
                continue
            if thinking:
                console.print("\n", end="")
                thinking = False
            answer.append(piece)
            console.print(piece, end="", markup=False, soft_wrap=True)
        console.print()
    except KeyboardInterrupt:
        console.print("\n[已停止 / stopped]", style="dim", markup=False)
    except ChatError as exc:
        console.print()
        err.print(str(exc), style="red", markup=False)
        conversation.turns.pop()  # the question was not answered: ask again
        return False
    conversation.turns.append({"role": "assistant", "content": "".join(answer)})
    return True


def _local_url(config_path: Any) -> str:
    config = load_config(config_path)
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return os.environ.get("HESHI_URL") or f"http://{host}:{config.server.port}/v1"


def _default_model(models: list[str], config_path: Any) -> str | None:
    """The configured chat model when the gateway serves it, else its first model."""
    try:
        preferred = load_config(config_path).engine.name
    except Exception:  # an unreadable heshi.yaml does not stop a chat with a remote URL
        preferred = None
    if preferred in models:
        return preferred
    chat = [m for m in models if m != "auto"]
    return chat[0] if chat else (models[0] if models else None)
