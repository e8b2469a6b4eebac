"""A running stage's metrics, scraped from its port: the names, labels and counts of issue 11."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
from kafka_helpers import publish, signed_job
from prometheus_client.parser import text_string_to_metric_families

from anchorline.events import JobKind, Stage
from anchorline.infra.ports import free_port
from anchorline.settings import Settings

ANCHORLINE = str(Path(sys.executable).parent / "anchorline")


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → (labels, value) of every sample a /metrics page shows."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for labels, value in samples.get(name, []) if labels.get("stage") == "verify")


def test_a_verifier_counts_processed_failed_retried_and_dead_lettered(
    settings: Settings, tmp_path: Path
) -> None:
    good = signed_job(settings, JobKind.VERIFY, b"good")
    forged = replace(
        signed_job(settings, JobKind.VERIFY, b"forged"),
        signature=signed_job(settings, JobKind.VERIFY, b"other").signature,
    )
    missing = replace(signed_job(settings, JobKind.VERIFY, b"x"), content_uri="sha256:" + "ab" * 32)
    publish(settings, good, forged, missing, (settings.topics.jobs_requested, b"\x00junk"))
    port = free_port()
    env = os.environ | settings.as_env() | {"ANCHORLINE_METRICS_PORT": str(port)}
    log = (tmp_path / "verifier.log").open("w")
    process = subprocess.Popen([ANCHORLINE, "run", "verifier"], env=env, stderr=log)
    url = f"http://127.0.0.1:{port}/metrics"
    # every partition of its three lanes, the empty ones too (0 behind, not left out)
    lanes = {(topic, p) for topic in settings.topics.lanes(Stage.VERIFY) for p in ("0", "1")}
    try:
        deadline = time.monotonic() + 120
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        while time.monotonic() < deadline and process.poll() is None:
            try:
                samples = scrape(url)
            except httpx.TransportError:
                samples = {}
            # librdkafka's statistics (every 10 s) may name one partition before the other
            lagging = {
                (labels["topic"], labels["partition"])
                for labels, _ in samples.get("anchorline_consumer_lag", [])
                if labels["group"] == "anchorline-verifier"
            }
            if total(samples, "anchorline_stage_dead_lettered_total") >= 2 and lagging == lanes:
                break
            time.sleep(0.5)
        dead = total(samples, "anchorline_stage_dead_lettered_total")
        assert dead == 2, (tmp_path / "verifier.log").read_text()[-3000:]  # junk, then missing
        assert total(samples, "anchorline_stage_failed_total") == 1
        assert total(samples, "anchorline_stage_retried_total") == settings.max_attempts - 1
        # good, forged, junk, missing at each of its attempts
        assert total(samples, "anchorline_stage_processed_total") == 3 + settings.max_attempts
        assert total(samples, "anchorline_stage_handler_seconds_count") >= 1
        assert total(samples, "anchorline_stage_batch_size_bucket") >= 1
        lags = {
            (labels["group"], labels["topic"], labels["partition"]): value
            for labels, value in samples["anchorline_consumer_lag"]
        }
        stage = {key: lag for key, lag in lags.items() if key[0] == "anchorline-verifier"}
        assert {(topic, partition) for _, topic, partition in stage} == lanes
        # handled and committed: nothing behind but a transaction marker or two
        assert all(0 <= lag <= 2 for lag in stage.values()), stage
        delay_topics = {key[1] for key in lags if key[0] == "anchorline-verifier-delay"}
        assert delay_topics <= set(settings.topics.retries(settings.topics.jobs_requested))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()
    assert process.returncode == 0, (tmp_path / "verifier.log").read_text()[-3000:]
