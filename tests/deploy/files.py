"""The deployment files the tests read: paths, the compose file (raw and as docker-compose
resolves it), .env.example, and the Debian tools that validate them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.kafka.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DEPLOY = REPO / "infra" / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "alphaplus.json"
DEPLOY_SH = REPO / "scripts" / "deploy.sh"

#: The services that run more than one replica with `--scale`.
SCALABLE = ("stream", "worker", "api")
#: Services built from the Dockerfile (the `alphaplus` image).
APP_SERVICES = ("migrate", "producer", "stream", "worker", "api", "flower")


def tool(name: str) -> str:
    """The path of a Debian tool the check needs; skipped (with the reason) when it is absent,
    which in CI it is not: .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install docker-compose prometheus, as "
                    ".ci/run does)")
    return path


def clean_env() -> dict[str, str]:
    """The environment for docker-compose without any variable the compose file interpolates,
    so that only the env file given supplies them."""
    names = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    return {k: v for k, v in os.environ.items() if k not in names}


def compose_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("docker-compose"), "-f", str(COMPOSE), "--env-file", str(env_file), "config",
         *extra],
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120)


def resolved_compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it with .env.example."""
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def raw_compose() -> dict[str, Any]:
    """The compose file as written: `${VAR:-default}` placeholders, anchors merged."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    """(set, commented out) variables of .env.example: `NAME=value` and `# NAME=value` lines."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            active[m[1]] = m[2]
        elif m := re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=(.*)", line):
            commented[m[1]] = m[2]
    return active, commented


def prometheus_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    return data
