"""Routing: which backend answers a public model name, and what happens when it fails.

:class:`Router` is the entry point; see :mod:`heshi.routing.router` for the fault
tolerance rules, :mod:`heshi.routing.complexity` for the ``auto`` model's rule and
:mod:`heshi.routing.names` for the name table.
"""

from heshi.routing.breaker import BackendsUnavailable
from heshi.routing.complexity import BUILTIN_CUES, Decision
from heshi.routing.health import Probe, Probes, default_probes, probe_models_endpoint
from heshi.routing.names import PublicModel, Target
from heshi.routing.router import BackendStatus, Routed, RoutePlan, Router
from heshi.routing.stream import RoutedStream, StreamStart

__all__ = [
    "BUILTIN_CUES",
    "BackendStatus",
    "BackendsUnavailable",
    "Decision",
    "Probe",
    "Probes",
    "PublicModel",
    "RoutePlan",
    "Routed",
    "RoutedStream",
    "Router",
    "StreamStart",
    "Target",
    "default_probes",
    "probe_models_endpoint",
]
