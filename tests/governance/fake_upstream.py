"""Moved: the fake upstream of every test is ``tests.fakes.upstream``.

Re-exported here so tests written against ``tests.governance.fake_upstream`` keep working:
``UpstreamState`` keeps its fields and meanings, and ``FakeUpstream(state)`` (a context
manager) replaces ``serve_app(fake_upstream_app(state))``.
"""

from tests.fakes.upstream import UPSTREAM_MODEL, FakeUpstream, UpstreamState

__all__ = ["UPSTREAM_MODEL", "FakeUpstream", "UpstreamState"]
