"""The Helm chart (deploy/helm/heshi) and the Compose files, rendered and validated as a
cluster or Docker would read them, with the backends `heshi plan --emit helm|compose`
writes.

The chart is rendered by ``tests/tools/helmrender`` — Go's text/template with Sprig and
Helm's own functions, built from Debian's Go packages; fast enough for many value sets —
and every manifest is checked against the Kubernetes 1.34 schemas (kubernetes-validate,
strict: unknown fields fail). Helm 3 itself checks the chart and helmrender in
``test_deploy_helm_itself.py``. Compose files are read by
``docker-compose config`` (Debian's Compose v1). ``.ci/run`` installs these tools and
sets HESHI_REQUIRE_DEPLOY_TOOLS=1, so there a missing tool fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from heshi import catalog
from heshi.cli.main import app
from heshi.config import HeshiConfig
from heshi.plan.memory import kv_bytes_per_token

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deploy" / "helm" / "heshi"
SECRETS = {"secrets": {"adminToken": "admin-tok-3f9", "postgresPassword": "pg/p@ss-77"}}
Render = Callable[..., list[dict[str, Any]]]


def _tool_missing(why: str) -> None:
    if os.environ.get("HESHI_REQUIRE_DEPLOY_TOOLS") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    sprig = Path("/usr/share/gocode/src/github.com/Masterminds/sprig")
    if go is None or not sprig.is_dir():
        _tool_missing("needs golang-go and golang-github-masterminds-sprig-dev (Debian)")
    out = tmp_path_factory.mktemp("helmrender") / "helmrender"
    env = os.environ | {
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOCACHE": str(out.parent / "cache"),
        "GOFLAGS": "",
    }
    subprocess.run(
        [str(go), "build", "-o", str(out), "."],
        cwd=REPO / "tests" / "tools" / "helmrender",
        env=env,
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def render(renderer: Path, tmp_path: Path) -> Render:
    """Render the chart with values (dicts or YAML text, laid over in order)."""

    def run(*values: dict[str, Any] | str, expect_error: str | None = None) -> Any:
        args = [str(renderer), str(CHART)]
        for i, value in enumerate(values):
            path = tmp_path / f"values-{i}.yaml"
            text = value if isinstance(value, str) else yaml.safe_dump(value)
            path.write_text(text, "utf-8")
            args += ["-f", str(path)]
        done = subprocess.run(args, check=False, capture_output=True, text=True)
        if expect_error is not None:
            assert done.returncode != 0 and expect_error in done.stderr, done.stderr
            return done.stderr
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    return run


def _validate(docs: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # a CRD's kind: not in the core schemas
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, [(d["kind"], d["metadata"]["name"]) for d in docs]
    return found[0]


def _gateway_config(docs: list[dict[str, Any]]) -> HeshiConfig:
    text = _one(docs, "ConfigMap")["data"]["heshi.yaml"]
    return HeshiConfig.model_validate(yaml.safe_load(text))


def test_the_chart_renders_what_a_reviewer_would_deploy(render: Render) -> None:
    docs = render(SECRETS)
    _validate(docs)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("StatefulSet", "heshi-gateway") in kinds
    assert {("StatefulSet", "heshi-postgresql"), ("StatefulSet", "heshi-redis")} <= kinds
    assert ("PodDisruptionBudget", "heshi-gateway") in kinds
    gateway = _one(docs, "StatefulSet", "heshi-gateway")
    assert gateway["spec"]["replicas"] == 2
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    # every credential comes from the Secret; no value of it appears anywhere else
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert set(refs) == {
        "HESHI_ADMIN_TOKEN",
        "HESHI_DATABASE_URL",
        "HESHI_REDIS_URL",
        "HESHI_AUDIT_KEY",  # one signing key for every replica, or `verify` fails
    }
    # X-Forwarded-For is trusted from nobody until told whom (audit keeps real addresses)
    assert "FORWARDED_ALLOW_IPS" not in {e["name"] for e in container["env"]}
    assert {r["name"] for r in refs.values()} == {"heshi-secrets"}
    secret = _one(docs, "Secret")
    assert secret["stringData"]["admin-token"] == "admin-tok-3f9"
    assert len(secret["stringData"]["audit-key"]) >= 32
    assert "pg%2Fp%40ss-77" in secret["stringData"]["database-url"]  # quoted in the URL
    others = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    assert "admin-tok-3f9" not in others and "pg/p@ss-77" not in others
    # the gateways read their URLs from those variables; the config names no password
    config = _gateway_config(docs)
    assert config.store.url_env == "HESHI_DATABASE_URL"
    assert config.store.redis_url_env == "HESHI_REDIS_URL"
    assert config.server.host == "0.0.0.0" and not config.engine.enabled
    # requests in flight finish inside the pod's grace period, after the preStop pause
    grace = pod["terminationGracePeriodSeconds"]
    assert 0 < config.server.shutdown_grace_seconds <= grace - 5 - 5
    assert "checksum/secret" in gateway["spec"]["template"]["metadata"]["annotations"]
    # each replica keeps its own home; the pod restarts when heshi.yaml changes
    assert gateway["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "home"
    tenants = {"gateway": {"config": {"tenants": {"acme": {"budget_cny": 500}}}}}
    changed = _one(render(SECRETS, tenants), "StatefulSet", "heshi-gateway")
    key = "checksum/config"
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert changed["spec"]["template"]["metadata"]["annotations"][key] != annotations[key]
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1  # a one-replica install still drains
    assert pdb["spec"]["selector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["name"] for p in policies} == {
        "heshi-backend",
        "heshi-postgresql",
        "heshi-redis",
    }


def test_the_chart_refuses_to_render_without_its_secrets_and_takes_an_existing_one(
    render: Render,
) -> None:
    render({}, expect_error="secrets.adminToken is required")
    render({"secrets": {"adminToken": "t"}}, expect_error="secrets.postgresPassword")
    external = {
        "secrets": {"adminToken": "t"},
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
    }
    render(external, expect_error="secrets.databaseUrl is required")
    docs = render({"secrets": {"existingSecret": "prod-heshi"}})
    _validate(docs)
    assert not [d for d in docs if d["kind"] == "Secret"]
    gateway = _one(docs, "StatefulSet", "heshi-gateway")
    env = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e} == {
        "prod-heshi"
    }


def test_a_url_in_gateway_config_replaces_the_secrets_and_a_minimal_backend_renders(
    render: Render,
) -> None:
    store = {"url": "postgresql+psycopg://heshi@db.internal:5432/heshi"}
    minimal = {"name": "qwen", "engine": "vllm", "image": "vllm/vllm-openai:v0.28.0"}
    minimal |= {"args": ["Qwen/Qwen3-8B"], "model": "Qwen/Qwen3-8B"}
    values = {"gateway": {"config": {"store": store}}, "backends": [minimal]}
    docs = render(SECRETS, values)
    _validate(docs)
    config = _gateway_config(docs)  # a heshi.yaml with both url and url_env is refused
    assert config.store.url == store["url"] and config.store.url_env is None
    assert config.store.redis_url_env == "HESHI_REDIS_URL"
    deployment = _one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    # nothing in a backend's pod changes with the chart's version (no restart on upgrade)
    assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels
    assert deployment["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]


def test_autoscaling_follows_in_flight_requests_per_replica(render: Render) -> None:
    scaled = {
        "gateway": {"autoscaling": {"enabled": True, "maxReplicas": 12}},
        "ingress": {"enabled": True, "className": "nginx", "tlsSecret": "heshi-tls"},
        "serviceMonitor": {"enabled": True},
    }
    docs = render(SECRETS, scaled)
    _validate(docs)
    ingress = _one(docs, "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"] == "heshi-tls"
    spec = _one(docs, "ServiceMonitor")["spec"]
    monitor = spec["endpoints"][0]
    assert monitor["path"] == "/metrics"
    # it selects one Service per gateway pod, or every replica is scraped twice
    wanted = spec["selector"]["matchLabels"].items()
    selected = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Service" and wanted <= d["metadata"]["labels"].items()
    ]
    assert selected == ["heshi-gateway-headless"]
    assert monitor["authorization"]["credentials"] == {
        "name": "heshi-secrets",
        "key": "admin-token",
    }
    hpa = _one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "heshi-gateway",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "heshi_requests_in_flight"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "32"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 12)
    # the HPA owns the replica count
    assert "replicas" not in _one(docs, "StatefulSet", "heshi-gateway")["spec"]


def _emit(target: str, hardware: str, concurrency: int = 32) -> tuple[str, dict[str, Any]]:
    """(stdout of `heshi plan --emit TARGET`, the --json plan's chosen option)."""
    args = ["plan", "--hardware", hardware, "--workload", "customer-service"]
    args += ["--concurrency", str(concurrency), "--emit", target]
    runner = CliRunner()
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    plan = runner.invoke(app, [*args, "--json"])
    assert plan.exit_code == 0, plan.output
    payload = json.loads(plan.stdout)
    emitted = payload["emitted"]
    option = next(
        o
        for o in payload["options"]
        if (o["model"], o["quant"], o["engine"])
        == (emitted["model"], emitted["quant"], emitted["engine"])
    )
    assert payload[target] == text.stdout
    return text.stdout, option


@pytest.mark.parametrize(
    ("hardware", "engine", "device_resource"),
    [
        ("4x nvidia-v100-32gb", "vllm", "nvidia.com/gpu"),
        ("8x huawei-ascend-910b", "vllm-ascend", "huawei.com/Ascend910"),
        ("1x intel-xeon-gold-6338-256gb", "heshi", None),
    ],
)
def test_plan_emit_helm_renders_the_chosen_backend_and_the_gateway_routes_to_it(
    render: Render, hardware: str, engine: str, device_resource: str | None
) -> None:
    values, option = _emit("helm", hardware)
    assert yaml.safe_load(values)["backends"]  # stdout is the values file alone
    docs = render(SECRETS, values)
    _validate(docs)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == engine
    tp = option["tensor_parallel"]
    if device_resource is not None:
        assert container["resources"]["limits"][device_resource] == tp
        i = container["args"].index("--tensor-parallel-size")
        assert container["args"][i + 1] == str(tp)
    else:
        assert container["command"] == ["heshi"] and "--open" in container["args"]
        pod = deployment["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]  # the GGUF is pulled before heshi serve opens it
        assert init["args"][:2] == ["models", "pull"] and init["image"] == container["image"]
        assert container["image"] == "heshi:0.1.0"  # the chart's own image
        # the memory limit holds the weights and the KV pool llama.cpp allocates at load
        ctx = int(container["args"][container["args"].index("--ctx") + 1])
        slots = int(container["args"][container["args"].index("--parallel") + 1])
        spec = catalog.model(option["model"])
        kv_gb = kv_bytes_per_token(spec) * ctx * slots / 1e9
        limit = container["resources"]["limits"]["memory"]
        assert int(limit.removesuffix("Gi")) >= kv_gb + option["weights_gb"], limit
    if option["replicas"] == 1:  # the weights survive restarts and upgrades
        claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        assert [c["metadata"]["name"] for c in claims] == [
            f"{deployment['metadata']['name']}-models"
        ]
    assert deployment["spec"]["replicas"] == option["replicas"]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # model loading
    name = deployment["metadata"]["name"]
    service = _one(docs, "Service", name)
    port = service["spec"]["ports"][0]["port"]
    # the gateways' heshi.yaml routes the public name to that Service
    config = _gateway_config(docs)
    (backend,) = config.backends.values()
    assert backend.base_url == f"http://{service['metadata']['name']}:{port}/v1"
    # the gateway knows the server's window: no request without max_tokens asks for more
    # than the server holds (vLLM refuses prompt + max_tokens beyond --max-model-len)
    if device_resource is not None:
        window = int(container["args"][container["args"].index("--max-model-len") + 1])
    else:
        window = int(container["args"][container["args"].index("--ctx") + 1])
    assert backend.context == window and backend.max_output_tokens == window // 2
    alias = config.aliases[option["model"].split("/")[-1].lower()]
    assert alias.model == option["model"]


def test_an_sglang_backend_for_a_chat_workload_gets_thinking_off_through_the_gateway(
    render: Render,
) -> None:
    """SGLang has no server switch to pin: the gateways' heshi.yaml sends the backend's
    chat_template_kwargs ({enable_thinking: false}) with every request to a Qwen3 model."""
    from heshi.plan.containers import helm
    from heshi.plan.presets import PRESETS
    from heshi.plan.recommend import Request, recommend

    request = Request(
        hardware=catalog.hardware("1x nvidia-a100-80gb"), preset=PRESETS["customer-service"],
        concurrency=16, context=8192, models=("Qwen/Qwen3-8B",),
    )  # fmt: skip
    ranked, _ = recommend(request)
    option = next(o for o in ranked if o.engine == "sglang")
    docs = render(SECRETS, helm(option, 8192, 16))
    _validate(docs)
    (backend,) = _gateway_config(docs).backends.values()
    assert backend.chat_template_kwargs == {"enable_thinking": False}
    assert backend.context == 8192


def _compose(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        _tool_missing("needs docker-compose (Debian package docker-compose)")
    return subprocess.run([str(tool), *args], check=False, cwd=cwd, capture_output=True, text=True)


def test_compose_files_and_emitted_backends_pass_docker_compose_config(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", deploy, ignore=shutil.ignore_patterns("helm"))
    (deploy / "secrets").mkdir(exist_ok=True)
    for name in ("admin_token", "postgres_password", "audit_key"):
        (deploy / "secrets" / name).write_text("x\n")
    done = _compose(["-f", "compose.yaml", "--profile", "gpu", "config"], deploy)
    assert done.returncode == 0, done.stderr
    assert "will be ignored" not in done.stderr, done.stderr  # nothing silently dropped
    merged = yaml.safe_load(done.stdout)
    assert {"heshi1", "heshi2", "lb", "postgres", "redis", "vllm"} <= set(merged["services"])
    for hardware, engine in (
        ("2x nvidia-a100-80gb", "vllm"),
        ("8x huawei-ascend-910b", "vllm-ascend"),
        ("1x intel-xeon-gold-6338-256gb", "llamacpp"),
    ):
        text, option = _emit("compose", hardware)
        (deploy / "backends.compose.yaml").write_text(text, "utf-8")
        args = ["-f", "compose.yaml", "-f", "backends.compose.yaml", "config"]
        done = _compose(args, deploy)
        assert done.returncode == 0, done.stderr
        services = yaml.safe_load(done.stdout)["services"]
        emitted = yaml.safe_load(text)
        names = {n for n in emitted["services"] if not n.endswith("-pull")}
        assert len(names) == option["replicas"] and names <= set(services)
        if engine == "llamacpp":  # serve opens only pulled models: a one-shot pull first
            for name in names:
                pull = services[f"{name}-pull"]
                assert pull["command"][:2] == ["models", "pull"]
                assert services[name]["depends_on"][f"{name}-pull"] == {
                    "condition": "service_completed_successfully"
                }
        for name in names:
            service = services[name]
            assert service["healthcheck"]["test"]
            if engine == "vllm":
                (reservation,) = service["deploy"]["resources"]["reservations"]["devices"]
                assert len(reservation["device_ids"]) == option["tensor_parallel"]
            elif engine == "vllm-ascend":
                davinci = [d for d in service["devices"] if d[-1].isdigit()]
                assert len(davinci) == option["tensor_parallel"]
        # the x-heshi-yaml block is a valid heshi.yaml for the gateways
        block = emitted["x-heshi-yaml"]
        config = HeshiConfig.model_validate(block)
        assert set(config.backends) == names
