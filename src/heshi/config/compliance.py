"""The compliance sections of ``heshi.yaml``: the guard (lexicons, PII, the guard model,
key suspension) and AIGC labels. Defaults live here, with their reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from heshi.config.base import Strict


class SuspensionConfig(Strict):
    """When a key is suspended for violating input (an admin resumes it)."""

    enabled: bool = True  # false for e.g. the tenant that runs `heshi eval safety`
    consecutive: int = Field(default=3, ge=1)  # violations in a row
    daily: int = Field(default=5, ge=1)  # violations in one UTC day


class GuardModelConfig(Strict):
    """An optional safety classifier (e.g. Qwen3Guard-Gen) behind one of Heshi's aliases."""

    alias: str | None = None  # a model name the gateway serves; None = no model stage
    block: list[str] = Field(default_factory=lambda: ["Unsafe"])  # levels that refuse
    flag: list[str] = Field(default_factory=lambda: ["Controversial"])  # levels recorded
    outbound: bool = True  # also judge plain (non-streamed) answers
    on_error: Literal["allow", "block"] = "allow"  # classifier unreachable or unreadable


class BandJudgeConfig(Strict):
    """The model asked about prompts the classifier is unsure of (heshi.guard.judges)."""

    enabled: bool = True
    above: float = Field(default=0.4, ge=0, le=1)  # scores from here to block_above
    model: str | None = None  # an alias; None = the embedded chat model (engine.name)
    # blocks when the probability the judge gives 有害 (its first token's logprobs; 1 or 0
    # from its text when the backend returns none) is at least this (docs/guard.md)
    min_probability: float = Field(default=0.6, gt=0, le=1)
    # a request for fiction (a story, poem, script…) is asked about as fiction: does the
    # piece have to contain a method, sex, an insult to a group…? Off: its instruction
    # leaves out risks the general one names, and a pretext reaches it (heshi.guard.fiction)
    fiction: bool = False


class GuardClassifierConfig(Strict):
    """The trained safety classifier on prompts (heshi.guard.classifier, docs/guard.md)."""

    enabled: bool = True
    weights: Path | None = None  # None = the weights shipped with Heshi
    threshold: float | None = Field(default=None, gt=0, lt=1)  # None = the weights' own
    # flag by default: what the threshold adds below the confident band is recorded and
    # cautioned, not refused (docs/guard.md); block once checked on your traffic
    action: Literal["block", "flag"] = "flag"
    # scores at or above this block even when the action is flag: the confident band
    # (0.7: 83% of should-refuse prompts, 0.5% of should-answer ones on our banks);
    # below it, the band judge decides (judge.above up: 9% of our banks' prompts), and a
    # flag adds the answering policy's caution (docs/guard.md); both chosen on our banks and
    # the first held-out bank with the judge's verdicts, then measured on others
    block_above: float | None = Field(default=0.7, gt=0, le=1)
    judge: BandJudgeConfig = Field(default_factory=BandJudgeConfig)
    messages: int = Field(default=4, ge=1, le=64)  # the newest messages scored


class AnsweringPolicyConfig(Strict):
    """The answering policy: a system prompt that has the model decline TC260-003's
    risks and answer questions that only mention them (heshi.guard.policy)."""

    enabled: bool = True
    text: str | None = None  # None = Heshi's (heshi.guard.policy.DEFAULT_POLICY)
    # the classifier's flagged prompts get a caution naming the risk; the model judges
    caution: bool = True
    # only requests the classifier scores at or above this get the policy (or that any
    # stage found something in); below it they get only ``plain``. None = every one
    above: float | None = Field(default=0.2, ge=0, le=1)
    # below ``above``, a request with no system prompt of its own gets this short one
    # instead. None = Heshi's (heshi.guard.policy.PLAIN_POLICY); "" = none
    plain: str | None = None
    # a request scored below this (no stage found anything, no system prompt of its own)
    # whose answer opens with a decline is asked again; None = never (heshi.guard.policy)
    retry_below: float | None = Field(default=0.4, ge=0, le=1)
    # how many more times such a request is asked while its answers decline (0 = never)
    retries: int = Field(default=1, ge=0, le=5)


class GuardConfig(Strict):
    """The compliance guard on generation requests (docs/guard.md). Every field may be
    overridden per tenant under ``tenants.<name>.guard``."""

    enabled: bool = False
    # What the upstream model sees of personal information in prompts.
    pii: Literal["off", "redact", "mask", "pseudonymize"] = "pseudonymize"
    inbound: bool = True  # screen prompts with the lexicons
    outbound: bool = True  # screen generated text (streams included)
    lexicons: list[Path] = Field(default_factory=list)  # empty = the shipped seed lexicon
    actions: dict[str, Literal["block", "replace", "flag"]] = Field(default_factory=dict)
    refusal: str = "抱歉，这个问题我无法回答。如有其他问题，欢迎继续咨询。"
    # after the refusal of a message about suicide or self-harm; "" = none (heshi.guard.crisis)
    crisis: str = (
        "如果你正在想伤害自己，你并不孤单：现在有危险请拨打 110 或 120；想找人聊聊，可以拨打"
        "全国统一心理援助热线 12356。/ If you are thinking of harming yourself, you are not alone: "
        "call 110 or 120 in an emergency, or the national mental-health helpline 12356."
    )
    suspension: SuspensionConfig = Field(default_factory=SuspensionConfig)
    model: GuardModelConfig = Field(default_factory=GuardModelConfig)
    classifier: GuardClassifierConfig = Field(default_factory=GuardClassifierConfig)
    policy: AnsweringPolicyConfig = Field(default_factory=AnsweringPolicyConfig)


class AigcConfig(Strict):
    """AI-generated content labels (GB 45438-2025) on every generation (docs/guard.md)."""

    enabled: bool = False
    uscc: str | None = None  # the provider's Unified Social Credit Code (18 characters)
    model_code: str | None = None  # 4 characters naming the service/model, or none
    explicit: Literal["start", "end", "off"] = "end"  # visible label in the text
    wording: str = "本内容由人工智能生成 / AI-generated content"
    key_env: str = "HESHI_AIGC_KEY"  # env var holding the HMAC key for ReservedCode1
