"""Metrics of `anchorline up`: every worker on the port it printed, and what the dashboard reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from system_under_test import System

from anchorline.paths import ROOT

ANCHORLINE = str(Path(sys.executable).parent / "anchorline")
PRINTED = re.compile(r"metrics of (\S+) on (http://\S+/metrics)")
DASHBOARD = ROOT / "ops" / "grafana" / "anchorline.json"


def printed_ports(system: System) -> dict[str, str]:
    return dict(m.groups() for line in system.output if (m := PRINTED.search(line)))


def scrape(url: str) -> dict[str, list[dict[str, str]]]:
    """Sample name → the label sets it is shown with."""
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    return samples


def anchor_a_job(system: System, tmp_path: Path) -> None:
    env = os.environ | {"ANCHORLINE_GATEWAY_URL": system.base_url}
    content = tmp_path / "content.txt"
    content.write_text(f"metrics {time.time()}")
    run = [ANCHORLINE, "sign", str(content), "--out", str(tmp_path)]
    subprocess.run(run, env=env, check=True, capture_output=True, timeout=60)
    submit = [ANCHORLINE, "submit", str(content), "--manifest", str(tmp_path / "manifest.json")]
    submit += ["--signature", str(tmp_path / "manifest.sig"), "--kind", "anchor", "--wait"]
    done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_worker_serves_its_metrics_where_up_said(system: System, tmp_path: Path) -> None:
    anchor_a_job(system, tmp_path)
    ports = printed_ports(system)
    assert {"projector", "verifier", "prover", "chain-writer"} <= set(ports)
    targets = json.loads((system.settings.state_dir / "prometheus-targets.json").read_text())
    assert sorted(t["labels"]["process"] for t in targets) == sorted(ports)
    seen = {name: scrape(url) for name, url in ports.items()}
    for process, stage in (("verifier", "verify"), ("prover", "prove"), ("chain-writer", "anchor")):
        stages = {labels["stage"] for labels in seen[process]["anchorline_stage_processed_total"]}
        assert stage in stages, process
    assert "anchorline_projector_applied_total" in seen["projector"]
    writer = seen["chain-writer"]
    for name in ("anchorline_chain_gas_used_total", "anchorline_chain_fees_wei_total"):
        assert name in writer, name
    assert "anchorline_chain_breaker_state" in writer
    assert "anchorline_chain_pending_transactions" in writer


def test_the_dashboard_reads_only_metrics_the_system_shows(system: System, tmp_path: Path) -> None:
    anchor_a_job(system, tmp_path)
    shown: set[str] = set(scrape(f"{system.base_url}/metrics"))
    deadline = time.monotonic() + 60  # the consumers' lag comes with librdkafka's statistics
    while time.monotonic() < deadline:
        for url in printed_ports(system).values():
            shown |= set(scrape(url))
        if "anchorline_consumer_lag" in shown:
            break
        time.sleep(2)
    panels = json.loads(DASHBOARD.read_text())["panels"]
    read = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"anchorline_[a-z_]+", target["expr"])
    }
    assert read - shown == set()
    assert "anchorline_consumer_lag" in read and "anchorline_stage_handler_seconds_bucket" in read


def test_the_scrape_config_reads_the_targets_up_writes() -> None:
    config = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    files = jobs["anchorline-workers"]["file_sd_configs"][0]["files"]
    assert files == ["../var/prometheus-targets.json"]
