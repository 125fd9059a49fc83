"""``GET /admin/v1/tenants``: every tenant with its limits and what it has spent.

Tenants are the ones ``heshi.yaml`` configures (limits, guard overrides) and the ones that
own keys; their limits are read-only here, as they are set in heshi.yaml. Lifetime spend
(tokens and yuan, pruned ledger rows included) is what budgets are counted against."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from heshi.admin.tokens import Actor
from heshi.config import HeshiConfig
from heshi.store.keys import MICRO


def add_tenant_routes(app: FastAPI, api: Any, config: HeshiConfig) -> None:
    """``GET /tenants``."""
    from heshi.store.tally import SpendTally

    Who = Annotated[Actor, Depends(api.actor)]
    service = api.service
    tally = SpendTally(service.db)  # calls minutes apart read only the last minutes' rows

    @app.get("/tenants", tags=["tenants"])
    def tenants(actor: Who) -> list[dict[str, Any]]:
        """Tenants by name: configured limits (null = none), keys by status, lifetime
        tokens and spend, and the share of each budget used."""
        keys = service.keys.list()
        spent = tally.refresh()  # StoreUnavailable (503) when the database fails
        names = sorted({*config.tenants, *(k.tenant for k in keys)})
        out = []
        for name in names:
            settings = config.tenants.get(name)
            tokens = spent.by_tenant.get(name, 0)
            cny = spent.cost_by_tenant.get(name, 0) / MICRO
            budget_tokens = settings.budget_tokens if settings else None
            budget_cny = settings.budget_cny if settings else None
            statuses = [k.status for k in keys if k.tenant == name]
            out.append(
                {
                    "name": name,
                    "configured": settings is not None,
                    "rpm": settings.rpm if settings else None,
                    "tpm": settings.tpm if settings else None,
                    "budget_tokens": budget_tokens,
                    "budget_cny": budget_cny,
                    "guard_overrides": bool(settings and settings.guard),
                    "keys": {s: statuses.count(s) for s in ("active", "suspended", "revoked")},
                    "spent_tokens": tokens,
                    "spent_cny": round(cny, 6),
                    "budget_tokens_used": _share(tokens, budget_tokens),
                    "budget_cny_used": _share(cny, budget_cny),
                }
            )
        return out


def _share(used: float, budget: float | None) -> float | None:
    if budget is None:
        return None
    return 1.0 if budget <= 0 else round(used / budget, 4)
