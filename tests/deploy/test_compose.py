"""docker-compose.kafka.yml and .env.example: the compose file validates with Debian's
docker-compose, scales, waits for health and the migration, and every setting and secret comes
from .env (documented in .env.example) — no engine needed."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from alphaplus.cli import build_parser
from core.settings import Settings, env_name
from tests.deploy.files import (
    APP_SERVICES,
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    SCALABLE,
    compose_config,
    env_example,
    raw_compose,
    resolved_compose,
)

#: Settings the compose file fixes for the containers (servers, ports, bind addresses).
PINNED = {"ALPHAPLUS_KAFKA_BOOTSTRAP", "ALPHAPLUS_REDIS_URL", "ALPHAPLUS_DATABASE_URL",
          "ALPHAPLUS_CELERY_BROKER_URL", "ALPHAPLUS_API_HOST", "ALPHAPLUS_API_PORT",
          "ALPHAPLUS_API_WORKERS", "ALPHAPLUS_METRICS_PORT", "ALPHAPLUS_METRICS_HOST"}
#: Set by the Dockerfile (only `alphaplus up` uses it).
IN_IMAGE = {"ALPHAPLUS_STATE_DIR"}
#: Where a deployment's default differs from the setting's own, on purpose.
# The stack's database is the TimescaleDB image, so its mode is required there, not optional.
DEPLOY_DEFAULTS = {"ALPHAPLUS_LOG_FORMAT": "json", "ALPHAPLUS_TIMESCALEDB": "on"}
SECRETS = ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "FLOWER_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
           "REDIS_COMMANDER_PASSWORD")
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return resolved_compose()


def test_compose_file_validates_with_the_example_env(config: dict[str, Any]) -> None:
    assert {"kafka", "redis", "timescaledb", "migrate", "producer", "stream", "worker", "api",
            "gateway", "flower", "prometheus", "grafana", "redis-commander"} <= set(
        config["services"])


def test_a_missing_secret_stops_compose_with_its_name(tmp_path: Path) -> None:
    env = tmp_path / "partial.env"
    env.write_text("\n".join(line for line in ENV_EXAMPLE.read_text().splitlines()
                             if not line.startswith("REDIS_PASSWORD=")) + "\n")
    result = compose_config(env)
    assert result.returncode != 0
    assert "set REDIS_PASSWORD in .env" in result.stderr


@pytest.mark.parametrize("service", SCALABLE)
def test_scalable_services_have_no_fixed_name_or_host_port(
        config: dict[str, Any], service: str) -> None:
    spec = config["services"][service]
    assert "container_name" not in spec
    assert "ports" not in spec, "a published host port allows one replica only"
    assert "hostname" not in spec


def test_every_long_running_service_has_a_health_check(config: dict[str, Any]) -> None:
    for name, spec in config["services"].items():
        if name == "migrate":
            assert spec["restart"] == "no"
            continue
        assert "healthcheck" in spec, name
        test = spec["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_dependencies_wait_for_health_and_the_migration(config: dict[str, Any]) -> None:
    for name in ("producer", "stream", "worker", "api"):
        deps = config["services"][name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert all(d["condition"] in ("service_healthy", "service_completed_successfully")
                   for d in deps.values()), name
    migrate = config["services"]["migrate"]["depends_on"]
    assert {migrate["kafka"]["condition"], migrate["timescaledb"]["condition"]} == {
        "service_healthy"}


def test_kafka_runs_kraft_without_zookeeper(config: dict[str, Any]) -> None:
    kafka = config["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert not any("ZOOKEEPER" in key for key in env)
    assert not any("zookeeper" in name for name in config["services"])


def test_redis_keeps_the_broker_safe(config: dict[str, Any]) -> None:
    redis_conf = (COMPOSE.parent / "infra/deploy/redis/redis.conf").read_text()
    assert re.search(r"^appendonly yes$", redis_conf, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", redis_conf, re.M)
    command = config["services"]["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == env_example()[0]["REDIS_PASSWORD"]
    assert "--maxmemory" in command


def test_timescaledb_is_the_official_image(config: dict[str, Any]) -> None:
    assert config["services"]["timescaledb"]["image"].startswith("timescale/timescaledb:")


def test_app_services_run_valid_alphaplus_commands(config: dict[str, Any]) -> None:
    parser = build_parser()
    for name in APP_SERVICES:
        spec = config["services"][name]
        assert spec["image"] == env_example()[0]["ALPHAPLUS_IMAGE"], name
        command = spec["command"]
        if name == "migrate":  # sh -c "alphaplus migrate && alphaplus topics create"
            lines = [shlex.split(part.strip()) for part in command[0].split("&&")]
            assert all(words[0] == "alphaplus" for words in lines)
            argvs = [words[1:] for words in lines]
        else:
            argvs = [shlex.split(command) if isinstance(command, str) else command]
        for argv in argvs:
            args, extra = parser.parse_known_args(argv)
            assert not extra or hasattr(args, "celery_args"), (name, argv)


def test_flower_takes_basic_auth_from_env(config: dict[str, Any]) -> None:
    env = config["services"]["flower"]["environment"]
    active = env_example()[0]
    assert env["FLOWER_BASIC_AUTH"] == f"{active['FLOWER_USER']}:{active['FLOWER_PASSWORD']}"


def test_no_secret_is_written_in_the_compose_file() -> None:
    raw = COMPOSE.read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in raw, f"{secret} must be required, not defaulted"
        assert re.search(rf"\${{{secret}:-", raw) is None
    assert "change-me" not in re.sub(r"(?m)^\s*#.*$", "", raw)
    active, _ = env_example()
    assert all(active[s] == "change-me" for s in SECRETS)


def test_env_example_documents_every_variable_the_compose_file_uses() -> None:
    used = set(PLACEHOLDER.findall(COMPOSE.read_text()))
    active, _ = env_example()
    missing = sorted({name for name, _ in used} - set(active))
    assert not missing, f"add to .env.example: {missing}"
    for name, default in used:
        if default and not default.startswith("set "):  # `:?message` is not a default
            assert active[name] == default, f"{name}: .env.example and the compose default differ"


def test_env_example_documents_every_setting_with_its_default() -> None:
    active, commented = env_example()
    defaults = Settings.from_env(environ={}, env_file=None).as_env()
    for name, default in defaults.items():
        value = active.get(name, commented.get(name))
        assert value is not None, f"{name} is missing from .env.example"
        assert value == DEPLOY_DEFAULTS.get(name, default), name
        if name in PINNED | IN_IMAGE:
            assert name in commented, f"{name} is set by the stack: comment it out in .env.example"


def test_every_setting_reaches_the_containers() -> None:
    """Each ALPHAPLUS_* setting is fixed by the stack or passed through from .env with the
    same default as .env.example (so a setting added to core/settings.py cannot be forgotten)."""
    env = raw_compose()["x-app"]["environment"]
    active, _ = env_example()
    for field in dataclasses.fields(Settings):
        name = env_name(field.name)
        if name in IN_IMAGE:
            assert f"{name}=" in DOCKERFILE.read_text()
            continue
        assert name in env, f"{name} is not in the compose file's x-app environment"
        value = str(env[name])
        if name in PINNED:
            assert "${ALPHAPLUS_" not in value, name
        else:
            assert value == f"${{{name}:-{active[name]}}}", name


def test_image_is_slim_and_not_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim", text, re.M)
    assert re.findall(r"^USER (\S+)$", text, re.M)[-1] == "alphaplus"
    assert re.search(r'^ENTRYPOINT \["alphaplus"\]$', text, re.M)
