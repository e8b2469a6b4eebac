"""`anchorline setup`: everything the local run and the tests need that pip does not bring."""

from __future__ import annotations

import os
import shutil
import subprocess

from anchorline.infra.anvil import ensure_node_tools
from anchorline.infra.apicurio import ensure_apicurio
from anchorline.infra.java import NoJava
from anchorline.infra.kafka import ensure_kafka_jars
from anchorline.infra.postgres import ensure_postgres_installed
from anchorline.infra.s3proxy import ensure_s3proxy_jars


def install(*, postgres: bool, browser: bool = False) -> None:
    print(f"Kafka jars in {ensure_kafka_jars()}", flush=True)
    print(f"S3Proxy jars in {ensure_s3proxy_jars()}", flush=True)
    try:
        print(f"Apicurio Registry in {ensure_apicurio()}", flush=True)
    except NoJava as exc:  # only the schema registry's tests need it
        print(f"Apicurio Registry left out: {exc}", flush=True)
    print(f"anvil and solc in {ensure_node_tools()}", flush=True)
    if postgres:
        print(f"PostgreSQL binaries in {ensure_postgres_installed()}", flush=True)
    if browser:
        print(f"Chromium at {ensure_chromium()}", flush=True)


def ensure_chromium() -> str:
    """Debian's Chromium, for the console's browser test (installed with apt-get as root)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError("no Chromium: install it (apt-get install chromium) or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed\n{result.stderr[-4000:]}")
    return shutil.which("chromium") or "chromium"
