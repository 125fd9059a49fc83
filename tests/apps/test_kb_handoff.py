"""Handoff rules on phrasings written for this test (not the benchmark's gold set)."""

from __future__ import annotations

import pytest

from heshi.apps.kb.handoff import handoff_reason


@pytest.mark.parametrize(
    "message",
    [
        "请帮我转接人工服务",
        "麻烦人工介入一下",
        "我要找真人",
        "叫你们主管出来说话",
        "转人工转人工",
        "zhuanrengong",
        "赚人工",  # a homophone typo of 转人工
        "我要投诉你们的配送员",
        "能不能换个客服",
    ],
)
def test_requests_for_a_person(message: str) -> None:
    assert handoff_reason(message) == "asked"


@pytest.mark.parametrize(
    "message",
    ["你们是骗子吧", "气死了，等了一个礼拜", "什么垃圾系统！", "你到底会不会啊", "退钱！"],
)
def test_anger(message: str) -> None:
    assert handoff_reason(message) == "angry"


@pytest.mark.parametrize(
    "message",
    [
        "人工客服的工作时间是几点到几点？",
        "投诉一般多久能处理完？",
        "怎么联系人工客服，电话多少？",
        "我想了解一下投诉的流程",
        "经理级别的会员有什么权益？",
        "你们客服热线是多少",
        "人工服务要收费吗",
        "快递员上门取件吗？",
    ],
)
def test_questions_about_people_or_complaints_are_answered(message: str) -> None:
    assert handoff_reason(message) is None


def test_two_failures_in_a_row_hand_off() -> None:
    assert handoff_reason("积分怎么兑换？", failures=1) is None
    assert handoff_reason("积分怎么兑换？", failures=2) == "failed"
