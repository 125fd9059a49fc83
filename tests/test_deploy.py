"""The Grafana dashboard and the Prometheus alert rules in deploy/ read only series a
gateway's ``/metrics`` exposes, and are well-formed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml

from tests.conftest import ADMIN, RunningGateway

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
_NAME = re.compile(r"\bheshi_[a-z_]+")


def _exposed(text: str) -> set[str]:
    return set(re.findall(r"^# HELP (\S+)", text, re.MULTILINE))


def _known(name: str, exposed: set[str]) -> bool:
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return name in exposed or base in exposed


def _dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "heshi-dashboard.json").read_text("utf-8"))
    exprs = []
    for panel in dash["panels"]:
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["type"] == "prometheus"
        exprs += [t["expr"] for t in panel["targets"]]
    return exprs


def _alert_rules() -> list[dict[str, object]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "heshi-alerts.yaml").read_text("utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_dashboard_and_alerts_read_only_exposed_series(tiny_gateway: RunningGateway) -> None:
    exposed = _exposed(httpx.get(tiny_gateway.url + "/metrics", headers=ADMIN).text)
    exprs = _dashboard_exprs() + [str(r["expr"]) for r in _alert_rules()]
    referenced = {name for expr in exprs for name in _NAME.findall(expr)}
    assert len(referenced) >= 12
    unknown = sorted(n for n in referenced if not _known(n, exposed))
    assert not unknown, f"not in /metrics: {unknown}"


def test_the_dashboard_covers_what_an_sre_watches() -> None:
    text = " ".join(_dashboard_exprs())
    for needle in (
        "heshi_requests_total",  # requests and errors by reason
        "heshi_request_duration_seconds_bucket",  # latency percentiles
        "heshi_time_to_first_token_seconds_bucket",
        'heshi_tokens_total{direction="out"}',  # tokens/s per model
        "heshi_engine_slots_busy",
        "heshi_engine_requests_waiting",  # queue depth
        "heshi_backend_breaker_state",
        'reason=~"quota.*"',  # quota refusals
        "heshi_ledger_lag_seconds",
        "heshi_guard_blocks_total",  # guard blocks by risk
        "heshi_tenant_spent_yuan",  # spend per tenant
    ):
        assert needle in text, needle


def test_alert_rules_cover_the_failure_modes_and_are_complete() -> None:
    rules = _alert_rules()
    names = {str(r["alert"]) for r in rules}
    assert {
        "HeshiGatewayDown",
        "HeshiBackendBreakerOpen",
        "HeshiLedgerLag",
        "HeshiDatabaseUnreachable",
        "HeshiBudgetNearlyExhausted",
    } <= names
    for rule in rules:
        assert rule["expr"] and rule["for"], rule
        assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]


REPO = DEPLOY.parent


def test_compose_runs_replicas_on_shared_state_with_secrets_not_inline() -> None:
    from heshi.config import HeshiConfig

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text("utf-8"))
    services = compose["services"]
    assert {"postgres", "redis", "heshi1", "heshi2", "lb", "vllm"} <= set(services)
    heshi = services["heshi1"]
    # each replica keeps its own home (journal, spools) on its own volume
    homes = {services[n]["volumes"][0] for n in ("heshi1", "heshi2")}
    assert len(homes) == 2 and all(h.endswith(":/var/lib/heshi") for h in homes)
    assert services["heshi2"]["image"] == heshi["image"]  # the anchor merged
    assert heshi["healthcheck"]["test"] and "readyz" in " ".join(heshi["healthcheck"]["test"])
    assert heshi["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert heshi["depends_on"]["redis"]["condition"] == "service_healthy"
    assert set(heshi["secrets"]) == {"admin_token", "postgres_password", "audit_key"}
    assert "HESHI_AUDIT_KEY=" in " ".join(heshi["command"])  # one signing key for all
    assert all("file" in s for s in compose["secrets"].values())  # never a literal value
    assert "gpu" in services["vllm"]["profiles"]
    for service in services.values():  # bind-mounted files exist and are read-only
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                source, _, rest = volume.partition(":")
                assert (DEPLOY / source).is_file() and rest.endswith(":ro"), volume
    for item in compose["secrets"].values():
        assert item["file"].startswith("./secrets/")
    text = (DEPLOY / "compose.yaml").read_text("utf-8")
    assert "PASSWORD:" not in text.replace("POSTGRES_PASSWORD_FILE:", "")
    # the gateway's own config: shared PostgreSQL and Redis, no embedded engine
    config = HeshiConfig.model_validate(
        yaml.safe_load((DEPLOY / "heshi.compose.yaml").read_text("utf-8"))
    )
    assert config.store.url is not None and config.store.url.startswith("postgresql")
    assert config.store.redis_url and not config.engine.enabled
    assert ":" not in config.store.url.split("@")[0].split("//")[1]  # no password in it
    # the gateway knows vLLM's window: no request is sent prompt + max_tokens past it
    vllm = compose["services"]["vllm"]["command"]
    window = int(vllm[vllm.index("--max-model-len") + 1])
    backend = config.backends["vllm"]
    assert backend.context == window and backend.max_output_tokens < window
    nginx = (DEPLOY / "nginx.conf").read_text("utf-8")
    assert "server heshi1:8000" in nginx and "server heshi2:8000" in nginx
    assert "proxy_buffering off" in nginx


def test_the_image_is_multi_stage_non_root_and_without_compilers() -> None:
    dockerfile = (REPO / "Dockerfile").read_text("utf-8")
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2
    final = stages[-1]
    assert "COPY --from=build" in final
    user = re.search(r"^USER (\S+)", final, re.MULTILINE)
    assert user and user.group(1) not in ("root", "0")
    for compiler in ("build-essential", "gcc", "g++", "cmake", "clang"):
        assert compiler not in final, compiler
    assert "libgomp1" in final  # the engine wheel's OpenMP runtime
    assert "HEALTHCHECK" in final and 'ENTRYPOINT ["heshi"]' in final
    ignored = (REPO / ".dockerignore").read_text("utf-8").split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_adapter_rule_serves_the_metric_the_autoscaler_reads() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text("utf-8"))
    (rule,) = rules["rules"]["custom"]
    hpa = (DEPLOY / "helm" / "heshi" / "templates" / "hpa.yaml").read_text("utf-8")
    assert f"name: {rule['name']['as']}" in hpa
    assert rule["seriesQuery"].startswith(rule["name"]["as"] + "{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
