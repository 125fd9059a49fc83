"""Small helpers the admin routes share: who is calling from where, and time bounds."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request

from heshi.errors import InvalidRequest


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def aware(value: datetime | None, name: str) -> None:
    if value is not None and not 2000 <= value.year <= 2200:
        raise InvalidRequest(
            f"{name} 须在 2000–2200 年之间 / {name} must be between the years 2000 and 2200",
            param=name,
        )
    if value is not None and value.tzinfo is None:
        raise InvalidRequest(
            f"{name} 需带时区，如 2026-12-01T00:00:00Z / {name} needs a time zone, "
            "e.g. 2026-12-01T00:00:00Z",
            param=name,
        )
