"""The Helm chart rendered and linted by Helm itself (v4, through helm-python-sdk's bindings to
Helm's Go SDK: no helm binary is installable here), for each value set the README documents."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from gatewaylib.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "litegate"
#: Helm's lint severities (pkg/lint/support): 1 info, 2 warning, 3 error.
WARNING = 2


def render(values: dict[str, Any], name: str = "lg") -> dict[str, dict[str, Any]]:
    """`helm template`: the manifests by kind (one object of each kind in this chart)."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=name, namespace="prod")
    objects: dict[str, dict[str, Any]] = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert doc["kind"] not in objects, f"two {doc['kind']} objects"
                objects[doc["kind"]] = doc
    return objects


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_helm_lint_finds_no_warning_or_error() -> None:
    """`helm lint` on the chart: at most informational messages."""
    result = helm.lint(str(CHART))
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] >= WARNING] == []


def test_defaults_render_a_hardened_deployment_with_probes_and_config() -> None:
    """Default values: 2 replicas, /health probes, non-root read-only pod, grace period above
    the 25 s drain, config Secret mounted read-only where the image's entrypoint reads it."""
    objects = render({})
    assert sorted(objects) == ["Deployment", "PodDisruptionBudget", "Secret", "Service"]
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 35
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    c = container(objects)
    assert c["image"] == "ghcr.io/litegate/litegate:0.1.0"
    assert c["args"][:2] == ["--config", "/etc/litegate/config.yaml"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["volumeMounts"] == [{"name": "config", "mountPath": "/etc/litegate", "readOnly": True}]
    assert c["resources"]["requests"]["memory"] == "96Mi"
    assert pod["volumes"] == [{"name": "config", "secret": {"secretName": "lg-litegate-config"}}]
    service = objects["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [{"port": 8080, "targetPort": "http", "protocol": "TCP", "name": "http"}]
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_inline_config_becomes_a_valid_secret_and_rolls_the_pods() -> None:
    """`--set-file config.inline=config.yaml`: the file lands verbatim in the Secret, is a valid
    litegate config, and its checksum on the pod template changes with it."""
    text = (ROOT / "config.example.yaml").read_text()
    objects = render({"config": {"inline": text}})
    stored = objects["Secret"]["stringData"]["config.yaml"]
    assert stored.rstrip("\n") == text.rstrip("\n")
    parse_config(stored, "secret:config.yaml", {})
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] == hashlib.sha256(text.encode()).hexdigest()
    default = render({})["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert default["checksum/config"] != annotations["checksum/config"]


def test_default_inline_config_is_valid() -> None:
    """The chart's own default config loads in the gateway (with its env var set)."""
    stored = render({})["Secret"]["stringData"]["config.yaml"]
    parse_config(stored, "secret:config.yaml", {"VKEY_BACKEND": "sk-backend-key-0123456789"})


def test_existing_secret_replaces_the_rendered_one() -> None:
    """`config.existingSecret`: no Secret is rendered and the pod mounts the operator's."""
    objects = render({"config": {"existingSecret": "litegate-config"}})
    assert "Secret" not in objects
    volumes = objects["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "config", "secret": {"secretName": "litegate-config"}}]


def test_provider_keys_from_secrets_through_extra_env_and_env_from() -> None:
    """The README's `extraEnv[...].valueFrom.secretKeyRef` and `envFrom` reach the container."""
    env = [{"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-keys", "key": "openai"}}}]
    env_from = [{"secretRef": {"name": "llm-keys"}}]
    c = container(render({"extraEnv": env, "envFrom": env_from}))
    assert c["env"] == env
    assert c["envFrom"] == env_from


def test_kube_prometheus_stack_objects_when_enabled() -> None:
    """ServiceMonitor (with the release label), PrometheusRule and the dashboard ConfigMap
    for the Grafana sidecar; Prometheus templating in alert texts survives Helm's."""
    objects = render(
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s"},
            "prometheusRule": {"enabled": True},
            "dashboards": {"enabled": True},
        }
    )
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]
    assert monitor["spec"]["selector"]["matchLabels"] == objects["Service"]["spec"]["selector"]
    rule = objects["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert sorted(alerts) == ["LitegateLatencyP95High", "LitegateNoTraffic", "LitegateProviderErrorRatioHigh"]
    assert "{{ $labels.provider }}" in alerts["LitegateProviderErrorRatioHigh"]["annotations"]["summary"]
    dashboard = objects["ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "litegate.json").read_text())
    assert json.loads(dashboard["data"]["litegate.json"]) == shipped


def test_autoscaling_takes_over_the_replica_count() -> None:
    """`autoscaling.enabled`: an autoscaling/v2 HPA on CPU, and no fixed replica count."""
    objects = render({"autoscaling": {"enabled": True}})
    assert "replicas" not in objects["Deployment"]["spec"]
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }


def test_pdb_can_be_turned_off() -> None:
    """`podDisruptionBudget.enabled: false` renders no PodDisruptionBudget."""
    assert "PodDisruptionBudget" not in render({"podDisruptionBudget": {"enabled": False}})


def test_scheduling_and_pod_metadata_values_reach_the_pod() -> None:
    """nodeSelector, tolerations, affinity and podAnnotations are rendered on the pod."""
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                          "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "litegate"}}}}]}}
    objects = render({"nodeSelector": {"pool": "edge"}, "tolerations": [toleration], "affinity": affinity,
                      "podAnnotations": {"team": "platform"}, "image": {"tag": "1.2.3"}})
    template = objects["Deployment"]["spec"]["template"]
    assert template["spec"]["nodeSelector"] == {"pool": "edge"}
    assert template["spec"]["tolerations"] == [toleration]
    assert template["spec"]["affinity"] == affinity
    assert template["metadata"]["annotations"]["team"] == "platform"
    assert container(objects)["image"] == "ghcr.io/litegate/litegate:1.2.3"
