"""Prometheus and Grafana provisioning: promtool accepts the config and every dashboard query,
every process kind is scraped where the compose file serves its metrics, and the dashboard uses
the provisioned data source and only the metrics of the contract (tests/deploy/metrics_contract)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import (
    DASHBOARD,
    GRAFANA,
    PROMETHEUS_YML,
    REPO,
    prometheus_config,
    raw_compose,
    resolved_compose,
    tool,
)
from tests.deploy.metrics_contract import PROCESS_KINDS, all_metrics, contract_name

SERIES = re.compile(r"\balphaplus_[a-z0-9_]+\b")


def datasource_uid() -> str:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [source] = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    return str(source["uid"])


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        out += [panel, *panel.get("panels", [])]  # a collapsed row holds its panels
    return [p for p in out if p["type"] != "row"]


def expressions() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_promtool_accepts_the_prometheus_config() -> None:
    result = subprocess.run([tool("promtool"), "check", "config", str(PROMETHEUS_YML)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_process_kind_is_scraped_by_docker_dns_where_it_serves() -> None:
    env = raw_compose()["x-app"]["environment"]
    ports = {"api": int(env["ALPHAPLUS_API_PORT"])}
    ports |= dict.fromkeys(("producer", "stream", "worker"), int(env["ALPHAPLUS_METRICS_PORT"]))
    assert env["ALPHAPLUS_METRICS_HOST"] == "0.0.0.0"  # reachable from the prometheus container
    services = resolved_compose()["services"]
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    for kind in PROCESS_KINDS:
        [sd] = jobs[kind]["dns_sd_configs"]
        # One A record per replica: every scaled container is a target.
        assert (sd["names"], sd["type"], sd["port"]) == ([kind], "A", ports[kind]), kind
        assert kind in services


def test_grafana_mounts_match_the_provisioning() -> None:
    mounts = bind_mounts(resolved_compose()["services"]["grafana"]["volumes"])
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "alphaplus.yml").read_text())
    [entry] = provider["providers"]
    assert mounts[entry["options"]["path"]] == DASHBOARD.parent
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    home = resolved_compose()["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (mounts[str(Path(home).parent)] / Path(home).name).is_file()
    assert all(p.is_relative_to(REPO) for p in mounts.values())


def bind_mounts(volumes: list[Any]) -> dict[str, Path]:
    """Target -> host path of the bind mounts, in docker-compose v1's short syntax
    (`/host:/target:ro`) or v2's long one."""
    out: dict[str, Path] = {}
    for volume in volumes:
        if isinstance(volume, str):
            source, target, *_ = volume.split(":")
            if source.startswith("/"):
                out[target] = Path(source)
        elif volume["type"] == "bind":
            out[volume["target"]] = Path(volume["source"])
    return out


def test_dashboard_uses_the_provisioned_data_source() -> None:
    uid = datasource_uid()
    assert dashboard()["uid"] == "alphaplus"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, panel["title"]
        cells |= area


def test_dashboard_queries_only_contract_metrics_and_covers_them_all() -> None:
    metrics = all_metrics()
    used: set[str] = set()
    for expr in expressions():
        for series in SERIES.findall(expr):
            name = contract_name(series, metrics)
            assert name is not None, f"{series} (in {expr}) is not in the metrics contract"
            used.add(name)
    assert sorted(set(metrics) - used) == [], "contract metrics without a panel"


@pytest.mark.parametrize("topic", [
    "alphaplus_trades_ingested_total", "alphaplus_dead_letters_total",
    "alphaplus_stream_consumer_lag", "alphaplus_stream_candle_latency_seconds_bucket",
    "alphaplus_tasks_total", "alphaplus_task_duration_seconds_bucket",
    "alphaplus_api_cache_requests_total", "alphaplus_ws_clients",
    "alphaplus_ws_send_latency_seconds_bucket", "alphaplus_db_rows_written_total",
    "alphaplus_log_errors_total",
])
def test_dashboard_has_the_panels_the_issue_asks_for(topic: str) -> None:
    assert any(re.search(rf"\b{topic}\b", e) for e in expressions())


def test_cache_hit_rate_uses_the_api_layer_labels() -> None:
    # api/cache.py counts layer="memory" | "redis" | "miss": a hit is either of the first two.
    source = (REPO / "api" / "cache.py").read_text()
    layers = set(re.findall(r'add_metric\(\[ns, "(\w+)"\]', source))
    assert layers == {"memory", "redis", "miss"}
    [hit_rate] = [e for e in expressions() if "layer=~" in e]
    assert 'layer=~"memory|redis"' in hit_rate


def test_promtool_accepts_every_dashboard_query(tmp_path: Path) -> None:
    """Each query as a recording rule: `promtool check rules` parses its PromQL."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, expr in enumerate(expressions())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions())} rules found" in result.stdout + result.stderr
