"""compose.yaml, Dockerfile and .dockerignore, read as Docker would (no engine here)."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml

from anchorline.paths import ROOT
from anchorline.settings import PREFIX, Settings

INFRASTRUCTURE = ("kafka", "postgres", "anvil")
SERVICES = ("projector", "verifier", "prover", "chain-writer", "gateway")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(compose["services"][name])


def test_infrastructure_has_healthchecks_and_the_services_wait_for_them(compose: dict) -> None:
    for name in INFRASTRUCTURE:
        assert service(compose, name)["healthcheck"]["test"][0] == "CMD", name
    for name in SERVICES:
        needs = service(compose, name)["depends_on"]
        assert {needs[part]["condition"] for part in INFRASTRUCTURE} == {"service_healthy"}, name
        assert needs["init"]["condition"] == "service_completed_successfully", name
    init = service(compose, "init")["depends_on"]
    assert {init[part]["condition"] for part in INFRASTRUCTURE} == {"service_healthy"}


def test_what_must_survive_a_restart_is_on_volumes(compose: dict) -> None:
    mounts = {
        name: {volume.split(":")[1] for volume in service(compose, name).get("volumes", [])}
        for name in ("kafka", "postgres", "verifier", "gateway")
    }
    assert mounts["kafka"] == {service(compose, "kafka")["environment"]["KAFKA_LOG_DIRS"]}
    assert mounts["postgres"] == {"/var/lib/postgresql/data"}
    assert mounts["verifier"] == mounts["gateway"] == {"/blobs"}
    assert set(compose["volumes"]) == {"blobs", "kafka-data", "postgres-data"}


def test_the_ports_the_readme_uses_are_published(compose: dict) -> None:
    published = {
        name: [port.rsplit(":", 2)[-2] for port in service(compose, name).get("ports", [])]
        for name in compose["services"]
    }
    assert published["gateway"] == ["8000"]
    assert published["anvil"] == ["8545"]
    kafka = service(compose, "kafka")["environment"]
    assert published["kafka"] == ["9094"]
    assert "EXTERNAL://127.0.0.1:9094" in kafka["KAFKA_ADVERTISED_LISTENERS"]


def test_images_are_pinned_and_anvil_matches_the_local_one(compose: dict) -> None:
    for name in INFRASTRUCTURE:
        image = service(compose, name)["image"]
        assert re.search(r":v?\d+(\.\d+)*$", image), image
    package = (ROOT / "infra" / "node" / "package.json").read_text()
    version = re.search(r'"@foundry-rs/anvil-linux-amd64": "([^"]+)"', package)
    assert version is not None
    assert service(compose, "anvil")["image"].endswith(f":v{version.group(1)}")


def test_kafkas_cluster_id_is_one_kafka_accepts(compose: dict) -> None:
    cluster = service(compose, "kafka")["environment"]["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster + "==")) == 16


def test_every_anchorline_variable_is_a_setting_and_the_chain_id_is_set(compose: dict) -> None:
    known = {PREFIX + name.upper() for name in Settings.__dataclass_fields__}
    for name in (*SERVICES, "init"):
        env = service(compose, name)["environment"]
        assert {key for key in env if key.startswith(PREFIX)} <= known, name
        assert env["ANCHORLINE_CHAIN_ID"] == "31337"
        Settings.from_env({k: str(v) for k, v in env.items()})
    assert service(compose, "verifier")["environment"]["ANCHORLINE_METRICS_PORT"] == "9100"


def test_the_image_runs_as_a_user_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.MULTILINE)


def test_the_build_context_leaves_out_venvs_jars_and_node_modules() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "var", "infra/kafka/lib", "infra/node/node_modules"} <= ignored
