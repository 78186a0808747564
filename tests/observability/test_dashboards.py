"""The Grafana dashboards as files: generated, consistent, filtered by job and instance.

(What their queries return is tested against a real Prometheus in
test_dashboard_queries.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = {
    p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
}
DOCUMENTED = set(
    re.findall(r"^\| `(ocpp_fleet_\w+)`", (ROOT / "docs" / "metrics.md").read_text(), re.M)
)


def targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_json_is_what_generate_py_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_six_dashboards_of_the_issue_exist() -> None:
    assert set(DASHBOARDS) == {
        "fleet-overview",
        "csms-latency",
        "errors-timeouts",
        "connection-health",
        "energy-power",
        "generator-health",
    }
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    for dashboard in DASHBOARDS.values():
        assert "ocpp-fleet" in dashboard["tags"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids)


def test_every_panel_uses_the_datasource_job_and_instance_variables() -> None:
    for name, dashboard in DASHBOARDS.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for var in ("job", "instance"):
            assert variables[var]["multi"] and variables[var]["includeAll"], f"{name}: ${var}"
        for panel, target in targets(dashboard):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"]["uid"] == "${datasource}", where
            assert target["datasource"]["uid"] == "${datasource}", where
            selectors = re.findall(r"\{[^}]*\}", target["expr"])
            assert selectors, where
            for selector in selectors:
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, (
                    where,
                    selector,
                )
            for used in re.findall(r"\$(\w+)", target["expr"]):
                assert used in variables or used.startswith("__"), (where, used)


def test_every_metric_a_panel_reads_is_documented() -> None:
    for name, dashboard in DASHBOARDS.items():
        for panel, target in targets(dashboard):
            for metric in re.findall(r"\b((?:ocpp_fleet|process|python)_\w+)\{", target["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                if metric.startswith("ocpp_fleet_"):
                    assert metric in DOCUMENTED or base in DOCUMENTED, (
                        f"{name}: {panel['title']}: {metric}"
                    )


def test_latency_has_quantiles_per_action_and_a_heatmap() -> None:
    latency = DASHBOARDS["csms-latency"]
    exprs = [t["expr"] for _, t in targets(latency)]
    for q in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({q}," in e and "by (le, action)" in e for e in exprs), q
    heatmaps = [p for p in latency["panels"] if p["type"] == "heatmap"]
    assert heatmaps and heatmaps[0]["targets"][0]["format"] == "heatmap"


def test_provisioning_points_at_the_dashboards() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "ocpp-fleet.yml").read_text()
    )
    provider = providers["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
