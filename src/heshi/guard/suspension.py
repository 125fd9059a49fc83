"""Key suspension for violating input: the counters (the suspension is stored with the key)."""

from __future__ import annotations

from datetime import UTC, datetime

from heshi.config import GuardConfig


class SuspensionTracker:
    """Counts violating requests per key: ``consecutive`` in a row or ``daily`` in one
    UTC day suspend the key (in memory; the suspension itself is stored with the key)."""

    def __init__(self) -> None:
        self._streak: dict[str, int] = {}
        self._daily: dict[str, tuple[str, int]] = {}

    def record(self, key_id: str, violated: bool, config: GuardConfig) -> bool:
        """Count one request; True when this one crosses a threshold."""
        if not violated:
            self._streak.pop(key_id, None)
            return False
        today = datetime.now(UTC).date().isoformat()
        day, count = self._daily.get(key_id, (today, 0))
        count = count + 1 if day == today else 1
        self._daily[key_id] = (today, count)
        streak = self._streak.get(key_id, 0) + 1
        self._streak[key_id] = streak
        rules = config.suspension
        return streak >= rules.consecutive or count >= rules.daily

    def forget(self, key_id: str) -> None:
        self._streak.pop(key_id, None)
        self._daily.pop(key_id, None)
