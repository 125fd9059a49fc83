"""When a conversation goes to a person: asked for, angry, or the bot failed twice.

Rules, not a model: they run in microseconds on every turn and can be read and audited.
An information question about people or complaints (人工客服几点上班？ 投诉多久处理？) is
a question for the knowledge base, not a handoff; a request (转人工, 我要投诉, 叫你们经理来,
能不能让真人跟我说) or anger (气死我了, 什么破服务) is. Measured on the gold set of
benchmarks/kb.py (handoff requests found, ordinary questions not handed off).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Reason = Literal["asked", "angry", "failed"]
FAILURES_BEFORE_HANDOFF = 2

_ASK = [
    r"转\s*(到|接|给)?\s*(人工|真人|客服)",
    r"(找|要|接|换|叫|喊|请|联系|让)\s*(个|一个|位)?\s*(人工|真人|活人|客服专员|专员|人工客服)",
    r"(叫|找|让|请)\s*(你们)?(的)?\s*(经理|领导|主管|负责人|老板)",
    r"(让|叫|换|找)\s*(个|一个)?\s*(人|真人)\s*(来|跟|和|给)",
    r"(跟|和|同)\s*(真人|人工|活人)\s*(说|谈|聊|沟通|讲)",
    r"不(想|要)\s*(跟|和)?\s*(机器人?|ai|智能客服|你)\s*(聊|说|谈|讲|对话)",
    r"(我|俺)\s*(要|想|必须|得)\s*(投诉|举报|维权|告你们)",
    r"投诉\s*(你们|你|他们|这个)",
    r"^\s*(人工|真人|人工服务|人工客服|转人工|客服)\s*[!！。.]*\s*$",
    r"(机器人|ai)\s*(没用|不行|听不懂|答非所问)",
    r"(管事|能做主|说了算|负责)的(人)?",
    r"人工\s*(介入|处理|坐席|座席|服务)",
    r"(跟|和|找|接|要|让|叫)\s*(一下)?\s*(你们)?(的)?\s*(工作人员|客服专员|专员|真人|活人)",
    r"换\s*(个|一个|位)\s*(人|客服|真人|人工)",
    r"(领导|经理|主管|负责人)\s*(给我)?\s*(打|回)\s*(个)?\s*电话",
    r"(我\s*要|我\s*想|要)\s*投述|投诉到底",
    r"(消协|12315|工商局|市场监管|媒体).{0,6}(告|投诉|举报)|告你们|去告",
]
_ANGRY = [
    r"气死", r"破(服务|系统|公司|机器人|玩意|app|软件|客服)", r"垃圾", r"什么玩意", r"骗子",
    r"坑(人|爹|钱)", r"太差(劲)?了", r"受够", r"他妈|妈的|tmd|尼玛|卧槽|我靠", r"听不懂人话",
    r"(你|你们)是不是(傻|有病|脑子)", r"废物", r"滚", r"[!！]{3,}", r"[?？]{3,}", r"退钱[!！]",
    r"(再|还)不(解决|处理).{0,6}(投诉|曝光|12315)", r"曝光你们", r"12315",
    r"到底(能不能|会不会|行不行|有没有人)", r"(还是|又)不对", r"浪费我", r"你(根本)?听不懂",
]  # fmt: skip
# Asking *about* people or complaints: hours, numbers, procedures, deadlines.
_ABOUT = re.compile(
    r"(几点|什么时候|时间|多久|时限|几天|电话|号码|热线|怎么|如何|流程|渠道|方式|在哪|哪里|"
    r"规定|标准|范围|条件|是什么|是多少|能否|可不可以|吗|么)"
)
_STRONG = re.compile(
    r"转\s*(到|接|给)?\s*人工|我\s*要\s*投诉|给我\s*(转|找|接)|马上|立刻|现在就|"
    r"(让|叫)\s*你们\s*(的)?\s*(领导|经理|主管|负责人)"
)
_ASK_RE = [re.compile(p) for p in _ASK]
# The same requests as they sound (a homophone typo such as 转仁工, or typed in pinyin).
_ASK_SOUNDS = ("zhuanrengong", "zhaorengong", "yaorengong", "jierengong", "zhuanjierengong")
_ANGRY_RE = [re.compile(p) for p in _ANGRY]


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _sounds_like_asking(text: str) -> bool:
    """``转仁工``, ``zhuan rengong``, ``转rengong``: the request, by its sound."""
    from pypinyin import lazy_pinyin

    sound = re.sub(r"[^a-z]", "", "".join(lazy_pinyin(text)).lower())
    return any(s in sound for s in _ASK_SOUNDS)


def handoff_reason(message: str, failures: int = 0) -> Reason | None:
    """Why the conversation should go to a person after ``message`` (the user's latest
    turn), given ``failures`` answers in a row that the knowledge base could not ground;
    None when the bot should answer."""
    text = _normal(message)
    if any(p.search(text) for p in _ANGRY_RE):
        return "angry"
    asked = any(p.search(text) for p in _ASK_RE) or _sounds_like_asking(text)
    if asked and (_STRONG.search(text) or not _ABOUT.search(text)):
        return "asked"
    if failures >= FAILURES_BEFORE_HANDOFF:
        return "failed"
    return None
