"""Whether a tool call's values come from the conversation, and whether an answer in
words claims an action no call carried out.

A small model asked to call a tool it has no arguments for makes them up: an order number
copied from a description's example, a phone number like 13800138000, a card ending 1234,
a user called 张三. Under ``tool_choice: auto`` the engine refuses such a call
(``engine.tool_call_grounding``) and answers in words instead. The opposite mistake is an
answer in words that says the action is done (“好的，我已经提交了调休申请。”) when nothing
was called: :func:`claims_action` finds it, and the engine then makes the call the
which-function question ranked first (:mod:`heshi.engines.local_tools`).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import orjson

from heshi.engines.base import JSON, content_text

# An identifier: five or more digits (order, account, card, phone, employee numbers).
_MIN_ID_DIGITS = 5
# dates (2026-12-28, 2026/12) and times (14:30, 09:00:00): never identifiers
_DATE_OR_TIME = re.compile(
    r"(?<!\d)(?:19|20)\d\d[-/.](?:1[0-2]|0?[1-9])(?:[-/.](?:3[01]|[12]\d|0?[1-9]))?(?!\d)"
    r"|(?<!\d)(?:2[0-3]|[01]?\d)[:：][0-5]\d(?:[:：][0-5]\d)?(?!\d)"
)
_NUMBER_RUN = re.compile(r"\d(?:[\d\s\-./]*\d)?")
# what a model writes where it has no value: template names, "the new address", x's
_PLACEHOLDER = re.compile(
    r"^(?:张三|李四|王五|赵六|某某.*|.*[xX]{3,}.*|.*\*{3,}.*|<[^>]*>|示例.*|例如.*|"
    r"(?:新的?|您的|你的|用户的?|对方的?|收款人的?)(?:收货|配送|新)?(?:地址|姓名|名字|账号|卡号|"
    r"手机号|电话|订单号|单号|用户名)|example.*|sample.*|string|your[_ ].*|user(?:name)?)$",
    re.IGNORECASE,
)
# an answer in words that says an action is done or about to be, by the assistant
_ACTIONS = (
    "提交|办理|申请|安排|转接|转入|转出|转账|转给|转过去|汇款|汇过去|冻结|挂失|预约|预订|预定|"
    "订好|修改|更改|改为|改到|改成|取消|重置|创建|登记|下单|充值|退款|退回|寄出|发出|派送|"
    "再送|配送|开通|解冻|报修|提报|生成|发起"
)
_DONE = re.compile(rf"已(?:经)?(?:成功)?(?:为|帮|给|替)?(?:您|你)?(?:成功)?(?:{_ACTIONS})")
_PROMISED = re.compile(
    rf"(?:我|我们|这边)(?:会|将|马上|立即|立刻|这就|现在就?|稍后)[^。！？!?\n]{{0,20}}?(?:{_ACTIONS})"
)
_SENTENCES = re.compile(r"(?<=[。！!；;\n])")
# an answer that asks for something, or tells the user what to provide, claims nothing
_ASKS = re.compile(
    r"[？?]|请(?:提供|告诉|告知|输入|确认|问)|麻烦(?:您|你)?提供|(?:您|你)?需要提供|(?:您|你)需要"
)


def conversation_text(body: JSON) -> str:
    """Everything the conversation says (messages and earlier calls' arguments), not the
    tool descriptions: where a call's identifiers must come from."""
    parts: list[str] = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        parts.append(content_text(message.get("content"), "\n"))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "\n".join(parts)


def invented_values(arguments: str, conversation: str) -> list[str]:
    """The values in a call's ``arguments`` holding an identifier — five or more digits —
    that the conversation never gave: an order, account or phone number the model made up
    rather than took from the user or a tool result. A value that is only dates and times
    (2026-12-28, 15:00-18:00) holds none; a value whose every number the conversation
    holds (free text quoting the user: "B座12楼1208工位") is not made up; otherwise its
    digits, however separated (138_0013_8000, ORD-2026-05-0001), must occur together in
    the conversation. Integers of nine or more digits count too (an account number
    written as a JSON number); shorter ones are amounts. Placeholders the conversation
    never said are made up whatever their digits: 张三, 新的收货地址, xxx, <name>,
    example, and digits that only count (1234, 6789, 0000: a card's "last four")."""
    try:
        values = list(_strings(orjson.loads(arguments)))
    except orjson.JSONDecodeError:
        return []
    runs = [re.sub(r"\D", "", r) for r in _NUMBER_RUN.findall(conversation)]
    said = "\n".join(runs)
    flat = re.sub(r"\s", "", conversation).lower()
    invented = []
    for value in values:
        digits = re.sub(r"\D", "", value)
        bare = value.strip()
        if bare and re.sub(r"\s", "", bare).lower() not in flat and _PLACEHOLDER.match(bare):
            invented.append(value)
            continue
        if bare == digits and _dummy_digits(digits) and not any(digits in run for run in runs):
            invented.append(value)  # 1234, 0000, 6789: a card's "last four" nobody said
            continue
        if len(digits) < _MIN_ID_DIGITS or not re.search(r"\d", _DATE_OR_TIME.sub("", value)):
            continue
        if re.sub(r"\s", "", value).lower() in flat or any(digits in run for run in runs):
            continue
        pieces = [p for p in re.findall(r"\d+", value) if len(p) > 1]
        if pieces and all(p in said for p in pieces):
            continue
        invented.append(value)
    return invented


def _dummy_digits(digits: str) -> bool:
    """Four or more digits counting up or down by one, or one digit repeated."""
    if len(digits) < 4:
        return False
    steps = {int(b) - int(a) for a, b in itertools.pairwise(digits)}
    return steps in ({1}, {-1}, {0})


def claims_action(text: str, said: str = "") -> bool:
    """Whether an answer in words says the assistant has done, or is doing, something a
    function would do — submitted, transferred, booked, cancelled, rescheduled — without
    asking the user anything: “好的，我已经提交了调休申请。”, “已为您充值 50 元。”,
    “我会在下周一再送。”. An answer that asks or says what is needed (“请提供订单号”) claims
    nothing; one that only reports (“已为您查到…”) neither; nor does a sentence the
    assistant already said (``said``: its earlier answers) — repeating the report of an
    action a tool carried out earlier."""
    if not text or _ASKS.search(text):
        return False
    new = [s for s in _SENTENCES.split(text) if s.strip() and s.strip() not in said]
    return any(_DONE.search(s) or _PROMISED.search(s) for s in new)


def asked_after_call(body: JSON, function: str) -> bool:
    """Whether ``function`` was already called in the conversation and the user's latest
    message asks a question (转成功了吗？): words about that call answer it — they are not
    a claim to act on again."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    called = any(
        (call.get("function") or {}).get("name") == function
        for m in messages
        if m.get("role") == "assistant"
        for call in m.get("tool_calls") or ()
        if isinstance(call, dict)
    )
    last = content_text(messages[-1].get("content")) if messages else ""
    return called and bool(re.search(r"[？?]|吗|么$", last.strip()))


def assistant_text(body: JSON) -> str:
    """What the assistant has already said in the conversation."""
    return "\n".join(
        content_text(m.get("content"), "\n")
        for m in body.get("messages") or ()
        if isinstance(m, dict) and m.get("role") == "assistant"
    )


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**8:
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
