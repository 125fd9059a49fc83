"""Sizing a deployment: memory, speed, recommendations and launch commands."""

from __future__ import annotations

import re

from heshi import catalog
from heshi.catalog import Hardware

_LOCAL = re.compile(r"^\s*(?:1\s*[x×*]\s*)?local\s*$", re.IGNORECASE)


def resolve_hardware(text: str) -> Hardware:
    """``catalog.hardware``, plus ``local`` (``1x local``): this machine, measured now."""
    if _LOCAL.match(text):
        from heshi.plan.cpu import local_machine

        return Hardware(1, local_machine())
    return catalog.hardware(text)
