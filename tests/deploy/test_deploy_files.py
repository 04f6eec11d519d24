"""The deploy files parse and agree with the code: ports, image, command, env names."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml

from ps import __version__, cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = f"ps-train:{__version__}"


def _default(command, option: str):
    return inspect.signature(command).parameters[option].default


GRPC_PORT = _default(cli.serve, "port")
METRICS_PORT = _default(cli.serve, "metrics_port")


def _k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _serve_flags(args: list[str]) -> dict[str, str]:
    return {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}


def test_kubernetes_manifests_agree_with_the_code():
    docs = _k8s_docs()
    kinds = {d["kind"] for d in docs}
    assert {"RayCluster", "Service", "ServiceMonitor", "Secret", "PersistentVolumeClaim"} <= kinds
    (cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    containers = {c["name"]: c for c in head["containers"]}
    service = containers["ps-service"]
    assert service["command"] == ["psctl", "serve"]
    flags = _serve_flags(service["args"])
    assert int(flags["--port"]) == GRPC_PORT and int(flags["--metrics-port"]) == METRICS_PORT
    assert flags["--host"] == "0.0.0.0" and "--token-file" in flags  # non-loopback needs a token
    assert {p["containerPort"] for p in service["ports"]} == {GRPC_PORT, METRICS_PORT}
    all_containers = list(containers.values()) + [
        c for g in cluster["spec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]
    ]
    for c in all_containers:
        assert c["image"] == IMAGE
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"  # Ray's token auth stays on
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ps-train-tokens"
        assert c["resources"]["requests"]
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    assert {p["port"] for p in svc["spec"]["ports"]} == {GRPC_PORT, METRICS_PORT}
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert set(secret["stringData"]) == {"ps-token", "ray-token"}


def test_ray_up_config_runs_the_service_on_the_head():
    config = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    assert config["head_node_type"] in config["available_node_types"]
    assert any(t.get("min_workers", 0) >= 1 for t in config["available_node_types"].values())
    serve = [c for c in config["head_start_ray_commands"] if "psctl serve" in c]
    assert len(serve) == 1
    flags = _serve_flags(serve[0].split())
    assert int(flags["--port"]) == GRPC_PORT and int(flags["--metrics-port"]) == METRICS_PORT
    assert "RAY_AUTH_MODE=token" in serve[0] and "--token-file" in flags
    setup = " ".join(config["setup_commands"])
    assert "torch==2.13.0" in setup and "ps-train" in setup


def test_dockerfile_runs_the_service_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER ps$", text, re.M)
    assert f"EXPOSE {GRPC_PORT} {METRICS_PORT}" in text
    assert '"psctl", "serve"' in text and '"--token-file"' in text
    assert f"-t {IMAGE}" in text
    assert "torch==2.13.0" in text
