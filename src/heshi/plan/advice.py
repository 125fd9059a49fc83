"""When nothing fits: the least disruptive change that would make something fit."""

from __future__ import annotations

from heshi.catalog import Hardware
from heshi.plan.option import Option, Request
from heshi.plan.recommend import recommend

# What to suggest when a CPU box serves nothing at the service level: the cheapest GPUs first.
_GPU_STEPS = ("1x nvidia-t4", "1x nvidia-l20", "1x nvidia-a100-80gb")


def smallest_change(req: Request, rejected: list[Option]) -> str | None:
    """When nothing fits: the least disruptive change that would make something fit —
    fewer users, a shorter context, more devices, or (on a CPU) a GPU."""
    fits_fewer = [
        o
        for o in rejected
        if o.replicas == 1 and 0 < o.max_sequences < req.concurrency and _only_memory(o)
    ]
    for best in sorted(fits_fewer, key=lambda o: o.max_sequences, reverse=True):
        fewer = best.max_sequences
        trial = recommend(Request(**{**req.__dict__, "concurrency": fewer}))[0]
        if trial:  # checked: something does serve that many
            return _serve(fewer, req.concurrency, trial[0])
    return _fewer_users(req) or _shorter_context(req) or _other_hardware(req)


def _only_memory(option: Option) -> bool:
    """Rejected for the KV cache alone (fewer users would fit), not for missing kernels."""
    return bool(option.reasons) and all("KV" in r for r in option.reasons)


def _serve(fewer: int, asked: int, option: Option) -> str:
    users = "user" if fewer == 1 else "users"
    return (
        f"减少并发到 {fewer} / serve {fewer} {users} at once instead of {asked} "
        f"({option.spec.id} {option.q.name} on {option.engine})"
    )


def _fewer_users(req: Request) -> str | None:
    """Too slow for this many users at once: how many would be served well."""
    fewer = req.concurrency // 2
    while fewer >= 1:
        trial = recommend(Request(**{**req.__dict__, "concurrency": fewer}))[0]
        if trial:
            return _serve(fewer, req.concurrency, trial[0])
        fewer //= 2
    return None


def _shorter_context(req: Request) -> str | None:
    for shorter in (req.context // 2, req.context // 4):
        if shorter >= 1024:
            trial = recommend(Request(**{**req.__dict__, "context": shorter}))[0]
            if trial:
                return f"缩短上下文到 {shorter} / use a {shorter}-token context"
    return None


def _other_hardware(req: Request) -> str | None:
    if req.hardware.device.kind == "cpu":
        from heshi.plan import resolve_hardware

        for name in _GPU_STEPS:
            gpu = resolve_hardware(name)
            trial = recommend(Request(**{**req.__dict__, "hardware": gpu}))[0]
            if trial:
                return (
                    f"这台 CPU 达不到服务要求；{gpu} 可以 / no CPU configuration here meets the "
                    f"service level; a {gpu} would ({trial[0].spec.id} {trial[0].q.name} on "
                    f"{trial[0].engine})"
                )
        return None
    more = Request(
        **{**req.__dict__, "hardware": Hardware(req.hardware.count * 2, req.hardware.device)}
    )
    if req.hardware.count < 64 and recommend(more)[0]:
        return f"增加到 {more.hardware.count} 张卡 / use {more.hardware}"
    return None
